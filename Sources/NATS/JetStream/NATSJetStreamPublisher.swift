import Dispatch
import Synchronization

/// Publishes to JetStream without waiting for each acknowledgement, with a bounded window of
/// publishes in flight.
///
/// ``publish(subject:payload:headers:options:)`` returns as soon as the message is handed to
/// the connection, with a ``NATSPendingPublish`` that completes with exactly one outcome: acked,
/// failed with the server's reason, or timed out after ``Configuration/ackTimeout``. When
/// ``Configuration/maxPending`` publishes are in flight, the next publish waits (back pressure)
/// until enough acks came back. Nothing hangs: a publish whose ack is lost with a dropped
/// connection times out. Every publish carries a `Nats-Msg-Id` (generated unless given), so
/// ``resend(_:)`` of a failed or timed-out publish is safe: the stream stores it at most once
/// within its duplicate window.
public final class NATSJetStreamPublisher: Sendable {
    /// Settings of a publisher.
    public struct Configuration: Sendable, Hashable {
        /// Publishes awaiting their ack, at most. Default 4,096.
        public var maxPending = 4_096
        /// How long a publish waits for its ack before it fails as timed out. Default 5 s.
        public var ackTimeout: Duration = .seconds(5)
        /// Whether a publish without a message id gets a generated one, which makes resending
        /// safe. Default true.
        public var assignMessageIDs = true

        /// Creates the default configuration.
        public init(maxPending: Int = 4_096, ackTimeout: Duration = .seconds(5), assignMessageIDs: Bool = true) {
            self.maxPending = maxPending
            self.ackTimeout = ackTimeout
            self.assignMessageIDs = assignMessageIDs
        }
    }

    /// Waiters are unsafe (not checked) continuations: each is taken out of the state under the
    /// lock by whoever resumes it, so it is resumed exactly once, and they cost no allocation or
    /// runtime witness calls per publish.
    private struct State: ~Copyable {
        var nextID: UInt64 = 1
        var pending: [UInt64: NATSPendingPublish] = [:]
        /// Publish order, which is also deadline order (one timeout for all).
        var deadlines: [(id: UInt64, deadline: ContinuousClock.Instant)] = []
        var deadlinesHead = 0
        var windowWaiters: [UnsafeContinuation<Void, Never>] = []
        var drainWaiters: [UnsafeContinuation<Void, Never>] = []
        var closed = false

        mutating func popExpired(now: ContinuousClock.Instant) -> [NATSPendingPublish] {
            var expired: [NATSPendingPublish] = []
            while deadlinesHead < deadlines.count, deadlines[deadlinesHead].deadline <= now {
                if let record = pending.removeValue(forKey: deadlines[deadlinesHead].id) { expired.append(record) }
                deadlinesHead += 1
            }
            if deadlinesHead > 1_024 && deadlinesHead * 2 > deadlines.count {
                deadlines.removeFirst(deadlinesHead)
                deadlinesHead = 0
            }
            return expired
        }
    }

    /// The configuration.
    public let configuration: Configuration
    let connection: NATSConnection
    private let inboxPrefix: String
    /// `inboxPrefix` as bytes: each publish's reply subject is built on the stack from it.
    private let inboxPrefixBytes: [UInt8]
    private let messageIDs = Mutex(UniqueTokenGenerator())
    private let state = Mutex(State())
    private let subscription = Mutex<NATSHandlerSubscription?>(nil)
    // Dispatch sources are thread-safe; the type just is not marked Sendable.
    private nonisolated(unsafe) let timer: DispatchSourceTimer

    private init(connection: NATSConnection, configuration: Configuration) {
        self.connection = connection
        self.configuration = configuration
        inboxPrefix = NATSConnection.makeInbox() + "."
        inboxPrefixBytes = Array(inboxPrefix.utf8)
        timer = DispatchSource.makeTimerSource(queue: DispatchQueue(label: "nats.jetstream.publisher.timeouts"))
    }

    static func make(connection: NATSConnection, configuration: Configuration) async throws(NATSError) -> NATSJetStreamPublisher {
        if configuration.maxPending < 1 {
            throw NATSError(.invalidConfiguration, "publisher maxPending \(configuration.maxPending) must be at least 1")
        }
        if configuration.ackTimeout <= .zero {
            throw NATSError(.invalidConfiguration, "publisher ackTimeout must be positive, got \(configuration.ackTimeout)")
        }
        let publisher = NATSJetStreamPublisher(connection: connection, configuration: configuration)
        let native = try await connection.subscribeWithHandler(
            to: publisher.inboxPrefix + "*",
            onComplete: { [weak publisher] in publisher?.failAll(NATSError(.connectionClosed, "the connection closed before the ack arrived")) },
            handler: { [weak publisher] message in publisher?.received(message) })
        publisher.subscription.withLock { $0 = native }
        // Check timeouts a few times per ack timeout (at most every 250 ms, at least every 10 ms).
        let interval = min(max(configuration.ackTimeout / 10, .milliseconds(10)), .milliseconds(250))
        publisher.timer.schedule(deadline: .now() + .nanoseconds(Int(interval.nanosecondsClamped)),
                                 repeating: .nanoseconds(Int(interval.nanosecondsClamped)))
        publisher.timer.setEventHandler { [weak publisher] in publisher?.expire() }
        publisher.timer.resume()
        return publisher
    }

    deinit {
        timer.cancel()
        subscription.withLock { $0?.unsubscribe() }
    }

    /// Publishes awaiting their ack.
    public var pendingCount: Int { state.withLock { $0.pending.count } }

    /// Publishes a message; returns once it is sent (waiting first while the window is full).
    ///
    /// - Throws: validation errors as for a core publish, or ``NATSError/Code/connectionClosed``
    ///   when the connection or the publisher (``close()``) is closed. Failures after the message was sent
    ///   arrive through the returned ``NATSPendingPublish``.
    public func publish(
        subject: String,
        payload: some Sequence<UInt8> = [UInt8](),
        headers: NATSHeaders = NATSHeaders(),
        options: NATSPublishOptions = NATSPublishOptions()
    ) async throws(NATSError) -> NATSPendingPublish {
        var headers = headers
        var options = options
        if options.messageID == nil && configuration.assignMessageIDs && headers[NATSPublishOptions.Header.messageID] == nil {
            options.messageID = messageIDs.withLock { $0.next() }
        }
        options.apply(to: &headers)
        let record = NATSPendingPublish(subject: subject, payload: NATSPayload(payload), headers: headers)
        try await send(record)
        return record
    }

    /// Publishes the same message again, with the same `Nats-Msg-Id`, after a failure or timeout.
    public func resend(_ publish: NATSPendingPublish) async throws(NATSError) -> NATSPendingPublish {
        let record = NATSPendingPublish(subject: publish.subject, payload: publish.payload, headers: publish.headers)
        try await send(record)
        return record
    }

    private func send(_ record: NATSPendingPublish) async throws(NATSError) {
        let id = try await acquireSlot(for: record)
        do {
            try record.payload.withUnsafeBytes { bytes in
                Result { () throws(NATSError) in
                    try connection.publish(
                        subject: record.subject, bytes: bytes, headers: record.headers, replyPrefix: inboxPrefixBytes, token: id)
                }
            }.get()
        } catch {
            _ = state.withLock { $0.pending.removeValue(forKey: id) }
            afterCompletion()
            throw error
        }
    }

    /// Registers `record` in the window, waiting while it is full; returns its id.
    private func acquireSlot(for record: NATSPendingPublish) async throws(NATSError) -> UInt64 {
        let deadlineOffset = configuration.ackTimeout
        while true {
            enum Step { case registered(UInt64), closed, wait }
            let step: Step = state.withLock { state in
                if state.closed { return .closed }
                guard state.pending.count < configuration.maxPending else { return .wait }
                let id = state.nextID
                state.nextID += 1
                state.pending[id] = record
                state.deadlines.append((id, ContinuousClock.now + deadlineOffset))
                return .registered(id)
            }
            switch step {
            case .registered(let id):
                return id
            case .closed:
                throw NATSError(.connectionClosed, "the publisher is closed")
            case .wait:
                await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
                    let resumeNow = state.withLock { state -> Bool in
                        if state.closed || state.pending.count < configuration.maxPending { return true }
                        state.windowWaiters.append(continuation)
                        return false
                    }
                    if resumeNow { continuation.resume() }
                }
            }
        }
    }

    /// An ack (or an error status) arrived on the delivery thread.
    private func received(_ message: NATSMessage) {
        guard let dot = message.subject.lastIndex(of: "."),
            let id = UInt64(message.subject[message.subject.index(after: dot)...])
        else { return }
        guard let record = state.withLock({ $0.pending.removeValue(forKey: id) }) else { return }
        let outcome: Result<NATSPublishAck, NATSError>
        if message.payload.isEmpty, let status = message.headers["Status"] {
            let retriable = status == "503"
            outcome = .failure(
                NATSError(
                    retriable ? .noResponders : .serverError,
                    "publish to '\(record.subject)': status \(status) \(message.headers["Description"] ?? "")"
                        + (retriable ? " (no stream answered; retry with the same message id)" : ""),
                    isRetriable: retriable))
        } else {
            outcome = Result { () throws(NATSError) in try NATSPublishAck.parse(message.payload, subject: record.subject) }
        }
        record.complete(outcome)
        afterCompletion()
    }

    /// Fails publishes whose ack did not arrive in time (on the timer's queue).
    private func expire() {
        let expired = state.withLock { $0.popExpired(now: .now) }
        guard !expired.isEmpty else { return }
        for record in expired {
            record.complete(
                .failure(
                    NATSError(
                        .timeout,
                        "publish to '\(record.subject)' (message id \(record.messageID ?? "none")) was not acknowledged within \(configuration.ackTimeout); it may or may not be stored: resend it with the same message id",
                        isRetriable: true)))
        }
        afterCompletion()
    }

    private func failAll(_ error: NATSError) {
        let records = state.withLock { state -> [NATSPendingPublish] in
            state.closed = true
            defer { state.pending.removeAll() }
            return Array(state.pending.values)
        }
        for record in records { record.complete(.failure(error)) }
        afterCompletion()
    }

    /// Wakes publishers waiting for room once a quarter of the window is free (one wake-up per
    /// batch of acks, not per ack), and drain waiters once nothing is pending.
    private func afterCompletion() {
        let (window, drained) = state.withLock { state -> ([UnsafeContinuation<Void, Never>], [UnsafeContinuation<Void, Never>]) in
            var window: [UnsafeContinuation<Void, Never>] = []
            let lowWater = configuration.maxPending - max(1, configuration.maxPending / 4)
            if !state.windowWaiters.isEmpty && (state.pending.count <= lowWater || state.closed) {
                swap(&window, &state.windowWaiters)
            }
            var drained: [UnsafeContinuation<Void, Never>] = []
            if state.pending.isEmpty { swap(&drained, &state.drainWaiters) }
            return (window, drained)
        }
        for waiter in window { waiter.resume() }
        for waiter in drained { waiter.resume() }
    }

    /// Waits until every publish so far has its outcome (each within its ack timeout).
    public func waitForPending() async {
        await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
            let done = state.withLock { state -> Bool in
                if state.pending.isEmpty { return true }
                state.drainWaiters.append(continuation)
                return false
            }
            if done { continuation.resume() }
        }
    }

    /// Stops accepting publishes, waits for the outcomes of those in flight, and releases the
    /// publisher's subscription.
    public func close() async {
        let waiters = state.withLock { state -> [UnsafeContinuation<Void, Never>] in
            state.closed = true
            defer { state.windowWaiters.removeAll() }
            return state.windowWaiters
        }
        for waiter in waiters { waiter.resume() }
        await waitForPending()
        timer.cancel()
        subscription.withLock { $0?.unsubscribe() }
    }
}

/// One publish of a ``NATSJetStreamPublisher`` and its outcome.
public final class NATSPendingPublish: Sendable {
    /// The subject.
    public let subject: String
    /// The payload.
    public let payload: NATSPayload
    /// The headers sent, `Nats-Msg-Id` and expectations included.
    public let headers: NATSHeaders

    private struct State: ~Copyable {
        var outcome: Result<NATSPublishAck, NATSError>?
        var waiters: [UnsafeContinuation<Result<NATSPublishAck, NATSError>, Never>] = []
    }

    private let state = Mutex(State())

    init(subject: String, payload: NATSPayload, headers: NATSHeaders) {
        self.subject = subject
        self.payload = payload
        self.headers = headers
    }

    /// The `Nats-Msg-Id` sent with the message.
    public var messageID: String? { headers[NATSPublishOptions.Header.messageID] }

    /// The outcome if it is known already.
    public var outcome: Result<NATSPublishAck, NATSError>? { state.withLock { $0.outcome } }

    /// Waits for the outcome (at most the publisher's ack timeout).
    public func result() async -> Result<NATSPublishAck, NATSError> {
        await withUnsafeContinuation { continuation in
            let known = state.withLock { state -> Result<NATSPublishAck, NATSError>? in
                if let outcome = state.outcome { return outcome }
                state.waiters.append(continuation)
                return nil
            }
            if let known { continuation.resume(returning: known) }
        }
    }

    /// Waits for the ack; throws the failure.
    public func ack() async throws(NATSError) -> NATSPublishAck {
        try await result().get()
    }

    func complete(_ outcome: Result<NATSPublishAck, NATSError>) {
        let waiters = state.withLock { state -> [UnsafeContinuation<Result<NATSPublishAck, NATSError>, Never>] in
            guard state.outcome == nil else { return [] }
            state.outcome = outcome
            defer { state.waiters.removeAll() }
            return state.waiters
        }
        for waiter in waiters { waiter.resume(returning: outcome) }
    }
}

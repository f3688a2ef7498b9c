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
        /// Publishes sent and awaiting their outcome.
        var inFlight = 0
        /// Publishes waiting for room, in arrival order.
        var windowWaiters: [(id: UInt64, continuation: UnsafeContinuation<Void, Never>)] = []
        var nextWaiterID: UInt64 = 0
        var drainWaiters: [UnsafeContinuation<Void, Never>] = []
        var closed = false
    }

    /// The configuration.
    public let configuration: Configuration
    let connection: NATSConnection
    /// The connection's one inbox multiplexer: acks come back through the same subscription,
    /// token table and timeout timer as the connection's requests.
    private let responses: ResponseMux
    private let messageIDs = Mutex(UniqueTokenGenerator())
    private let state = Mutex(State())

    private init(connection: NATSConnection, configuration: Configuration, responses: ResponseMux) {
        self.connection = connection
        self.configuration = configuration
        self.responses = responses
    }

    static func make(connection: NATSConnection, configuration: Configuration) async throws(NATSError) -> NATSJetStreamPublisher {
        if configuration.maxPending < 1 {
            throw NATSError(.invalidConfiguration, "publisher maxPending \(configuration.maxPending) must be at least 1")
        }
        if configuration.ackTimeout <= .zero {
            throw NATSError(.invalidConfiguration, "publisher ackTimeout must be positive, got \(configuration.ackTimeout)")
        }
        _ = try connection.connected()
        return NATSJetStreamPublisher(
            connection: connection, configuration: configuration, responses: try connection.responseMultiplexer())
    }

    /// Publishes awaiting their ack.
    public var pendingCount: Int { state.withLock { $0.inFlight } }

    /// Publishes a message; returns once it is sent (waiting first while the window is full).
    ///
    /// A publish that finds at most 15 others in flight is written to the socket at once, so a
    /// lone publish costs one round trip and a few tasks publishing do not wait for cnats's
    /// flusher; with more in flight it is left to that flusher, which writes a burst in few
    /// system calls.
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
        // The async functions on this path stay small: each one's frame is allocated from its
        // task's allocator, and frames that outgrow its first slab cost a malloc each (in a task
        // per publish, several per publish). The synchronous work lives in functions that are
        // not inlined into them, on the thread's stack.
        let record = pendingPublish(subject: subject, payload: payload, headers: headers, options: options)
        if try sendIfRoom(record) { return record }
        try await send(record)
        return record
    }

    /// Publishes the same message again, with the same `Nats-Msg-Id`, after a failure or timeout.
    public func resend(_ publish: NATSPendingPublish) async throws(NATSError) -> NATSPendingPublish {
        let record = NATSPendingPublish(subject: publish.subject, payload: publish.payload, headers: publish.headers, publisher: self)
        try await send(record)
        return record
    }

    /// The record of a new publish: its headers with the options' and, unless given or turned
    /// off, a generated `Nats-Msg-Id`.
    @inline(never)
    package func pendingPublish(
        subject: String, payload: some Sequence<UInt8>, headers: NATSHeaders, options: NATSPublishOptions
    ) -> NATSPendingPublish {
        var headers = headers
        var options = options
        if options.messageID == nil && configuration.assignMessageIDs && headers[NATSPublishOptions.Header.messageID] == nil {
            options.messageID = messageIDs.withLock { $0.next() }
        }
        options.apply(to: &headers)
        return NATSPendingPublish(subject: subject, payload: NATSPayload(payload), headers: headers, publisher: self)
    }

    /// Sends `record` without suspending when the window has room and nobody waits for it:
    /// true once it is written (or left to cnats's flusher); false, with nothing sent, when
    /// the window is full, and then ``send(_:)`` waits for room.
    ///
    /// Publishing in two steps keeps a publish's async frames small: the common case suspends
    /// only for the ack. Each async frame comes from the task's allocator, whose slabs hold
    /// about 1 KB; a chain of frames that outgrows one costs a malloc per slab, and in a task
    /// per publish that is paid on every publish.
    @inline(never)
    package func sendIfRoom(_ record: NATSPendingPublish) throws(NATSError) -> Bool {
        let attempt = takeSlot(queued: false)
        if case .full = attempt { return false }
        try write(record, after: attempt)
        return true
    }

    /// Sends `record`, waiting first while the window is full.
    package func send(_ record: NATSPendingPublish) async throws(NATSError) {
        // One throwing call: every typed-throw site keeps room for a `NATSError` in this frame.
        var attempt = takeSlot(queued: false)
        if case .full = attempt { attempt = await waitForSlot() }
        try write(record, after: attempt)
    }

    /// Writes a publish that took a place in the window (or throws why it got none); on failure
    /// the record gets the outcome and leaves the window, and the error is thrown.
    @inline(never)
    private func write(_ record: NATSPendingPublish, after attempt: SlotAttempt) throws(NATSError) {
        let now: Bool
        switch attempt {
        case .taken(let inFlight):
            // Alone or among a few: written at once from this thread (cnats's flusher would hold
            // each for a millisecond, which is all of their wait: four tasks publishing ran
            // slower than one). Many: they keep the server busy, and cnats's buffer coalesces
            // them into few writes.
            now = inFlight <= Self.promptWriteLimit
        case .closed: throw NATSError(.connectionClosed, "the publisher is closed")
        case .cancelled: throw NATSError(.cancelled, "waiting for room in the publish window was cancelled")
        case .full: preconditionFailure("a publish is written only once it has a place in the window")
        }
        do {
            try record.payload.withUnsafeBytes { bytes in
                Result { () throws(NATSError) in
                    try connection.startRequest(
                        subject: record.subject, bytes: bytes, headers: record.headers, timeout: configuration.ackTimeout,
                        receiver: record, now: now, through: responses)
                }
            }.get()
        } catch {
            // The record decides whether this publish is over: the mux may have handed it an
            // outcome already (the connection closed between registering and writing).
            record.complete(.failure(error), beforeResuming: completed)
            throw error
        }
    }

    /// Publishes in flight (this one included) up to which a publish is written at once rather
    /// than left to cnats's flusher: up to this many, a millisecond's wait is the whole cost of
    /// each; beyond it, the window keeps the server busy while cnats's buffer fills, and a write
    /// per publish would cost CPU (a `send` under the connection's lock) that a throughput-bound
    /// publisher needs.
    /// Measured with `eventbus bench` (20,000 to 30,000 events): 4 publishers ran at 4,464
    /// events/s (p50 968 µs) with every publish behind another left to the flusher; 64 publishers
    /// alike either way (about 35,000), but with writes at once up to 64 in flight the process
    /// used 40-60% more CPU for them. Writing from the publishing thread rather than handing the
    /// write to a dispatch thread (which could carry several publishes in one `send`) saved that
    /// hand-off's wake-up (the hand-off seldom carried more than one publish): 4 publishers
    /// 13,909 against 12,663 events/s and 61.2 against 70.6 µs of client CPU per event, 16
    /// publishers level (23,984 against 24,613 events/s, 39.6 against 41.6 µs; another set had
    /// 25,009 against 21,303), medians of 5 interleaved rounds each. The publishing thread (one
    /// of the concurrency pool's) makes the `send` under cnats's connection lock, as a lone
    /// publish and every cnats request do; a full socket buffer would hold it there, but the
    /// flusher thread would hold the same lock meanwhile.
    static let promptWriteLimit = 16

    private enum SlotAttempt { case taken(inFlight: Int), closed, cancelled, full }

    /// Takes a place in the window if there is one and nobody queued for it before (unless
    /// `queued`: the caller is one of those woken from the queue).
    @inline(never)
    private func takeSlot(queued: Bool) -> SlotAttempt {
        state.withLock { state in
            if state.closed { return .closed }
            guard state.inFlight < configuration.maxPending, queued || state.windowWaiters.isEmpty else { return .full }
            state.inFlight += 1
            return .taken(inFlight: state.inFlight)
        }
    }

    /// Waits for a place in the window (the window was full) and takes it; `.closed` or
    /// `.cancelled` when it will not come. A newcomer queues behind publishes already waiting
    /// (none overtakes them), and a cancelled task stops waiting at once.
    @inline(never)
    private func waitForSlot() async -> SlotAttempt {
        while true {
            if Task.isCancelled { return .cancelled }
            let id = state.withLock { state -> UInt64 in
                defer { state.nextWaiterID += 1 }
                return state.nextWaiterID
            }
            await withTaskCancellationHandler {
                await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
                    let resumeNow = state.withLock { state -> Bool in
                        if state.closed || Task.isCancelled
                            || (state.inFlight < configuration.maxPending && state.windowWaiters.isEmpty)
                        {
                            return true
                        }
                        state.windowWaiters.append((id, continuation))
                        return false
                    }
                    if resumeNow { continuation.resume() }
                }
            } onCancel: {
                let waiter = state.withLock { state -> UnsafeContinuation<Void, Never>? in
                    guard let index = state.windowWaiters.firstIndex(where: { $0.id == id }) else { return nil }
                    return state.windowWaiters.remove(at: index).continuation
                }
                waiter?.resume()
            }
            let attempt = takeSlot(queued: true)
            if case .full = attempt { continue }
            return attempt
        }
    }

    /// The outcome of a publish in flight: an ack, the server's reason, "no stream answered", a
    /// timeout or the connection closing (on cnats's delivery thread or the timeout timer).
    fileprivate func outcome(
        of record: NATSPendingPublish, _ response: Result<NATSMessage, NATSError>
    ) -> Result<NATSPublishAck, NATSError> {
        switch response {
        case .success(let message):
            if message.payload.isEmpty, let status = message.headers["Status"] {
                return .failure(
                    NATSError(.serverError, "publish to '\(record.subject)': status \(status) \(message.headers["Description"] ?? "")"))
            }
            return Result { () throws(NATSError) in try NATSPublishAck.parse(message.payload, subject: record.subject) }
        case .failure(let error) where error.code == .noResponders:
            return .failure(
                NATSError(
                    .noResponders,
                    "publish to '\(record.subject)': no stream answered (no stream stores this subject, or a stream leader is being elected); retry with the same message id",
                    isRetriable: true))
        case .failure(let error) where error.code == .serverError:
            // The server closed the connection (after an -ERR) while the ack was on its way.
            return .failure(.unacknowledgedPublish(.serverError, subject: record.subject, messageID: record.messageID, why: error.message))
        case .failure(let error) where error.code == .disconnected:
            return .failure(.unacknowledgedPublish(.disconnected, subject: record.subject, messageID: record.messageID))
        case .failure(let error) where error.code == .timeout:
            return .failure(
                NATSError(
                    .timeout,
                    "publish to '\(record.subject)' (message id \(record.messageID ?? "none")) was not acknowledged within \(configuration.ackTimeout); it may or may not be stored: resend it with the same message id",
                    isRetriable: true))
        case .failure(let error):
            return .failure(error)
        }
    }

    /// A publish left the window. Wakes publishers waiting for room once a quarter of the window
    /// is free (one wake-up per batch of acks, not per ack), and drain waiters once nothing is
    /// pending.
    fileprivate func completed() {
        let (window, drained) = state.withLock { state -> ([(id: UInt64, continuation: UnsafeContinuation<Void, Never>)], [UnsafeContinuation<Void, Never>]) in
            state.inFlight -= 1
            var window: [(id: UInt64, continuation: UnsafeContinuation<Void, Never>)] = []
            let lowWater = configuration.maxPending - max(1, configuration.maxPending / 4)
            if !state.windowWaiters.isEmpty && (state.inFlight <= lowWater || state.closed) {
                swap(&window, &state.windowWaiters)
            }
            var drained: [UnsafeContinuation<Void, Never>] = []
            if state.inFlight == 0 { swap(&drained, &state.drainWaiters) }
            return (window, drained)
        }
        for waiter in window { waiter.continuation.resume() }
        for waiter in drained { waiter.resume() }
    }

    /// Waits until every publish so far has its outcome (each within its ack timeout).
    public func waitForPending() async {
        await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
            let done = state.withLock { state -> Bool in
                if state.inFlight == 0 { return true }
                state.drainWaiters.append(continuation)
                return false
            }
            if done { continuation.resume() }
        }
    }

    /// Stops accepting publishes and waits for the outcomes of those in flight.
    public func close() async {
        let waiters = state.withLock { state -> [(id: UInt64, continuation: UnsafeContinuation<Void, Never>)] in
            state.closed = true
            defer { state.windowWaiters.removeAll() }
            return state.windowWaiters
        }
        for waiter in waiters { waiter.continuation.resume() }
        await waitForPending()
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
    /// The window this publish holds a place in until its outcome is known.
    package let publisher: NATSJetStreamPublisher

    /// A task waiting for the outcome; the first has its own slot, so the usual single waiter
    /// costs no array. A waiter is resumed without the outcome and reads it from the record: the
    /// outcome is large, and a value that crosses a suspension is kept in the task's frame.
    private typealias Waiter = (id: UInt64, continuation: UnsafeContinuation<Void, Never>)

    private struct State: ~Copyable {
        var outcome: Result<NATSPublishAck, NATSError>?
        var nextWaiterID: UInt64 = 0
        var firstWaiter: Waiter?
        var moreWaiters: [Waiter] = []

        mutating func removeWaiter(_ id: UInt64) -> Waiter? {
            if let first = firstWaiter, first.id == id {
                firstWaiter = nil
                return first
            }
            guard let index = moreWaiters.firstIndex(where: { $0.id == id }) else { return nil }
            return moreWaiters.remove(at: index)
        }
    }

    private let state = Mutex(State())

    init(subject: String, payload: NATSPayload, headers: NATSHeaders, publisher: NATSJetStreamPublisher) {
        self.subject = subject
        self.payload = payload
        self.headers = headers
        self.publisher = publisher
    }

    /// The `Nats-Msg-Id` sent with the message.
    public var messageID: String? { headers[NATSPublishOptions.Header.messageID] }

    /// The outcome if it is known already.
    public var outcome: Result<NATSPublishAck, NATSError>? { state.withLock { $0.outcome } }

    /// Waits for the outcome (at most the publisher's ack timeout).
    ///
    /// When the waiting task is cancelled this returns a ``NATSError/Code/cancelled`` failure at
    /// once; the publish itself goes on, and its outcome is still recorded in ``outcome``.
    public func result() async -> Result<NATSPublishAck, NATSError> {
        await waitForOutcome()
        return outcomeOrCancelled
    }

    /// Returns once the outcome is known, or at once when the waiting task is cancelled; then
    /// ``outcomeOrCancelled`` has it.
    package func waitForOutcome() async {
        let id = state.withLock { state -> UInt64 in
            defer { state.nextWaiterID += 1 }
            return state.nextWaiterID
        }
        await withTaskCancellationHandler {
            await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
                let waits = state.withLock { state -> Bool in
                    if state.outcome != nil || Task.isCancelled { return false }
                    if state.firstWaiter == nil {
                        state.firstWaiter = (id, continuation)
                    } else {
                        state.moreWaiters.append((id, continuation))
                    }
                    return true
                }
                if !waits { continuation.resume() }
            }
        } onCancel: {
            state.withLock { $0.removeWaiter(id) }?.continuation.resume()
        }
    }

    /// The outcome, or a ``NATSError/Code/cancelled`` failure while it is not known (after
    /// ``waitForOutcome()`` returned, that is because the waiting task was cancelled).
    package var outcomeOrCancelled: Result<NATSPublishAck, NATSError> {
        state.withLock { $0.outcome } ?? .failure(Self.cancelled)
    }

    private static var cancelled: NATSError {
        NATSError(.cancelled, "waiting for the ack was cancelled; the publish may still be stored: resend it with the same message id if unsure")
    }

    /// Waits for the ack; throws the failure.
    public func ack() async throws(NATSError) -> NATSPublishAck {
        try await result().get()
    }

    /// Records the outcome, runs `beforeResuming`, and resumes the waiters; returns false (and
    /// changes nothing) when an outcome was recorded before, so that the publish leaves its
    /// window exactly once.
    @discardableResult
    func complete(_ outcome: Result<NATSPublishAck, NATSError>, beforeResuming: () -> Void = {}) -> Bool {
        let (first, more, done) = state.withLock { state -> (Waiter?, [Waiter], Bool) in
            guard state.outcome == nil else { return (nil, [], false) }
            state.outcome = outcome
            defer {
                state.firstWaiter = nil
                state.moreWaiters = []
            }
            return (state.firstWaiter, state.moreWaiters, true)
        }
        guard done else { return false }
        beforeResuming()
        first?.continuation.resume()
        for waiter in more { waiter.continuation.resume() }
        return done
    }
}

extension NATSPendingPublish: ResponseReceiver {
    func receive(_ outcome: Result<NATSMessage, NATSError>) {
        // The window first, the waiter second: a task that publishes again as soon as it is
        // resumed must find this publish gone, or it counts it among those in flight (which,
        // at the window's limit of prompt writes, would leave its publish to cnats's flusher).
        complete(publisher.outcome(of: self, outcome), beforeResuming: publisher.completed)
    }
}

extension NATSError {
    /// A JetStream publish whose ack will not come (the connection dropped, or the server closed
    /// it after an `-ERR`): it may or may not be stored, and is safe to resend with the same id.
    static func unacknowledgedPublish(
        _ code: Code, subject: String, messageID: String?, why: String = "the connection dropped before its ack"
    ) -> NATSError {
        NATSError(
            code,
            "publish to '\(subject)' (message id \(messageID ?? "none")): \(why); it may or may not be stored: resend it with the same message id",
            isRetriable: true)
    }
}

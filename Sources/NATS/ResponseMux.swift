import Dispatch
import Synchronization

/// Request/reply without a blocked thread: one wildcard inbox subscription per connection
/// (`_INBOX.<random>.*`), a token per request as the last subject token, and the reply handed to
/// the awaiting task straight from cnats's delivery thread.
///
/// Used by ``NATSConnection/request(subject:payload:headers:timeout:)``. The request leaves the
/// process inside `start`: on a SendAsap connection every publish does; otherwise the mux
/// publishes through cnats's internal `natsConn_publish` with its direct flush (what cnats's own
/// blocking request does), because a plain publish would wait up to a millisecond for cnats's
/// flusher thread. The round trip then costs what raw cnats's blocking request costs: the
/// delivery thread wakes for the reply, then the awaiting task (where cnats wakes the blocked
/// caller). Without those internals (see `NativeInternals`) and without SendAsap, a request is a
/// plain publish that a flush from a dispatch thread writes (`NativeConnection.flushSoon`, a
/// PING with it); nothing else changes
/// (one code path for every request: the same timeout, cancellation and disconnection rules).
///
/// Each request ends exactly once: with its reply, "no responders", its timeout (a one-shot timer
/// armed for the earliest deadline), cancellation of the awaiting task, or the connection
/// closing. Starting a request (``start(subject:bytes:headers:timeout:)``, synchronous, while the
/// caller still holds the payload bytes) and waiting for it (``wait(token:)``) are separate, and
/// the reply may arrive before the wait begins: it is kept until then.
final class ResponseMux: Sendable {
    private struct Waiter {
        let subject: String
        let deadline: UInt64
        let timeout: Duration
        /// Set for a request whose outcome is handed to an object instead of an awaiting task.
        let receiver: (any ResponseReceiver)?
        var continuation: UnsafeContinuation<Result<NATSMessage, NATSError>, Never>?
        var outcome: Result<NATSMessage, NATSError>?
    }

    /// Whom an outcome goes to, found under the lock and called outside it.
    enum Recipient {
        case task(UnsafeContinuation<Result<NATSMessage, NATSError>, Never>)
        case receiver(any ResponseReceiver)

        func deliver(_ outcome: Result<NATSMessage, NATSError>) {
            switch self {
            case .task(let continuation): continuation.resume(returning: outcome)
            case .receiver(let receiver): receiver.receive(outcome)
            }
        }
    }

    private struct State: ~Copyable {
        var nextToken: UInt64 = 1
        var waiters: [UInt64: Waiter] = [:]
        /// The deadline the timer is armed for, if armed.
        var armedDeadline: UInt64?
        /// Set when the subscription ended (the connection closed); no request starts after it.
        var closed = false
        /// The inbox subscription, set right after subscribing.
        var subscription: NativeSubscription?
        /// Requests with a token below this were in flight when the server closed the
        /// connection, for the reason given; they fail once the client reconnected.
        var lost: (below: UInt64, reason: String)?

        /// Records an outcome; returns whom to hand it to: the waiting task or the receiver.
        mutating func complete(_ token: UInt64, _ outcome: Result<NATSMessage, NATSError>) -> Recipient? {
            guard var waiter = waiters[token], waiter.outcome == nil else { return nil }
            if let receiver = waiter.receiver {
                waiters[token] = nil
                return .receiver(receiver)
            }
            if let continuation = waiter.continuation {
                waiters[token] = nil
                return .task(continuation)
            }
            waiter.outcome = outcome
            waiters[token] = waiter
            return nil
        }

        /// Fails every open request with a token below `below` with the error `error` makes for
        /// it; returns whom to hand each failure to.
        mutating func failOpen(
            below: UInt64 = .max, where matches: (Waiter) -> Bool = { _ in true }, _ error: (Waiter) -> NATSError
        ) -> [(Recipient, NATSError)] {
            var failed: [(Recipient, NATSError)] = []
            for (token, waiter) in waiters where waiter.outcome == nil && token < below && matches(waiter) {
                let failure = error(waiter)
                if let recipient = complete(token, .failure(failure)) { failed.append((recipient, failure)) }
            }
            return failed
        }
    }

    /// `_INBOX.<22 random characters>.` as bytes.
    let prefix: [UInt8]
    private let native: NativeConnection
    /// Whether a request must be written at once explicitly (the connection has no SendAsap).
    private let publishNow: Bool
    private let state = Mutex(State())
    // Dispatch sources are thread-safe; the type just is not marked Sendable.
    private nonisolated(unsafe) let timer: DispatchSourceTimer

    private init(native: NativeConnection, publishNow: Bool) {
        self.native = native
        self.publishNow = publishNow
        prefix = Array((NATSConnection.makeInbox() + ".").utf8)
        timer = DispatchSource.makeTimerSource(queue: DispatchQueue(label: "nats.requests.timeouts"))
    }

    /// Subscribes to the inbox wildcard (non-blocking). The server learns of the subscription
    /// before any request this connection sends later, so no flush is needed.
    static func make(
        native: NativeConnection,
        limits: NATSConnectionConfiguration.SubscriptionLimits,
        publishNow: Bool
    ) throws(NATSError) -> ResponseMux {
        let mux = ResponseMux(native: native, publishNow: publishNow)
        let subject = String(decoding: mux.prefix, as: UTF8.self) + "*"
        // The box holds the mux strongly; the cycle (cnats → box → mux → subscription) ends when
        // the subscription completes: after close() unsubscribes, or when the connection closes.
        let box = NativeReplyBox(
            handler: { token, outcome in mux.received(token, outcome) },
            onComplete: { mux.failAll(NATSError(.connectionClosed, "the connection closed before the reply arrived")) },
            onConnectionLost: { reason in mux.markLost(serverReason: reason) },
            onConnectionRecovered: { mux.failLost() },
            onConnectionDropped: { mux.failInFlight() },
            onPublishDenied: { subject, reason in mux.failDenied(subject: subject, reason: reason) })
        let native = try native.subscribe(subject: subject, queueGroup: nil, limits: limits, box: box)
        mux.state.withLock { $0.subscription = native }
        mux.timer.setEventHandler { mux.expire() }
        mux.timer.resume()
        return mux
    }

    /// Unsubscribes; requests in flight fail as closed.
    func close() {
        let native = state.withLock { $0.subscription }
        native?.unsubscribe()
        failAll(NATSError(.connectionClosed, "the connection was released before the reply arrived"))
    }

    /// Registers a request and publishes it; returns its token for ``wait(token:)``.
    func start(subject: String, bytes: UnsafeRawBufferPointer, headers: NATSHeaders, timeout: Duration) throws(NATSError) -> UInt64 {
        try start(subject: subject, bytes: bytes, headers: headers, timeout: timeout, receiver: nil, now: publishNow)
    }

    /// Registers a request whose outcome goes to `receiver` (exactly once: reply, "no
    /// responders", timeout or the connection closing; called on cnats's delivery thread or the
    /// timer's queue) and publishes it. With `now` false the message is left to cnats's flusher,
    /// which batches a burst into few writes; with `now` it is written at once (as requests are).
    /// When publishing fails, this throws; `receiver` may have been handed an outcome just before
    /// (the connection closed between registering and writing), so it must keep only the first.
    func start(
        subject: String, bytes: UnsafeRawBufferPointer, headers: NATSHeaders, timeout: Duration,
        receiver: (any ResponseReceiver)?, now: Bool
    ) throws(NATSError) -> UInt64 {
        let deadline = DispatchTime.now().uptimeNanoseconds &+ UInt64(clamping: timeout.nanosecondsClamped)
        let token = state.withLock { state -> UInt64? in
            if state.closed { return nil }
            let token = state.nextToken
            state.nextToken += 1
            state.waiters[token] = Waiter(subject: subject, deadline: deadline, timeout: timeout, receiver: receiver)
            if state.armedDeadline.map({ deadline < $0 }) ?? true {
                state.armedDeadline = deadline
                timer.schedule(deadline: DispatchTime(uptimeNanoseconds: deadline))
            }
            return token
        }
        guard let token else { throw NATSError(.connectionClosed, "the connection is closed") }
        do {
            try native.publish(
                subject: subject, replyPrefix: prefix, token: token, headers: headers, payload: bytes, now: now && publishNow)
        } catch {
            _ = state.withLock { $0.waiters.removeValue(forKey: token) }
            throw error
        }
        return token
    }

    /// Waits for the outcome of a started request.
    func wait(token: UInt64) async -> Result<NATSMessage, NATSError> {
        await withTaskCancellationHandler {
            await withUnsafeContinuation { (continuation: UnsafeContinuation<Result<NATSMessage, NATSError>, Never>) in
                let ready = state.withLock { state -> Result<NATSMessage, NATSError>? in
                    guard var waiter = state.waiters[token] else {
                        return .failure(NATSError(.internalError, "request \(token) is not pending"))
                    }
                    if let outcome = waiter.outcome {
                        state.waiters[token] = nil
                        return outcome
                    }
                    waiter.continuation = continuation
                    state.waiters[token] = waiter
                    return nil
                }
                if let ready { continuation.resume(returning: ready) }
            }
        } onCancel: {
            complete(token, .failure(NATSError(.cancelled, "the request was cancelled")))
        }
    }

    private func complete(_ token: UInt64, _ outcome: Result<NATSMessage, NATSError>) {
        state.withLock { $0.complete(token, outcome) }?.deliver(outcome)
    }

    /// A reply arrived (on the delivery thread).
    private func received(_ token: UInt64, _ outcome: NativeReplyBox.Outcome) {
        switch outcome {
        case .reply(let message):
            complete(token, .success(message))
        case .noResponders:
            let subject = state.withLock { $0.waiters[token]?.subject } ?? "?"
            complete(
                token,
                .failure(NATSError(.noResponders, "no responders are subscribed to '\(subject)'", isRetriable: true)))
        }
    }

    /// Fails the requests whose deadline passed and arms the timer for the next (timer queue).
    private func expire() {
        let now = DispatchTime.now().uptimeNanoseconds
        var expired: [(Recipient, NATSError)] = []
        state.withLock { state in
            var next: UInt64?
            for (token, waiter) in state.waiters where waiter.outcome == nil {
                if waiter.deadline <= now {
                    let error = NATSError(
                        .timeout, "no reply on '\(waiter.subject)' within \(waiter.timeout)", isRetriable: true)
                    if let continuation = state.complete(token, .failure(error)) { expired.append((continuation, error)) }
                } else {
                    next = min(next ?? waiter.deadline, waiter.deadline)
                }
            }
            state.armedDeadline = next
            if let next { timer.schedule(deadline: DispatchTime(uptimeNanoseconds: next)) }
        }
        for (recipient, error) in expired { recipient.deliver(.failure(error)) }
    }

    /// The server closed the connection after an `-ERR`: the requests in flight now lost their
    /// replies. Notes them, to fail once the client reconnected.
    private func markLost(serverReason reason: String) {
        state.withLock { state in state.lost = (state.nextToken, reason) }
    }

    /// The client reconnected: the requests that were in flight when the server closed the old
    /// connection fail now, naming the server's reason (one of them is likely the request the
    /// server refused), instead of waiting for their timeouts. Requests started since keep going.
    private func failLost() {
        let failed = state.withLock { state -> [(Recipient, NATSError)] in
            guard let (below, reason) = state.lost else { return [] }
            state.lost = nil
            return state.failOpen(below: below) { waiter in
                NATSError(
                    .serverError, "request on '\(NATSValidation.printable(waiter.subject))': the server closed the connection: \(reason)",
                    isRetriable: true)
            }
        }
        for (recipient, error) in failed { recipient.deliver(.failure(error)) }
    }

    /// The connection dropped: the replies to every request sent so far went to a connection that
    /// no longer exists, so each fails now as ``NATSError/Code/disconnected`` (outcome unknown)
    /// instead of waiting for its timeout. Requests started from now on are sent after the
    /// reconnect (cnats buffers them) and keep going.
    private func failInFlight() {
        let failed = state.withLock { state in
            state.failOpen { waiter in
                NATSError(
                    .disconnected,
                    "request on '\(NATSValidation.printable(waiter.subject))': the connection to the server dropped before the reply arrived; the server may or may not have processed it",
                    isRetriable: true)
            }
        }
        for (recipient, error) in failed { recipient.deliver(.failure(error)) }
    }

    /// The server refused a publish to `subject`: the requests open on it fail now with
    /// ``NATSError/Code/permissionDenied`` instead of timing out (no reply can come). Requests on
    /// other subjects go on.
    private func failDenied(subject: String, reason: String) {
        let failed = state.withLock { state in
            state.failOpen(where: { $0.subject == subject }) { _ in
                NATSError(
                    .permissionDenied,
                    "request on '\(NATSValidation.printable(subject))': the server does not permit publishing to it (\(reason))")
            }
        }
        for (recipient, error) in failed { recipient.deliver(.failure(error)) }
    }

    private func failAll(_ error: NATSError) {
        let waiting = state.withLock { state -> [Recipient] in
            state.closed = true
            var waiting: [Recipient] = []
            for token in Array(state.waiters.keys) {
                if let recipient = state.complete(token, .failure(error)) { waiting.append(recipient) }
            }
            return waiting
        }
        for recipient in waiting { recipient.deliver(.failure(error)) }
        timer.cancel()
    }
}

/// An object that takes the outcome of a request started through ``ResponseMux`` without a task
/// waiting for it (a JetStream publish in a publisher's window). Called exactly once, on cnats's
/// delivery thread or the mux's timer queue: it must return quickly and must not block.
protocol ResponseReceiver: AnyObject, Sendable {
    func receive(_ outcome: Result<NATSMessage, NATSError>)
}

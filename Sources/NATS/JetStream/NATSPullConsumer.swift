import Synchronization

/// A pull consumer: the client asks the server for batches of messages.
///
/// Iterate it (`for try await message in consumer`) for a continuous stream: it keeps at most
/// ``Options/batch`` messages requested ahead, asks for more when half of them were handed out
/// (also in the middle of a buffered batch, so the server is not left idle), and
/// re-issues its requests when the server's heartbeats stop or the connection reconnects (a pull
/// request the server held is lost with the old connection). Or call ``fetch(batch:maxWait:)``
/// for one batch at a time. Use one of the two at a time, from one task.
///
/// The iteration ends when the consumer is ``stop()``ped, its task is cancelled, or the
/// connection closes; it throws when the server deleted the consumer.
public final class NATSPullConsumer: AsyncSequence, Sendable {
    public typealias Element = NATSJetStreamMessage
    public typealias Failure = NATSError

    /// How the continuous iteration asks for messages.
    public struct Options: Sendable, Hashable {
        /// Messages requested ahead, at most (the client buffers no more than this). Default 256.
        public var batch = 256
        /// How long one pull request lives on the server. Default 30 s.
        public var expires: Duration = .seconds(30)
        /// How often the server confirms an open pull request when it has nothing to send.
        /// Two missed heartbeats make the client re-issue its request. Default 5 s.
        public var idleHeartbeat: Duration = .seconds(5)

        /// Creates options.
        public init(batch: Int = 256, expires: Duration = .seconds(30), idleHeartbeat: Duration = .seconds(5)) {
            self.batch = batch
            self.expires = expires
            self.idleHeartbeat = idleHeartbeat
        }

        func validate() throws(NATSError) {
            if batch < 1 { throw NATSError(.invalidArgument, "pull batch \(batch) must be at least 1") }
            if expires < .milliseconds(10) {
                throw NATSError(.invalidArgument, "pull expires \(expires) must be at least 10 ms")
            }
            if idleHeartbeat <= .zero || idleHeartbeat * 2 > expires {
                throw NATSError(
                    .invalidArgument,
                    "pull idleHeartbeat \(idleHeartbeat) must be positive and at most half of expires (\(expires))")
            }
        }
    }

    /// The messages the continuous iteration requests first; each top-up doubles the window up
    /// to ``Options/batch``. A consumer that stops soon after it started (a group member that
    /// takes a few events and leaves) then holds, and hands back, a few messages rather than a
    /// whole batch: each hand-back costs the message a delivery attempt on the server. A
    /// consumer that keeps going reaches its full batch after a handful of round trips.
    static let initialWindow = 16

    /// The stream.
    public let stream: String
    /// The consumer's name.
    public let name: String
    /// The continuous iteration's options.
    public let options: Options
    let connection: NATSConnection
    let inbox: String
    let handle: SubscriptionHandle<ConsumerDelivery>
    private let nextSubject: String
    private let session = Mutex(PullSession())
    /// The live iterators' taken batches, for ``stopReturningUndelivered()``.
    let takers: TakenDeliveriesRegistry
    let monitor: ConsumerHealthMonitor

    init(
        jetStream: NATSJetStream, stream: String, name: String, options: Options,
        handle: SubscriptionHandle<ConsumerDelivery>, inbox: String, ackWait: Duration? = nil
    ) {
        takers = TakenDeliveriesRegistry(redeliveredAfter: ackWait)
        self.stream = stream
        self.name = name
        self.options = options
        self.connection = jetStream.connection
        self.handle = handle
        self.inbox = inbox
        nextSubject = "\(jetStream.api.prefix).CONSUMER.MSG.NEXT.\(stream).\(name)"
        monitor = ConsumerHealthMonitor(
            stream: stream, consumer: name, heartbeat: options.idleHeartbeat, logger: jetStream.connection.core.logger)
        // Reconnects before this consumer existed are not its business.
        session.withLock { $0.reconnectGeneration = jetStream.connection.reconnectGeneration }
    }

    /// The consumer's health now. ``NATSConsumerHealth/buffered`` counts the subscription's
    /// buffer (messages and status messages not yet taken by an iterator).
    public var health: NATSConsumerHealth {
        monitor.snapshot(
            connection: connection, buffered: bufferedCount,
            requested: session.withLock { $0.expected }, waiting: handle.buffer.hasWaitingConsumer,
            finished: handle.buffer.isFinished)
    }

    /// Messages received and not yet taken by an iterator (takes the buffer's lock: not per message).
    package var bufferedCount: Int { handle.buffer.bufferedCount }

    /// The consumer's recovery events from now on (see ``NATSConsumerRecoveryEvents``).
    public var recoveryEvents: NATSConsumerRecoveryEvents { monitor.events() }

    /// Calls `observer` with each recovery event, on the iterating task; it must return quickly.
    package func observeRecoveries(_ observer: @escaping @Sendable (NATSConsumerRecoveryEvent) -> Void) {
        monitor.observe(observer)
    }

    /// A task executor that lets the delivery thread which receives this consumer's messages run
    /// the task iterating it, instead of waking a concurrency-pool thread for every hand-over.
    ///
    /// ```swift
    /// let worker = Task(executorPreference: consumer.deliveryExecutor) {
    ///     for try await message in consumer { try handle(message); try message.ack() }
    /// }
    /// ```
    ///
    /// What it saves and costs, and the rules for the loop's body (quick, non-blocking, no
    /// per-message awaits on other work), are those of ``NATSSubscription/deliveryExecutor``.
    public var deliveryExecutor: any TaskExecutor { deliveryThreadExecutor }

    /// ``deliveryExecutor`` as its own type, for `consume` (which watches the jobs it passes on).
    package var deliveryThreadExecutor: DeliveryThreadExecutor { handle.buffer.consumerExecutor }

    /// Stops receiving: pull requests are abandoned and the iteration ends. Messages received
    /// and not yet handed out are redelivered by the server after their ack wait, except those an
    /// iterator had taken, which go back (`-NAK`) when the iterator goes away; use
    /// ``stopReturningUndelivered()`` to hand everything back at once.
    public func stop() {
        handle.stop()
        monitor.stopped()
    }

    /// Stops like ``stop()``, and hands the messages that were received but never iterated back to
    /// the server at once (`-NAK`), so that another member gets them now instead of after their
    /// ack wait.
    public func stopReturningUndelivered() {
        handle.stopReturningUndelivered(on: connection, takers: takers)
        monitor.stopped()
    }

    /// Requests up to `batch` messages and returns what arrived within `maxWait` (possibly none).
    public func fetch(batch: Int, maxWait: Duration = .seconds(5)) async throws(NATSError) -> [NATSJetStreamMessage] {
        if batch < 1 { throw NATSError(.invalidArgument, "fetch batch \(batch) must be at least 1") }
        if maxWait < .milliseconds(10) { throw NATSError(.invalidArgument, "fetch maxWait \(maxWait) must be at least 10 ms") }
        var puller = Puller(consumer: self)
        return try await puller.fetch(batch: batch, maxWait: maxWait)
    }

    /// Creates the continuous iterator.
    public func makeAsyncIterator() -> Iterator {
        let puller = Puller(consumer: self)
        takers.register(puller.taken)
        return Iterator(puller: puller)
    }

    /// Iterates over messages, requesting more as they are consumed.
    public struct Iterator: AsyncIteratorProtocol {
        var puller: Puller

        /// The next message; `nil` when stopped, cancelled, or the connection closed.
        /// Runs on the caller's executor (`nonisolated(nonsending)`): an actor iterating stays on it.
        nonisolated(nonsending) public mutating func next() async throws(NATSError) -> NATSJetStreamMessage? {
            guard puller.taken.enter() else { return nil }
            defer { puller.taken.leave() }
            return try await puller.next()
        }
    }

    /// Bookkeeping shared by `fetch` and the iterator (kept here so both see the same requests).
    struct PullSession {
        /// Messages still expected from each open pull request, oldest first (the server serves
        /// requests in order).
        var openRequests: [Int] = []
        var reconnectGeneration = 0
        /// Messages a fetch received beyond its batch, handed out first next time.
        var leftovers: [ConsumerDelivery] = []
        /// How many messages the iteration keeps requested ahead: it starts small and doubles
        /// with each top-up that follows consumed messages, up to ``Options/batch`` (see
        /// ``initialWindow``).
        var window = 0
        /// Messages received since the last top-up: the window grows on consumption only, not
        /// when requests merely expired on an idle stream.
        var receivedSinceTopUp = 0

        var expected: Int { openRequests.reduce(0, +) }

        mutating func received(count: Int = 1) {
            receivedSinceTopUp += count
            var remaining = count
            while remaining > 0, !openRequests.isEmpty {
                let taken = Swift.min(remaining, openRequests[0])
                openRequests[0] -= taken
                remaining -= taken
                if openRequests[0] <= 0 { openRequests.removeFirst() }
            }
        }

        mutating func oldestEnded() {
            if !openRequests.isEmpty { openRequests.removeFirst() }
        }
    }

    /// The pulling logic, owned by one task at a time.
    struct Puller {
        let consumer: NATSPullConsumer
        /// Messages received and not yet handed out, reversed: each is moved out with
        /// `popLast` (no reference counting of its fields). Handed back to the server when the
        /// iterator goes away.
        let taken: TakenDeliveries
        var lastActivity = ContinuousClock.now
        /// Stream messages handed out since the open requests were last updated.
        var receivedSinceReplenish = 0
        var redeliveries = RedeliveryProbe()

        init(consumer: NATSPullConsumer) {
            self.consumer = consumer
            taken = TakenDeliveries(
                connection: consumer.connection,
                batch: consumer.session.withLock { session in
                    defer { session.leftovers = [] }
                    return session.leftovers.reversed()
                },
                redeliveredAfter: consumer.takers.redeliveredAfter)
        }

        /// Keeps what is left of the batch for the next fetch or iteration, in order.
        private mutating func keepLeftovers() {
            guard !taken.batch.isEmpty else { return }
            let rest = Array(taken.batch.reversed())
            taken.batch.removeAll()
            consumer.session.withLock { $0.leftovers = rest + $0.leftovers }
        }

        private func sendPull(batch: Int, expires: Duration, heartbeat: Duration?) throws(NATSError) {
            var body = "{\"batch\":\(batch),\"expires\":\(expires.nanosecondsClamped)"
            if let heartbeat { body += ",\"idle_heartbeat\":\(heartbeat.nanosecondsClamped)" }
            body += "}"
            // Written at once: the request tops up messages the consumer is about to run out of.
            try consumer.connection.publishNow(subject: consumer.nextSubject, body: body, replyTo: consumer.inbox)
        }

        /// Applies a status message to the session; returns an error that ends the iteration.
        private func handle(_ status: JetStreamStatus) -> NATSError? {
            switch status {
            case .heartbeat, .flowControl:
                consumer.monitor.heartbeatArrived()
                return nil
            case .noMessages, .requestTimeout:
                consumer.monitor.heartbeatArrived()
                consumer.session.withLock { $0.oldestEnded() }
                return nil
            case .conflict(let description, _):
                consumer.session.withLock { $0.oldestEnded() }
                let lowercased = description.lowercased()
                if lowercased.contains("consumer deleted") {
                    let error = NATSError(
                        .jetStream, "consumer '\(consumer.name)' on stream '\(consumer.stream)' was deleted",
                        jetStreamErrorCode: NATSJetStreamErrorCode.consumerNotFound)
                    consumer.monitor.failed(error)
                    return error
                }
                if lowercased.contains("leadership change") {
                    consumer.monitor.recovering(.leaderChanged, "the server ended a pull request: 409 \(description)")
                } else {
                    consumer.monitor.heartbeatArrived()
                }
                return nil
            case .other(let code, let description):
                consumer.session.withLock { $0.oldestEnded() }
                if code == "503" {
                    // No responders: the consumer's leader is moving; ask again.
                    consumer.monitor.recovering(.leaderChanged, "the server answered a pull request with 503 (no responders)")
                    return nil
                }
                consumer.connection.core.logger.debug(
                    "unexpected JetStream status on pull consumer",
                    metadata: ["status": "\(code)", "description": "\(description)"])
                return nil
            }
        }

        /// Tops up open requests to the window (growing toward `options.batch`) once half of them
        /// arrived; forgets them after a reconnect or when the server went quiet beyond two
        /// heartbeats.
        private mutating func replenish() throws(NATSError) {
            let options = consumer.options
            let generation = consumer.connection.reconnectGeneration
            let silentTooLong = ContinuousClock.now - lastActivity > options.idleHeartbeat * 2
            var recovery: NATSConsumerRecoveryEvent.Reason?
            let request = consumer.session.withLock { session -> Int in
                if session.reconnectGeneration != generation {
                    recovery = .pullReissued
                } else if silentTooLong && !session.openRequests.isEmpty {
                    recovery = .heartbeatMissed
                }
                if recovery != nil {
                    // The server no longer holds these requests (or is not answering them).
                    session.openRequests.removeAll()
                    session.reconnectGeneration = generation
                }
                let expected = session.expected
                if session.window == 0 {
                    session.window = Swift.min(options.batch, NATSPullConsumer.initialWindow)
                } else if expected <= session.window / 2 && session.receivedSinceTopUp > 0 {
                    session.window = Swift.min(options.batch, session.window * 2)
                }
                guard expected <= session.window / 2 else { return 0 }
                session.receivedSinceTopUp = 0
                let amount = session.window - expected
                guard amount > 0 else { return 0 }
                session.openRequests.append(amount)
                return amount
            }
            switch recovery {
            case .pullReissued:
                consumer.monitor.recovering(.pullReissued, "the connection reconnected; pull requests re-issued")
            case .heartbeatMissed:
                let state = consumer.monitor.state
                if state == .recovering || state == .stalled {
                    consumer.monitor.stillSilent()
                } else {
                    consumer.monitor.recovering(
                        .heartbeatMissed,
                        "no message or heartbeat for over \(options.idleHeartbeat * 2); pull requests re-issued")
                }
            default:
                break
            }
            if request > 0 {
                lastActivity = .now
                do {
                    try sendPull(batch: request, expires: options.expires, heartbeat: options.idleHeartbeat)
                } catch {
                    consumer.session.withLock { _ = $0.openRequests.popLast() }
                    // Disconnected without a reconnect buffer, or closed: closed ends the loop below.
                    if error.code != .connectionClosed { throw error }
                }
            }
        }

        /// How many messages handed out from one taken batch are counted, and a top-up
        /// considered, before the batch ends: a quarter of the full window. The taken batch is
        /// everything the delivery thread buffered, up to a whole window when the handler is
        /// slower than the server; checked only at its end, the next request would go out when
        /// nothing requested is left and every window would cost an idle round trip.
        private var topUpCheckInterval: Int { Swift.max(1, consumer.options.batch / 4) }

        /// Counts the messages handed out since the last time into the open requests, then
        /// tops them up if half the window is consumed.
        private mutating func recordReceivedAndReplenish() throws(NATSError) {
            if receivedSinceReplenish > 0 {
                lastActivity = .now
                let received = receivedSinceReplenish
                receivedSinceReplenish = 0
                consumer.session.withLock { $0.received(count: received) }
            }
            try replenish()
        }

        nonisolated(nonsending) mutating func next() async throws(NATSError) -> NATSJetStreamMessage? {
            while true {
                while !taken.batch.isEmpty {
                    if receivedSinceReplenish >= topUpCheckInterval {
                        // A large taken batch: ask for more once half the window is consumed, not
                        // only once all of it is, so the server delivers the next messages while
                        // these are handled instead of waiting idle for the next request. A
                        // request that fails here is sent again when the batch ends, and its
                        // error ends the iteration there, after the messages already held.
                        try? recordReceivedAndReplenish()
                    }
                    let delivery = taken.batch.removeLast()
                    guard delivery.message.subject == consumer.inbox || delivery.isStreamMessage else {
                        // A message of an added core subscription (``addCoreSubscription(to:queueGroup:)``).
                        // Stream messages keep their own subject; their reply is an ack subject.
                        return NATSJetStreamMessage(delivery, connection: consumer.connection)
                    }
                    if let status = JetStreamStatus(delivery) {
                        lastActivity = .now
                        if let error = handle(status) { throw error }
                        continue
                    }
                    // Counted into the open requests before asking for more: at the end of the
                    // taken batch, or every `topUpCheckInterval` messages within a large one.
                    receivedSinceReplenish += 1
                    redeliveries.check(delivery, monitor: consumer.monitor)
                    if consumer.monitor.tracesMessages { consumer.monitor.trace(delivery) }
                    return NATSJetStreamMessage(delivery, connection: consumer.connection)
                }
                try recordReceivedAndReplenish()
                // Wake up at least every second to notice reconnects and silence.
                let wait = Swift.min(consumer.options.idleHeartbeat, .seconds(1))
                switch try await consumer.handle.buffer.takeBatch(into: &taken.batch, timeout: wait) {
                case .took, .wokenUp:
                    consumer.monitor.batchTaken(taken.batch)
                    taken.batch.reverseInPlace()
                    continue
                case .finished, .cancelled:
                    consumer.handle.stop()
                    consumer.monitor.stopped()
                    return nil
                }
            }
        }

        mutating func fetch(batch requested: Int, maxWait: Duration) async throws(NATSError) -> [NATSJetStreamMessage] {
            var messages: [NATSJetStreamMessage] = []
            // Leftovers of an earlier iteration or fetch come first.
            consumer.session.withLock { $0.openRequests.append(requested) }
            do {
                try sendPull(batch: requested, expires: maxWait, heartbeat: nil)
            } catch {
                consumer.session.withLock { _ = $0.openRequests.popLast() }
                throw error
            }
            // The server answers a request that expired with 408; the deadline is a safety net.
            let deadline = ContinuousClock.now + maxWait + .milliseconds(500)
            while messages.count < requested {
                while messages.count < requested, let delivery = taken.batch.popLast() {
                    if let status = JetStreamStatus(delivery) {
                        let ended: Bool
                        switch status {
                        case .noMessages, .requestTimeout, .conflict, .other: ended = true
                        default: ended = false
                        }
                        if let error = handle(status) { throw error }
                        if ended && consumer.session.withLock({ $0.openRequests.isEmpty }) {
                            keepLeftovers()
                            return messages
                        }
                        continue
                    }
                    consumer.session.withLock { $0.received() }
                    redeliveries.check(delivery, monitor: consumer.monitor)
                    if consumer.monitor.tracesMessages { consumer.monitor.trace(delivery) }
                    if let pending = delivery.pendingFromMetadata { consumer.monitor.pendingSeen(pending) }
                    consumer.monitor.messagesArrived()
                    messages.append(NATSJetStreamMessage(delivery, connection: consumer.connection))
                }
                if messages.count >= requested { break }
                let remaining = deadline - .now
                if remaining <= .zero {
                    consumer.session.withLock { $0.oldestEnded() }
                    break
                }
                switch try await consumer.handle.buffer.takeBatch(into: &taken.batch, timeout: remaining) {
                case .took, .wokenUp:
                    taken.batch.reverseInPlace()
                    continue
                case .finished:
                    if messages.isEmpty { throw NATSError(.subscriptionClosed, "the pull consumer '\(consumer.name)' is stopped") }
                    return messages
                case .cancelled:
                    throw NATSError(.cancelled, "fetch on '\(consumer.name)' was cancelled")
                }
            }
            // Messages beyond the batch are kept for the next call.
            keepLeftovers()
            return messages
        }
    }
}

extension NATSPullConsumer {
    /// Adds a core NATS subscription whose messages come through this consumer's sequence, in
    /// arrival order with the stream's messages: one loop then serves, say, the requests
    /// addressed to a stream's workers as well as the stream (the EventBus does this). Such a
    /// message has no ``NATSJetStreamMessage/metadata`` (nothing to acknowledge; answer it on
    /// its `replyTo`), and does not count against the pull
    /// batch. It shares the consumer's buffer and delivery limits, and ends with the consumer.
    ///
    /// Returns once the server has the interest. Each added subscription is one more cnats
    /// subscription (and delivery thread); the buffer it fills is the consumer's.
    public func addCoreSubscription(to subject: String, queueGroup: String? = nil) async throws(NATSError) {
        try await connection.addCoreSubscription(to: handle, subject: subject, queueGroup: queueGroup)
    }
}

extension NATSJetStream {
    /// Binds to an existing pull consumer (create it first with
    /// ``ensureConsumer(stream:_:)``).
    public func pullConsumer(
        stream: String,
        name: String,
        options: NATSPullConsumer.Options = .init()
    ) async throws(NATSError) -> NATSPullConsumer {
        try options.validate()
        let info = try await consumerInfo(stream: stream, name: name)
        if info.configuration.deliverSubject != nil {
            throw NATSError(
                .invalidArgument,
                "consumer '\(name)' on stream '\(stream)' is a push consumer (it has a deliver subject); use pushConsumer")
        }
        let inbox = connection.newInbox()
        // Room for every message requested ahead plus the status messages that come with them.
        let limits = NATSConnectionConfiguration.SubscriptionLimits(
            messages: options.batch * 2 + 64, bytes: connection.configuration.subscriptionLimits.bytes)
        let handle = try await connection.subscribeConsumer(
            to: inbox, limits: limits, redeliveredAfter: info.configuration.ackWait)
        return NATSPullConsumer(
            jetStream: self, stream: stream, name: name, options: options, handle: handle, inbox: inbox,
            ackWait: info.configuration.ackWait)
    }
}

import Logging
import Synchronization

/// A snapshot of a JetStream consumer's health, as its client sees it: ``NATSPullConsumer/health``,
/// ``NATSPushConsumer/health``, ``NATSOrderedConsumer/health``.
public struct NATSConsumerHealth: Sendable, Hashable {
    /// Where the consumer is.
    public enum State: String, Sendable, Hashable, CustomStringConvertible {
        /// Receiving, or waiting with the server's heartbeats arriving.
        case running
        /// Recovering: the connection is reconnecting, or the client re-issued its pull requests,
        /// recreated or resubscribed the consumer, and nothing has arrived since.
        case recovering
        /// Waiting for messages with neither a message nor a heartbeat for more than two
        /// heartbeat intervals, after a recovery already tried (or with nothing to try: push).
        case stalled
        /// Stopped, or its connection closed: no more messages will come.
        case stopped

        public var description: String { rawValue }
    }

    /// The stream.
    public var stream: String
    /// The consumer's name (empty for an ordered consumer before its first message).
    public var consumer: String
    /// The state.
    public var state: State
    /// Time since the last stream message arrived; `nil` if none has.
    public var lastMessageAge: Duration?
    /// Time since the server's last heartbeat or other status message (flow control, an ended
    /// pull request); `nil` if none has arrived.
    public var lastHeartbeatAge: Duration?
    /// The consumer's pending messages (`num_pending`) as the last message's metadata said;
    /// `nil` before the first message.
    public var pending: UInt64?
    /// Messages received and not yet handed to the application.
    public var buffered: Int
    /// Messages asked for by open pull requests and not yet received (0 for push consumers).
    public var requested: Int
    /// Messages seen that the server delivered more than once.
    public var redeliveries: Int
    /// Recovery events so far (see ``NATSConsumerRecoveryEvent``).
    public var recoveries: Int
    /// The last error that ended or interrupted the iteration, if any.
    public var lastError: NATSError?

    /// Creates a snapshot (for tests and other backends).
    public init(
        stream: String, consumer: String, state: State, lastMessageAge: Duration? = nil,
        lastHeartbeatAge: Duration? = nil, pending: UInt64? = nil, buffered: Int = 0, requested: Int = 0,
        redeliveries: Int = 0, recoveries: Int = 0, lastError: NATSError? = nil
    ) {
        self.stream = stream
        self.consumer = consumer
        self.state = state
        self.lastMessageAge = lastMessageAge
        self.lastHeartbeatAge = lastHeartbeatAge
        self.pending = pending
        self.buffered = buffered
        self.requested = requested
        self.redeliveries = redeliveries
        self.recoveries = recoveries
        self.lastError = lastError
    }
}

/// Something a consumer did to recover, and why.
public struct NATSConsumerRecoveryEvent: Sendable, Hashable, CustomStringConvertible {
    /// Why the consumer recovered.
    public enum Reason: String, Sendable, Hashable, CustomStringConvertible {
        /// The server's heartbeats stopped (two intervals without a message or heartbeat while
        /// requests were open): a pull consumer re-issues its requests, an ordered consumer is
        /// recreated, a push consumer can only wait.
        case heartbeatMissed
        /// The connection reconnected: the pull requests the old connection held are gone, so
        /// the client asked again.
        case pullReissued
        /// An ordered consumer was recreated after a gap in its sequence, a reconnect or silence,
        /// resuming after the last message it delivered.
        case consumerRecreated
        /// The consumer's leader moved (the server ended the pull request with `409 Leadership
        /// Change` or `503`); the client asks the new leader.
        case leaderChanged
        /// The connection reconnected and cnats subscribed the push consumer's deliver subject
        /// again; the server resumes delivery.
        case resubscribed

        public var description: String { rawValue }
    }

    /// The stream.
    public var stream: String
    /// The consumer.
    public var consumer: String
    /// Why.
    public var reason: Reason
    /// What happened, in words.
    public var detail: String
    /// When.
    public var time: ContinuousClock.Instant

    /// Creates an event.
    public init(stream: String, consumer: String, reason: Reason, detail: String, time: ContinuousClock.Instant = .now) {
        self.stream = stream
        self.consumer = consumer
        self.reason = reason
        self.detail = detail
        self.time = time
    }

    public var description: String { "consumer '\(consumer)' on stream '\(stream)': \(reason): \(detail)" }
}

/// A consumer's recovery events from the moment it was accessed. Each access to a consumer's
/// `recoveryEvents` is a new listener that keeps the newest 64 events it has not read (older ones
/// are dropped: a listener that falls behind sees the latest). Ends when the consumer stops.
public struct NATSConsumerRecoveryEvents: AsyncSequence, Sendable {
    public typealias Element = NATSConsumerRecoveryEvent
    public typealias Failure = Never

    let stream: AsyncStream<NATSConsumerRecoveryEvent>

    /// Creates an iterator.
    public func makeAsyncIterator() -> AsyncStream<NATSConsumerRecoveryEvent>.Iterator {
        stream.makeAsyncIterator()
    }
}

/// A consumer's health as its iterator records it. Per batch of messages it costs a clock read
/// and an atomic store; per message, nothing (redeliveries are found with a two-byte check of the
/// ack subject, see ``RedeliveryProbe``). The lock guards only rare things: the last error and
/// the event listeners.
final class ConsumerHealthMonitor: Sendable {
    let stream: String
    private let consumerName = Mutex("")
    /// The heartbeat interval, for telling a stalled consumer from an idle one.
    let heartbeat: Duration?
    let logger: Logger
    /// Whether each message is logged at trace (the logger's level, read once).
    let tracesMessages: Bool
    private let origin = ContinuousClock.now
    /// Nanoseconds after `origin`; -1 for never.
    private let lastMessage = Atomic<Int64>(-1)
    private let lastHeartbeat = Atomic<Int64>(-1)
    /// -1 for unknown.
    private let pendingCount = Atomic<Int64>(-1)
    private let stateValue = Atomic<UInt8>(0)
    private let redeliveryCount = Atomic<Int>(0)
    private let recoveryCount = Atomic<Int>(0)
    private let shared = Mutex(Shared())

    private struct Shared {
        var lastError: NATSError?
        var listeners: [Int: AsyncStream<NATSConsumerRecoveryEvent>.Continuation] = [:]
        var nextListener = 0
        var observers: [@Sendable (NATSConsumerRecoveryEvent) -> Void] = []
        var finished = false
    }

    private static let states: [NATSConsumerHealth.State] = [.running, .recovering, .stalled, .stopped]

    init(stream: String, consumer: String, heartbeat: Duration?, logger: Logger) {
        self.stream = stream
        consumerName.withLock { $0 = consumer }
        self.heartbeat = heartbeat
        var logger = logger
        logger[metadataKey: "stream"] = "\(stream)"
        if !consumer.isEmpty { logger[metadataKey: "consumer"] = "\(consumer)" }
        self.logger = logger
        tracesMessages = logger.logLevel <= .trace
    }

    var consumer: String { consumerName.withLock { $0 } }

    /// An ordered consumer's name changes with each recreation.
    func renamed(_ name: String) {
        consumerName.withLock { $0 = name }
    }

    private var now: Int64 {
        let elapsed = ContinuousClock.now - origin
        return elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000
    }

    private func age(_ stored: Int64) -> Duration? {
        stored < 0 ? nil : .nanoseconds(now - stored)
    }

    var state: NATSConsumerHealth.State { Self.states[Int(stateValue.load(ordering: .relaxed))] }

    private func setState(_ state: NATSConsumerHealth.State) {
        stateValue.store(UInt8(Self.states.firstIndex(of: state)!), ordering: .relaxed)
    }

    /// Stream messages arrived (once per batch).
    func messagesArrived() {
        lastMessage.store(now, ordering: .relaxed)
        resumeIfRecovering()
    }

    /// A heartbeat or other status message arrived.
    func heartbeatArrived() {
        lastHeartbeat.store(now, ordering: .relaxed)
        resumeIfRecovering()
    }

    func pendingSeen(_ pending: UInt64) {
        pendingCount.store(Int64(truncatingIfNeeded: pending), ordering: .relaxed)
    }

    func redeliverySeen() {
        redeliveryCount.add(1, ordering: .relaxed)
    }

    private func resumeIfRecovering() {
        let current = stateValue.load(ordering: .relaxed)
        guard current == 1 || current == 2 else { return }
        setState(.running)
        logger.info("JetStream consumer receiving again")
    }

    /// The consumer did something to recover: recorded, logged, and sent to the listeners.
    func recovering(_ reason: NATSConsumerRecoveryEvent.Reason, _ detail: String) {
        guard state != .stopped else { return }
        setState(.recovering)
        recoveryCount.add(1, ordering: .relaxed)
        let event = NATSConsumerRecoveryEvent(stream: stream, consumer: consumer, reason: reason, detail: detail)
        let level: Logger.Level = reason == .heartbeatMissed ? .warning : .notice
        logger.log(level: level, "JetStream consumer recovering", metadata: ["reason": "\(reason)", "detail": "\(detail)"])
        let (listeners, observers) = shared.withLock { (Array($0.listeners.values), $0.observers) }
        for listener in listeners { listener.yield(event) }
        for observer in observers { observer(event) }
    }

    /// Silence went on after a recovery was tried: stalled (no new event: one per outage).
    func stillSilent() {
        if state == .recovering { setState(.stalled) }
    }

    func failed(_ error: NATSError) {
        shared.withLock { $0.lastError = error }
    }

    /// The consumer stopped: the listeners end.
    func stopped() {
        setState(.stopped)
        let listeners = shared.withLock { shared in
            shared.finished = true
            defer { shared.listeners = [:] }
            return Array(shared.listeners.values)
        }
        for listener in listeners { listener.finish() }
    }

    /// A new listener (see ``NATSConsumerRecoveryEvents``).
    func events() -> NATSConsumerRecoveryEvents {
        let (stream, continuation) = AsyncStream.makeStream(
            of: NATSConsumerRecoveryEvent.self, bufferingPolicy: .bufferingNewest(64))
        let finished = shared.withLock { shared -> Bool in
            if shared.finished { return true }
            let id = shared.nextListener
            shared.nextListener += 1
            shared.listeners[id] = continuation
            continuation.onTermination = { [weak self] _ in self?.shared.withLock { _ = $0.listeners.removeValue(forKey: id) } }
            return false
        }
        if finished { continuation.finish() }
        return NATSConsumerRecoveryEvents(stream: stream)
    }

    /// Calls `observer` with every recovery event, on the consumer's task (keep it short).
    func observe(_ observer: @escaping @Sendable (NATSConsumerRecoveryEvent) -> Void) {
        shared.withLock { $0.observers.append(observer) }
    }

    /// A snapshot. A running consumer whose iterator waits with neither a message nor a heartbeat
    /// for over two heartbeat intervals is reported stalled; any consumer of a connection that is
    /// reconnecting, recovering.
    func snapshot(
        connection: NATSConnection, buffered: Int, requested: Int, waiting: Bool, finished: Bool
    ) -> NATSConsumerHealth {
        var state = finished ? .stopped : self.state
        if state != .stopped {
            switch connection.state {
            case .closed, .closing: state = .stopped
            case .reconnecting: state = .recovering
            default: break
            }
        }
        let lastMessageAge = age(lastMessage.load(ordering: .relaxed))
        let lastHeartbeatAge = age(lastHeartbeat.load(ordering: .relaxed))
        if state == .running, waiting, let heartbeat {
            let quiet = [lastMessageAge, lastHeartbeatAge].compactMap { $0 }.min()
            if let quiet, quiet > heartbeat * 2 { state = .stalled }
        }
        let pending = pendingCount.load(ordering: .relaxed)
        return NATSConsumerHealth(
            stream: stream, consumer: consumer, state: state, lastMessageAge: lastMessageAge,
            lastHeartbeatAge: lastHeartbeatAge, pending: pending < 0 ? nil : UInt64(pending), buffered: buffered,
            requested: requested, redeliveries: redeliveryCount.load(ordering: .relaxed),
            recoveries: recoveryCount.load(ordering: .relaxed), lastError: shared.withLock { $0.lastError })
    }
}

/// Finds redeliveries without parsing each ack subject: within one consumer the delivered-count
/// token starts at the same byte offset in every ack subject (`$JS.ACK.<stream>.<consumer>.` and,
/// in the newer form, a domain and account hash that do not change), so `1.` there is a first
/// delivery. Anything else is parsed in full, which also finds the offset again.
struct RedeliveryProbe {
    private var offset = -1

    /// Checks one stream message; records a redelivery and the pending count when it parses one.
    mutating func check(_ delivery: borrowing ConsumerDelivery, monitor: ConsumerHealthMonitor) {
        guard let reply = delivery.reply else { return }
        let firstDelivery = reply.withSubjectBytes { bytes in
            offset >= 0 && offset + 1 < bytes.count && bytes[offset] == UInt8(ascii: "1")
                && bytes[offset + 1] == UInt8(ascii: ".")
        }
        if firstDelivery { return }
        reply.withSubjectBytes { bytes in
            guard let metadata = NATSJetStreamMessage.Metadata.parse(bytes, names: false) else { return }
            if metadata.deliveryCount > 1 { monitor.redeliverySeen() }
            offset = Self.deliveredOffset(bytes)
        }
    }

    /// Where the delivered-count token starts: after the 4th dot (9 tokens) or the 6th (11 or 12).
    static func deliveredOffset(_ bytes: UnsafeBufferPointer<UInt8>) -> Int {
        var dots: [Int] = []
        for (index, byte) in bytes.enumerated() where byte == UInt8(ascii: ".") { dots.append(index) }
        let tokens = dots.count + 1
        let dotIndex = tokens == 9 ? 3 : 5
        return dots.count > dotIndex ? dots[dotIndex] + 1 : -1
    }
}

extension ConsumerDelivery {
    /// The consumer's pending count from the ack subject, without building names.
    var pendingFromMetadata: UInt64? {
        reply?.withSubjectBytes { NATSJetStreamMessage.Metadata.parse($0, names: false) }?.pending
    }
}

extension ConsumerHealthMonitor {
    /// Records a batch the iterator just took (newest last): the time, if it holds stream
    /// messages, and the pending count of the newest one. One parse per batch.
    func batchTaken(_ batch: borrowing [ConsumerDelivery]) {
        guard let newest = batch.last, newest.isStreamMessage || batch.first?.isStreamMessage == true else { return }
        messagesArrived()
        if newest.isStreamMessage, let pending = newest.pendingFromMetadata { pendingSeen(pending) }
    }

    /// Logs one stream message at trace (only called when ``tracesMessages``).
    func trace(_ delivery: borrowing ConsumerDelivery) {
        let sequence = delivery.reply?.withSubjectBytes { NATSJetStreamMessage.Metadata.parse($0, names: false) }
        logger.trace(
            "JetStream message received",
            metadata: [
                "subject": "\(delivery.message.subject)",
                "sequence": "\(sequence.map { "\($0.streamSequence)" } ?? "-")",
                "attempt": "\(sequence.map { "\($0.deliveryCount)" } ?? "-")",
            ])
    }
}

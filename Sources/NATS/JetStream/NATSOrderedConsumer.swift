import Synchronization

/// Replays a stream (or some of its subjects) in order, once, without acknowledgements.
///
/// It uses an ephemeral push consumer that the client recreates by itself when it detects a gap
/// (a skipped consumer sequence), when heartbeats stop, or after a reconnect, resuming right
/// after the last stream sequence it delivered. Nothing is delivered twice or out of order.
public struct NATSOrderedConsumer: AsyncSequence, Sendable {
    public typealias Element = NATSJetStreamMessage
    public typealias Failure = NATSError

    let jetStream: NATSJetStream
    let stream: String
    let filterSubjects: [String]
    let deliverPolicy: NATSConsumerConfiguration.DeliverPolicy
    let heartbeat: Duration
    let monitor: ConsumerHealthMonitor
    let control = OrderedConsumerControl()

    /// Ends the replay: an iterator waiting for the next message returns `nil` at once and deletes
    /// its server-side consumer then (an iterator not waiting does so on its next call; ``health``'s
    /// `consumer` names it for deleting it right away). Safe to call from any task, more than once.
    public func stop() {
        control.stop()
    }

    /// The replay's health now (shared by its iterators; iterate one at a time).
    /// ``NATSConsumerHealth/consumer`` is the current server-side consumer's name.
    public var health: NATSConsumerHealth {
        monitor.snapshot(
            connection: jetStream.connection, buffered: 0, requested: 0, waiting: false, finished: false)
    }

    /// The replay's recovery events from now on (see ``NATSConsumerRecoveryEvents``).
    public var recoveryEvents: NATSConsumerRecoveryEvents { monitor.events() }

    /// Creates the iterator; the consumer is created on the first `next()`.
    public func makeAsyncIterator() -> Iterator {
        Iterator(owner: self)
    }

    /// Iterates over the stream's messages in order.
    public struct Iterator: AsyncIteratorProtocol {
        let owner: NATSOrderedConsumer
        var subscription: SubscriptionHandle<ConsumerDelivery>?
        var consumerName: String?
        var batch: [ConsumerDelivery] = []
        var index = 0
        var lastStreamSequence: UInt64 = 0
        var expectedConsumerSequence: UInt64 = 1
        var lastActivity = ContinuousClock.now
        var generation = 0
        /// How many times the consumer was recreated (gaps, silence, reconnects).
        public private(set) var recreations = 0

        init(owner: NATSOrderedConsumer) {
            self.owner = owner
        }

        nonisolated(nonsending) private mutating func recreate() async throws(NATSError) {
            subscription?.stop()
            subscription = nil
            if let consumerName {
                try? await owner.jetStream.deleteConsumer(stream: owner.stream, name: consumerName)
            }
            var configuration = NATSConsumerConfiguration()
            configuration.filterSubjects = owner.filterSubjects
            configuration.deliverPolicy =
                lastStreamSequence == 0 ? owner.deliverPolicy : .byStartSequence(lastStreamSequence + 1)
            configuration.ackPolicy = .none
            configuration.maxDeliver = 1
            configuration.flowControl = true
            configuration.idleHeartbeat = owner.heartbeat
            configuration.inactiveThreshold = .seconds(300)
            configuration.memoryStorage = true
            configuration.replicas = 1
            configuration.maxAckPending = -1
            let inbox = owner.jetStream.connection.newInbox()
            configuration.deliverSubject = inbox
            let subscription = try await owner.jetStream.connection.subscribeConsumer(to: inbox)
            owner.control.attach(subscription)
            do {
                let info = try await owner.jetStream.ensureConsumer(stream: owner.stream, configuration)
                consumerName = info.name
                owner.monitor.renamed(info.name)
            } catch {
                subscription.stop()
                owner.monitor.failed(error)
                throw error
            }
            self.subscription = subscription
            batch.removeAll()
            index = 0
            expectedConsumerSequence = 1
            lastActivity = .now
            generation = owner.jetStream.connection.reconnectGeneration
        }

        /// The next message in stream order; `nil` when cancelled or the connection closed.
        /// Runs on the caller's executor (`nonisolated(nonsending)`): an actor iterating stays on it.
        nonisolated(nonsending) public mutating func next() async throws(NATSError) -> NATSJetStreamMessage? {
            if owner.control.isStopped {
                await finish()
                return nil
            }
            if subscription == nil { try await recreate() }
            while true {
                while index < batch.count {
                    let delivery = batch[index]
                    index += 1
                    lastActivity = .now
                    if let status = JetStreamStatus(delivery) {
                        status.answerFlowControl(on: owner.jetStream.connection)
                        owner.monitor.heartbeatArrived()
                        continue
                    }
                    if owner.monitor.tracesMessages { owner.monitor.trace(delivery) }
                    let delivered = NATSJetStreamMessage(delivery, connection: owner.jetStream.connection)
                    guard let metadata = delivered.metadata else { continue }
                    if metadata.consumerSequence != expectedConsumerSequence {
                        // A gap: start over right after the last message delivered.
                        recreations += 1
                        owner.monitor.recovering(
                            .consumerRecreated,
                            "gap: consumer sequence \(metadata.consumerSequence), expected \(expectedConsumerSequence); resuming after stream sequence \(lastStreamSequence)")
                        try await recreate()
                        break
                    }
                    expectedConsumerSequence += 1
                    lastStreamSequence = metadata.streamSequence
                    owner.monitor.pendingSeen(metadata.pending)
                    return delivered
                }
                if index >= batch.count {
                    batch.removeAll(keepingCapacity: true)
                    index = 0
                }
                if owner.jetStream.connection.reconnectGeneration != generation {
                    recreations += 1
                    owner.monitor.recovering(
                        .consumerRecreated,
                        "the connection reconnected; resuming after stream sequence \(lastStreamSequence)")
                    try await recreate()
                } else if ContinuousClock.now - lastActivity > owner.heartbeat * 3 {
                    recreations += 1
                    owner.monitor.recovering(
                        .heartbeatMissed,
                        "no message or heartbeat for over \(owner.heartbeat * 3); consumer recreated after stream sequence \(lastStreamSequence)")
                    try await recreate()
                }
                if owner.control.isStopped {
                    await finish()
                    return nil
                }
                guard let subscription else { return nil }
                let wait = Swift.min(owner.heartbeat, .seconds(1))
                switch try await subscription.buffer.takeBatch(into: &batch, timeout: wait) {
                case .took, .wokenUp:
                    if batch.first?.isStreamMessage == true || batch.last?.isStreamMessage == true {
                        owner.monitor.messagesArrived()
                    }
                    continue
                case .finished, .cancelled:
                    await finish()
                    return nil
                }
            }
        }

        /// Unsubscribes and deletes the server-side consumer (once).
        nonisolated(nonsending) private mutating func finish() async {
            owner.monitor.stopped()
            subscription?.stop()
            subscription = nil
            if let consumerName {
                self.consumerName = nil
                try? await owner.jetStream.deleteConsumer(stream: owner.stream, name: consumerName)
            }
        }
    }
}

/// Lets ``NATSOrderedConsumer/stop()`` reach the subscription its iterator currently reads. The
/// reference is weak: an iterator dropped without stopping still releases its subscription (which
/// unsubscribes), however long the consumer value lives.
final class OrderedConsumerControl: Sendable {
    private struct Attached {
        weak var subscription: SubscriptionHandle<ConsumerDelivery>?
    }

    private let state = Mutex<(stopped: Bool, attached: Attached)>((false, Attached()))

    var isStopped: Bool { state.withLock { $0.stopped } }

    /// Records the iterator's new subscription; stops it at once when the replay was stopped.
    func attach(_ subscription: SubscriptionHandle<ConsumerDelivery>) {
        let stopNow = state.withLock { state in
            state.attached.subscription = subscription
            return state.stopped
        }
        if stopNow { subscription.stop() }
    }

    func stop() {
        let subscription = state.withLock { state in
            state.stopped = true
            return state.attached.subscription
        }
        subscription?.stop()
    }
}
extension NATSJetStream {
    /// An ordered replay of a stream, or of the given subjects of it.
    public func orderedConsumer(
        stream: String,
        filterSubjects: [String] = [],
        deliverPolicy: NATSConsumerConfiguration.DeliverPolicy = .all,
        heartbeat: Duration = .seconds(5)
    ) throws(NATSError) -> NATSOrderedConsumer {
        try NATSJetStream.validateName(stream, what: "stream name")
        for subject in filterSubjects { try NATSValidation.validateSubject(subject, for: .subscribe) }
        if heartbeat <= .zero { throw NATSError(.invalidArgument, "ordered consumer heartbeat must be positive") }
        return NATSOrderedConsumer(
            jetStream: self, stream: stream, filterSubjects: filterSubjects, deliverPolicy: deliverPolicy, heartbeat: heartbeat,
            monitor: ConsumerHealthMonitor(stream: stream, consumer: "", heartbeat: heartbeat * 3 / 2, logger: connection.core.logger))
    }
}

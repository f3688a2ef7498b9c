import EventBus
import NATS
import Synchronization

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// One ``EventBus/subscribe(_:options:)`` on JetStream: a pull (or push) consumer for the stored
/// events and, through the same sequence, the requests sent to the pattern.
///
/// What it costs in cnats subscriptions (each has its own delivery thread, cnats's default, which
/// the client relies on to push back on a slow consumer without stalling the others):
/// - the consumer's subscription (the pull inbox, or the push deliver subject in the group's
///   deliver group): the stored events;
/// - one core subscription to `<requestSubjectPrefix>.<pattern>` in the group's queue group
///   (``NATSPullConsumer/addCoreSubscription(to:queueGroup:)``), so that one member per group
///   answers a request; it feeds the consumer's buffer, so requests and events come through one
///   sequence without a task in between.
///
/// The bus adds two per bus, not per subscription: the connection's inbox (publish acks,
/// requests, API calls) and the stream's max-deliveries advisories.
final class JetStreamSubscription: DeliverySource, Sendable {
    /// The consumer behind the subscription.
    enum Consumer: Sendable {
        case pull(NATSPullConsumer)
        case push(NATSPushConsumer)

        /// Stops, handing back what was received but never delivered to the application.
        func stop() {
            switch self {
            case .pull(let consumer): consumer.stopReturningUndelivered()
            case .push(let consumer): consumer.stopReturningUndelivered()
            }
        }
    }

    let bus: JetStreamEventBus
    let ready: JetStreamEventBus.Ready
    let pattern: SubjectPattern
    let options: SubscriptionOptions
    let consumer: Consumer
    let consumerName: String
    let durable: Bool
    /// This process's record of the consumer's deliveries (shared with other members here).
    let ledger: ConsumerLedger
    /// Metrics and spans of this subscription's deliveries; `nil` while the bus is not instrumented.
    let telemetry: ConsumerTelemetry?
    /// Deliveries made while instrumented, for sampling the consumer's buffer level every 64th.
    private let deliveriesCounted = Atomic<Int>(0)
    private let closed = Atomic<Bool>(false)
    private let stopped = Atomic<Bool>(false)
    /// Deliveries that were redeliveries (attempt 2 or later), for ``health``.
    private let redeliveries = Atomic<Int>(0)
    /// Chunks of deliveries handed to the application and perhaps not settled yet, for ``close()``
    /// to hand back. Spent chunks (every delivery settled or superseded: its ack wait expired and
    /// the event was delivered again) are pruned whenever the list doubles, so it holds about the
    /// consumer's `maxAckPending` deliveries at most: the server sends no more unsettled ones.
    private let outstanding = Mutex(OutstandingChunks())

    struct OutstandingChunks: ~Copyable {
        var chunks: [JetStreamDeliveryChunk] = []
        var pruneAt = 4

        mutating func add(_ chunk: JetStreamDeliveryChunk) {
            chunks.append(chunk)
            if chunks.count >= pruneAt {
                chunks.removeAll { $0.isSpent }
                pruneAt = max(4, chunks.count * 2)
            }
        }
    }

    private init(
        bus: JetStreamEventBus, ready: JetStreamEventBus.Ready, pattern: SubjectPattern, options: SubscriptionOptions,
        consumer: Consumer, consumerName: String, durable: Bool
    ) {
        self.bus = bus
        self.ready = ready
        self.pattern = pattern
        self.options = options
        self.consumer = consumer
        self.consumerName = consumerName
        self.durable = durable
        ledger = bus.ledger.acquire(consumerName)
        telemetry = bus.telemetry.consumer(group: options.group, pattern: pattern, consumer: consumerName)
    }

    deinit {
        bus.ledger.release(consumerName)
    }

    /// The durable consumer name of a group and pattern: readable, valid, and the same on every
    /// host (FNV-1a of the pattern keeps groups of different patterns apart).
    static func durableName(group: String, pattern: SubjectPattern) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in pattern.rawValue.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01B3
        }
        let safeGroup = String(
            String.UnicodeScalarView(group.unicodeScalars.map { scalar in
                switch scalar {
                case ".", "*", ">", "/", "\\", " ", "\t": "_"
                default: scalar
                }
            }))
        let hex = String(hash, radix: 16)
        return "\(safeGroup)-\(String(repeating: "0", count: 16 - hex.count))\(hex)"
    }

    static func make(
        bus: JetStreamEventBus, ready: JetStreamEventBus.Ready, pattern: SubjectPattern, options: SubscriptionOptions
    ) async throws -> JetStreamSubscription {
        let configuration = bus.configuration
        var consumerConfiguration = NATSConsumerConfiguration(durableName: options.group.map { durableName(group: $0, pattern: pattern) })
        consumerConfiguration.description = "EventBus subscription to '\(pattern.rawValue)'" + (options.group.map { " in group '\($0)'" } ?? "")
        consumerConfiguration.filterSubjects = [bus.natsSubject(for: pattern.rawValue)]
        consumerConfiguration.ackPolicy = .explicit
        consumerConfiguration.ackWait = options.ackWait
        consumerConfiguration.maxDeliver = options.maxDeliver ?? -1
        consumerConfiguration.maxAckPending = options.maxInFlight
        switch options.start {
        case .new: consumerConfiguration.deliverPolicy = .new
        case .all: consumerConfiguration.deliverPolicy = .all
        case .sequence(let sequence): consumerConfiguration.deliverPolicy = .byStartSequence(sequence)
        case .time(let date): consumerConfiguration.deliverPolicy = .byStartTime(date)
        }
        if options.group == nil {
            consumerConfiguration.inactiveThreshold = configuration.ephemeralInactiveThreshold
        }
        let push = options.group != nil && configuration.groupConsumer == .push
        if push, let durable = consumerConfiguration.durableName, let group = options.group {
            // Every member on every host derives the same deliver subject and group.
            consumerConfiguration.deliverSubject = "_EVENTBUS.DELIVER.\(configuration.streamName).\(durable)"
            consumerConfiguration.deliverGroup = durableName(group: group, pattern: pattern)
            consumerConfiguration.flowControl = true
            consumerConfiguration.idleHeartbeat = configuration.consumerIdleHeartbeat
        }
        let jetStream = ready.jetStream
        let info: NATSConsumerInfo
        do {
            if let durable = consumerConfiguration.durableName,
                let existing = try? await jetStream.consumerInfo(stream: configuration.streamName, name: durable)
            {
                // An existing group resumes where it is; its start position stays as created.
                consumerConfiguration.deliverPolicy = existing.configuration.deliverPolicy
            }
            info = try await jetStream.ensureConsumer(stream: configuration.streamName, consumerConfiguration)
        } catch {
            throw EventBusError(mapping: error, what: "subscribing to '\(pattern.rawValue)'", fallback: .backendUnavailable)
        }
        let batch = max(1, min(configuration.pullBatch, options.maxInFlight))
        let requestSubject = "\(configuration.requestSubjectPrefix).\(pattern.rawValue)"
        do {
            let consumer: Consumer
            if push {
                // Bind to the consumer as the server now holds it (its start position included).
                var bound = consumerConfiguration
                bound.deliverPolicy = info.configuration.deliverPolicy
                let pushConsumer = try await jetStream.pushConsumer(stream: configuration.streamName, configuration: bound)
                try await pushConsumer.addCoreSubscription(to: requestSubject, queueGroup: options.group)
                consumer = .push(pushConsumer)
            } else {
                let pullConsumer = try await jetStream.pullConsumer(
                    stream: configuration.streamName, name: info.name,
                    options: .init(batch: batch, expires: .seconds(30), idleHeartbeat: configuration.consumerIdleHeartbeat))
                try await pullConsumer.addCoreSubscription(to: requestSubject, queueGroup: options.group)
                consumer = .pull(pullConsumer)
            }
            let observer: @Sendable (NATSConsumerRecoveryEvent) -> Void = { [weak bus] event in
                bus?.recovered(
                    EventBusRecoveryEvent(
                        reason: event.reason.rawValue, detail: event.detail, pattern: pattern.rawValue, group: options.group,
                        consumer: event.consumer))
            }
            switch consumer {
            case .pull(let pull): pull.observeRecoveries(observer)
            case .push(let push): push.observeRecoveries(observer)
            }
            return JetStreamSubscription(
                bus: bus, ready: ready, pattern: pattern, options: options, consumer: consumer, consumerName: info.name,
                durable: options.group != nil)
        } catch {
            if options.group == nil { try? await jetStream.deleteConsumer(stream: configuration.streamName, name: info.name) }
            throw EventBusError(mapping: error, what: "subscribing to '\(pattern.rawValue)'", fallback: .backendUnavailable)
        }
    }

    /// The subscription's health: its consumer's, with the bus's own counts of deliveries the
    /// application holds unsettled and of redeliveries.
    var health: EventBusHealth.Subscription {
        let consumerHealth: NATSConsumerHealth
        switch consumer {
        case .pull(let pull): consumerHealth = pull.health
        case .push(let push): consumerHealth = push.health
        }
        let inFlight = outstanding.withLock { $0.chunks.reduce(0) { $0 + $1.outstandingCount } }
        let state: EventBusHealth.SubscriptionState =
            switch consumerHealth.state {
            case .running: .running
            case .recovering: .recovering
            case .stalled: .stalled
            case .stopped: .stopped
            }
        return EventBusHealth.Subscription(
            pattern: pattern.rawValue, group: options.group, consumer: consumerName,
            state: closed.load(ordering: .relaxed) ? .stopped : state, lastMessageAge: consumerHealth.lastMessageAge,
            lastHeartbeatAge: consumerHealth.lastHeartbeatAge, pending: consumerHealth.pending,
            buffered: consumerHealth.buffered, inFlight: inFlight, redeliveries: redeliveries.load(ordering: .relaxed),
            recoveries: consumerHealth.recoveries, lastError: consumerHealth.lastError.map { "\($0)" })
    }

    /// How `consume` runs its loop on the consumer's delivery thread (see the NATS module's
    /// `DeliveryThreadExecutor`).
    var deliveryThreadLoop: DeliveryThreadLoop {
        let executor: DeliveryThreadExecutor =
            switch consumer {
            case .pull(let pull): pull.deliveryThreadExecutor
            case .push(let push): push.deliveryThreadExecutor
            }
        return DeliveryThreadLoop(executor: executor, forwardedJobCount: { executor.forwardedJobCount })
    }

    func makeDeliveryIterator() -> any DeliveryIterator {
        switch consumer {
        case .pull(let pull): Iterator(subscription: self, pull: pull.makeAsyncIterator(), push: nil)
        case .push(let push): Iterator(subscription: self, pull: nil, push: push.makeAsyncIterator())
        }
    }

    /// The application stopped iterating (`break`, or a dropped iterator): no more deliveries to
    /// this member; what the consumer received and did not hand out goes back to the server at
    /// once (`-NAK`, including messages still on their way), so the group's other members get it
    /// now. Deliveries already handed out stay the application's to settle until ``close()``.
    func stopIterating() {
        guard !stopped.exchange(true, ordering: .acquiringAndReleasing) else { return }
        consumer.stop()
    }

    func close() async {
        await close(handingBackOutstanding: true)
    }

    /// Stops the consumer (handing back what it holds, as ``stopIterating()``) and, with
    /// `handingBackOutstanding`, also the deliveries the application holds unsettled: settling
    /// one of those afterwards throws `alreadyAcknowledged`. The bus's own close leaves those to
    /// their handlers. A subscriber without group also removes its ephemeral consumer.
    func close(handingBackOutstanding: Bool) async {
        guard !closed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        stopIterating()
        // Emptied either way: the list refers back to this subscription, and the application can
        // settle what it holds without it.
        let held = outstanding.withLock { outstanding in
            defer { outstanding.chunks = [] }
            return outstanding.chunks
        }
        if handingBackOutstanding {
            for chunk in held { chunk.handBackOutstanding() }
        }
        bus.forget(self)
        if !durable {
            try? await ready.jetStream.deleteConsumer(stream: bus.configuration.streamName, name: consumerName)
        }
    }

    struct Iterator: DeliveryIterator {
        let subscription: JetStreamSubscription
        // One of the two is set; mutated in place so that its buffers stay uniquely referenced.
        var pull: NATSPullConsumer.Iterator?
        var push: NATSPushConsumer.Iterator?
        /// The last stored event's NATS subject and its bus subject: consecutive events mostly
        /// share a subject, and the NATS module hands out the same string for it, so the check is
        /// a comparison of two references instead of a new string per event.
        var lastSubject: (nats: String, bus: String)?
        /// Where the next stored event's settlement goes (see ``JetStreamDeliveryChunk``).
        var chunk: JetStreamDeliveryChunk?
        /// Whether `pull` is the consumer (set once).
        let isPull: Bool

        init(subscription: JetStreamSubscription, pull: NATSPullConsumer.Iterator?, push: NATSPushConsumer.Iterator?) {
            self.subscription = subscription
            self.pull = pull
            self.push = push
            isPull = pull != nil
        }

        nonisolated(nonsending) mutating func next() async throws -> Delivery? {
            while true {
                var received: NATSJetStreamMessage?
                do {
                    // A flag, not `pull != nil`: comparing the optional copied the iterator.
                    if isPull {
                        received = try await pull!.next()
                    } else {
                        received = try await push?.next()
                    }
                } catch {
                    throw EventBusError(mapping: error, what: "receiving on '\(subscription.pattern.rawValue)'", fallback: .backendUnavailable)
                }
                // Moved out of the optional (`guard let` would copy it).
                guard let message = received.take() else { return nil }
                return subscription.delivery(for: consume message, subjects: &lastSubject, chunk: &chunk)
            }
        }
    }

    /// The delivery of `message`, which moves into its slot of `chunk` (no copy of its references
    /// from the thread that received it); a new chunk replaces a full one.
    func delivery(
        for message: consuming NATSJetStreamMessage, subjects: inout (nats: String, bus: String)?,
        chunk: inout JetStreamDeliveryChunk?
    ) -> Delivery {
        // The bus's configuration is read only where a prefix is needed: held across the calls
        // below, its two prefixes were retained and released on every event.
        guard let position = message.deliveryPosition else {
            // A request: core NATS, never stored.
            let subject = bus.busSubject(fromNATS: message.subject, prefix: bus.configuration.requestSubjectPrefix)
            let event = CloudEventsNATSBinding.event(subject: subject, headers: message.headers, payload: message.payload.bytes)
            return Delivery(
                event: event, deliveryCount: 1, sequence: 0, subject: subject, isRequest: true,
                acknowledger: RequestAcknowledger(
                    JetStreamRequestReplier(connection: ready.connection, replyTo: message.replyTo, requestID: event.id)))
        }
        let natsSubject = message.subject
        let subject: String
        if let last = subjects, last.nats == natsSubject {
            subject = last.bus
        } else {
            subject = bus.busSubject(fromNATS: natsSubject, prefix: bus.configuration.subjectPrefix)
            subjects = (natsSubject, subject)
        }
        let event = bus.telemetry.checkedReceived(
            CloudEventsNATSBinding.event(subject: subject, headers: message.headers, payload: message.payload.bytes),
            sequence: position.streamSequence)
        ledger.delivered(sequence: position.streamSequence, attempt: position.deliveryCount)
        if position.deliveryCount > 1 { redeliveries.add(1, ordering: .relaxed) }
        let current: JetStreamDeliveryChunk
        if let chunk, !chunk.isFull {
            current = chunk
        } else {
            current = JetStreamDeliveryChunk(subscription: self)
            chunk = current
            outstanding.withLock { $0.add(current) }
        }
        let acknowledger = current.append(
            .init(
                message: consume message, event: event, streamSequence: position.streamSequence,
                deliveryCount: position.deliveryCount))
        let delivery = Delivery(
            event: event, deliveryCount: Int(position.deliveryCount), sequence: position.streamSequence, subject: subject,
            acknowledger: acknowledger, telemetry: telemetry)
        if let telemetry {
            telemetry.delivered(delivery, pending: position.pending)
            // The consumer's buffer, sampled: reading it takes the lock its delivery thread fills under.
            if deliveriesCounted.add(1, ordering: .relaxed).newValue % 64 == 0 {
                let buffered =
                    switch consumer {
                    case .pull(let pull): pull.bufferedCount
                    case .push(let push): push.bufferedCount
                    }
                telemetry.bufferedLevel(buffered)
            }
        }
        return delivery
    }
}

/// How the JetStream bus answers a request: a core NATS publish to its reply subject. Requests travel on core
/// NATS and are never stored, so settling one tells the server nothing; ``RequestAcknowledger`` (shared with
/// the in-memory bus) does that bookkeeping.
struct JetStreamRequestReplier: RequestReplier {
    let connection: NATSConnection
    let replyTo: String?
    let requestID: String

    func send(_ reply: Event) async throws {
        guard let replyTo else { throw EventBusError(.notARequest, "request '\(requestID)' has no reply subject") }
        do {
            // Written at once: the requester is waiting for it.
            try connection.publishNow(subject: replyTo, payload: reply.data, headers: CloudEventsNATSBinding.headers(for: reply))
        } catch {
            throw EventBusError(mapping: error, what: "replying to request '\(requestID)'", fallback: .backendUnavailable)
        }
    }
}

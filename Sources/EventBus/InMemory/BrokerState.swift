#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Identifies one client (one `InMemoryEventBus` value) of a broker.
typealias ClientID = UInt64

/// The current time, read from the clock on first use only: a clock read is ~30 ns, and an ack needs none.
struct LazyNow {
    let clock: BrokerClock
    private var read: BrokerInstant?

    init(clock: BrokerClock) {
        self.clock = clock
    }

    var instant: BrokerInstant {
        mutating get {
            if let read { return read }
            let now = clock.now
            read = now
            return now
        }
    }
}

/// What the broker must do after releasing its lock: resume parked iterators, fail replies, log, and let go
/// of events the log discarded (so that freeing them happens outside the lock).
///
/// Built and destroyed on every transition, so the common case is kept inline and allocation-free: at most
/// one resume and one discarded event; anything more (and the rare failures and warnings) goes to `more`.
struct BrokerEffects {
    struct More {
        var resumes: [(UnsafeContinuation<WaitOutcome, Never>, WaitOutcome)] = []
        var failedReplies: [ReplyBox] = []
        var warnings: [String] = []
        var discarded: [Event] = []
    }

    var firstResume: (UnsafeContinuation<WaitOutcome, Never>, WaitOutcome)?
    var firstDiscarded: Event?
    var more: More?

    mutating func resume(_ waiter: Waiter?, with outcome: WaitOutcome = .retry) {
        guard let waiter else { return }
        if firstResume == nil {
            firstResume = (waiter.continuation, outcome)
        } else {
            ensureMore()
            more!.resumes.append((waiter.continuation, outcome))
        }
    }

    mutating func warn(_ warning: String) {
        ensureMore()
        more!.warnings.append(warning)
    }

    mutating func fail(_ replies: some Sequence<ReplyBox>) {
        ensureMore()
        more!.failedReplies.append(contentsOf: replies)
    }

    /// Keeps a discarded event alive until the lock is released.
    mutating func release(_ event: consuming Event) {
        if firstDiscarded == nil {
            firstDiscarded = event
        } else {
            ensureMore()
            more!.discarded.append(event)
        }
    }

    private mutating func ensureMore() {
        if more == nil { more = More() }
    }
}

/// Everything the in-memory broker knows, as one plain state machine. Each mutating method is one event;
/// it changes the state and records in `BrokerEffects` what to do once the lock is released.
struct BrokerState {
    struct Client {
        var isOpen = true
        var subscribers: Set<SubscriberID> = []
        var replies: [UInt64: ReplyBox] = [:]
    }

    struct Subscriber {
        var consumer: ConsumerID
        var client: ClientID
        /// What this member of a group pulled and may not have settled; `nil` without a group.
        var held: HeldDeliveries?
    }

    /// Members of a group with the same pattern share one consumer.
    struct GroupKey: Hashable {
        var group: String
        var pattern: String
    }

    /// What a subscriber's pull found. The deliveries themselves go into the caller's array, whose capacity
    /// the iterator keeps from batch to batch.
    enum PullOutcome {
        case delivered
        case wait(until: BrokerInstant?)
        case ended
    }

    let streamName: String
    let batchLimit: Int
    let requestQueueLimit: Int
    var log: RetainedLog
    var duplicates: DuplicateWindow
    private var index = SubjectIndex<ConsumerState>()
    private(set) var consumers: [ConsumerID: ConsumerState] = [:]
    private var groups: [GroupKey: ConsumerID] = [:]
    private var subscribers: [SubscriberID: Subscriber] = [:]
    private var clients: [ClientID: Client] = [:]
    /// Whether client `id` is open, at index `id - 1` (ids count up from 1): the check every publish makes,
    /// without hashing or copying the client's record.
    private var clientIsOpen: [Bool] = []
    private var nextConsumerID: ConsumerID = 1
    private var nextSubscriberID: SubscriberID = 1
    private var nextClientID: ClientID = 1
    private var nextReplyToken: UInt64 = 1
    private(set) var duplicatesSuppressed = 0
    private(set) var discardedBeforeDelivery = 0

    init(configuration: InMemoryEventBus.Configuration) {
        streamName = configuration.streamName
        batchLimit = configuration.batchLimit
        requestQueueLimit = configuration.requestQueueLimit
        log = RetainedLog(
            limits: .init(
                maxEvents: configuration.maxEvents, maxBytes: configuration.maxBytes, maxAge: configuration.maxAge
            )
        )
        duplicates = DuplicateWindow(
            window: configuration.duplicateWindow, capacity: configuration.duplicateWindowCapacity
        )
    }

    // MARK: Clients

    mutating func openClient() -> ClientID {
        let id = nextClientID
        nextClientID += 1
        clients[id] = Client()
        clientIsOpen.append(true)
        return id
    }

    func isOpen(_ client: ClientID) -> Bool {
        let index = Int(truncatingIfNeeded: client) &- 1
        return index >= 0 && index < clientIsOpen.count && clientIsOpen[index]
    }

    private func requireOpen(_ client: ClientID) throws(EventBusError) {
        guard isOpen(client) else {
            throw EventBusError(.closed, "the in-memory event bus client was closed")
        }
    }

    /// A client's health: running subscriptions while it is open (an in-process bus has nothing
    /// to recover from), the bus closed otherwise.
    func health(of client: ClientID) -> EventBusHealth {
        guard let record = clients[client], record.isOpen else {
            return EventBusHealth(backend: "memory", connection: .closed)
        }
        let entries = record.subscribers.sorted().compactMap { id -> EventBusHealth.Subscription? in
            guard let subscriber = subscribers[id], let consumer = consumers[subscriber.consumer] else { return nil }
            return EventBusHealth.Subscription(
                pattern: consumer.pattern.rawValue, group: consumer.group, state: .running,
                pending: UInt64(consumer.pendingCount))
        }
        return EventBusHealth(backend: "memory", connection: .inProcess, subscriptions: entries)
    }

    mutating func closeClient(_ client: ClientID, now: BrokerInstant, effects: inout BrokerEffects) {
        guard var record = clients[client], record.isOpen else { return }
        record.isOpen = false
        clients[client] = record
        clientIsOpen[Int(client) - 1] = false
        for subscriber in record.subscribers {
            // Deliveries its code still works on are left to it (a shutdown lets handlers finish and ack);
            // what its iterators pulled and did not return comes back as each iterator ends.
            closeSubscriber(subscriber, now: now, effects: &effects)
        }
        effects.fail(record.replies.values)
        clients[client]?.replies = [:]
    }

    // MARK: Publishing

    mutating func publish(
        _ event: Event,
        from client: ClientID,
        now: BrokerInstant,
        effects: inout BrokerEffects
    ) throws(EventBusError) -> PublishReceipt {
        try requireOpen(client)
        if let earlier = duplicates.recordIfNew(event.id, sequence: log.nextSequence, now: now) {
            duplicatesSuppressed += 1
            return PublishReceipt(sequence: earlier, duplicate: true, stream: streamName)
        }
        let sequence = store(event, now: now, effects: &effects)
        return PublishReceipt(sequence: sequence, duplicate: false, stream: streamName)
    }

    /// Appends to the log, applies its limits and hands the sequence to every matching consumer.
    mutating func store(_ event: Event, now: BrokerInstant, effects: inout BrokerEffects) -> UInt64 {
        let sequence = log.append(event, at: now)
        if log.needsTrim, log.trim(now: now, releasingInto: &effects) > 0 {
            dropDiscarded(now: now, effects: &effects)
        }
        for consumer in index.match(event.subject) {
            consumer.enqueue(sequence)
            if consumer.hasWaiters {
                effects.resume(consumer.waiterToWake(now: now))
            }
        }
        return sequence
    }

    /// After the log discarded its oldest events: consumers forget the ones they never delivered, and a
    /// consumer that lost events is reported (its subscribers are slower than the log's limits allow).
    private mutating func dropDiscarded(now: BrokerInstant, effects: inout BrokerEffects) {
        let firstRetained = log.firstSequence
        for consumer in consumers.values {
            let dropped = consumer.dropDiscarded(before: firstRetained)
            guard dropped > 0 else { continue }
            discardedBeforeDelivery += dropped
            if consumer.shouldReportDiscard(now: now) {
                effects.warn(
                    "in-memory event bus discarded events before delivering them to "
                        + "\(consumer.group.map { "group '\($0)'" } ?? "a subscriber") on '\(consumer.pattern)': "
                        + "\(consumer.discardedUndelivered) so far; its subscribers are slower than the retained "
                        + "log's limits (maxEvents \(log.limits.maxEvents), maxBytes \(log.limits.maxBytes))"
                )
            }
        }
    }

    /// Publishes the dead-letter copy of a given-up event. Not deduplicated: it keeps the original id.
    private mutating func deadLetter(_ work: DeadLetterWork, now: BrokerInstant, effects: inout BrokerEffects) {
        guard let consumer = consumers[work.consumer] else { return }
        guard let original = log.entry(work.sequence) else {
            effects.warn(
                "in-memory event bus could not dead-letter sequence \(work.sequence) on '\(consumer.pattern)': "
                    + "the retained log already discarded it (last error: \(work.error))"
            )
            return
        }
        let copy = DeadLetter.event(
            from: original.event,
            deadLetterSubject: consumer.options.deadLetterSubject(forOriginalSubject: original.event.subject),
            attempts: work.attempts, error: work.error, sequence: work.sequence, group: consumer.group
        )
        _ = store(copy, now: now, effects: &effects)
        consumer.telemetry?.deadLettered()
    }

    // MARK: Subscribing

    mutating func subscribe(
        _ pattern: SubjectPattern,
        options: SubscriptionOptions,
        client: ClientID,
        now: BrokerInstant,
        wallClockNow: Date,
        telemetry: EventBusTelemetry
    ) throws(EventBusError) -> (SubscriberID, ConsumerID, HeldDeliveries?, ConsumerTelemetry?) {
        try requireOpen(client)
        let consumerID: ConsumerID
        if let group = options.group, let existing = groups[GroupKey(group: group, pattern: pattern.rawValue)] {
            try consumers[existing]!.options.requireSameConsumerSettings(as: options, group: group, pattern: pattern)
            consumerID = existing
        } else {
            consumerID = nextConsumerID
            nextConsumerID += 1
            var startInstant: BrokerInstant?
            if case .time(let date) = options.start {
                startInstant = now - .milliseconds(Int64((wallClockNow.timeIntervalSince(date) * 1000).rounded()))
            }
            let ready = log.sequences(matching: pattern, from: options.start, startInstant: startInstant)
            let consumer = ConsumerState(
                id: consumerID, pattern: pattern, options: options, ready: ready,
                telemetry: telemetry.consumer(group: options.group, pattern: pattern))
            consumers[consumerID] = consumer
            index.insert(pattern, consumer)
            if let group = options.group {
                groups[GroupKey(group: group, pattern: pattern.rawValue)] = consumerID
            }
        }
        let subscriber = nextSubscriberID
        nextSubscriberID += 1
        let held = options.group == nil ? nil : HeldDeliveries()
        subscribers[subscriber] = Subscriber(consumer: consumerID, client: client, held: held)
        clients[client]!.subscribers.insert(subscriber)
        consumers[consumerID]!.addMember(subscriber)
        return (subscriber, consumerID, held, consumers[consumerID]!.telemetry)
    }

    func isSubscribed(_ subscriber: SubscriberID) -> Bool {
        subscribers[subscriber] != nil
    }

    mutating func closeSubscriber(_ subscriber: SubscriberID, now: BrokerInstant, effects: inout BrokerEffects) {
        guard let record = subscribers.removeValue(forKey: subscriber) else { return }
        clients[record.client]?.subscribers.remove(subscriber)
        let id = record.consumer
        guard let consumer = consumers[id] else { return }
        for waiter in consumer.removeMember(subscriber) {
            effects.resume(waiter, with: .ended)
        }
        if consumer.isDurable {
            // The group keeps its place; another member takes over what this one left.
            effects.resume(consumer.waiterToWake(now: now))
        } else {
            removeConsumer(id, effects: &effects)
        }
    }

    private mutating func removeConsumer(_ id: ConsumerID, effects: inout BrokerEffects) {
        guard let consumer = consumers.removeValue(forKey: id) else { return }
        consumer.close()
        index.remove(consumer.pattern, consumer)
        for waiter in consumer.removeAllWaiters() {
            effects.resume(waiter, with: .ended)
        }
    }

    // MARK: Delivering

    mutating func pull(
        _ subscriber: SubscriberID,
        now: BrokerInstant,
        broker: InMemoryBroker,
        into deliveries: inout [Delivery],
        effects: inout BrokerEffects
    ) -> PullOutcome {
        guard let record = subscribers[subscriber], let consumer = consumers[record.consumer] else { return .ended }
        if log.needsTrim, log.trim(now: now, releasingInto: &effects) > 0 {
            dropDiscarded(now: now, effects: &effects)
        }
        var deadLetters: [DeadLetterWork] = []
        consumer.expireDeadlines(now: now, into: &deadLetters)
        consumer.takeBatch(limit: batchLimit, now: now, log: log, broker: broker, holder: record.held, into: &deliveries)
        if let telemetry = consumer.telemetry, !deliveries.isEmpty {
            var stored = 0
            var redelivered = 0
            for delivery in deliveries where !delivery.isRequest {
                stored += 1
                if delivery.deliveryCount > 1 { redelivered += 1 }
                if telemetry.bus.traceLogging { telemetry.logDelivery(delivery) }
            }
            telemetry.delivered(count: stored, redelivered: redelivered, pending: consumer.undeliveredCount)
        }
        for work in deadLetters {
            deadLetter(work, now: now, effects: &effects)
        }
        if deliveries.isEmpty {
            return .wait(until: consumer.nextDeadline())
        }
        // Work left over goes to another parked member rather than waiting for this one to come back.
        if consumer.hasWaiters {
            effects.resume(consumer.waiterToWake(now: now))
        }
        return .delivered
    }

    /// Parks an iterator, unless there is something for it already (then returns what it should do).
    mutating func park(
        _ subscriber: SubscriberID,
        token: UInt64,
        timer: BrokerInstant?,
        continuation: UnsafeContinuation<WaitOutcome, Never>,
        isCancelled: Bool,
        now: BrokerInstant
    ) -> WaitOutcome? {
        guard let record = subscribers[subscriber], let consumer = consumers[record.consumer] else { return .ended }
        if isCancelled { return .cancelled }
        // The timer has run already (its wake found no one parked): nothing else would wake this one.
        if let timer, timer <= now { return .retry }
        if consumer.hasWork(now: now) { return .retry }
        if let next = consumer.nextDeadline(), timer.map({ next < $0 }) ?? true {
            // A deadline appeared since the pull: pull again and park with a timer for it.
            return .retry
        }
        if !consumer.park(Waiter(subscriber: subscriber, token: token, deadline: timer, continuation: continuation)) {
            // Acks arrived meanwhile and may have made room: pull again.
            return .retry
        }
        return nil
    }

    /// Removes the parked iterator `token` of `subscriber`, if it is still parked.
    mutating func unpark(_ subscriber: SubscriberID, token: UInt64) -> Waiter? {
        guard let record = subscribers[subscriber] else { return nil }
        return consumers[record.consumer]?.unpark(token: token)
    }

    /// Takes back deliveries an iterator pulled but never returned to its caller.
    mutating func giveBack(
        to consumer: ConsumerID,
        events: [(sequence: UInt64, attempt: UInt32)],
        requests: [QueuedRequest],
        now: BrokerInstant,
        effects: inout BrokerEffects
    ) {
        guard let record = consumers[consumer] else { return }
        record.giveBack(events)
        record.giveBack(requests: requests)
        effects.resume(record.waiterToWake(now: now))
    }

    /// Takes back at once what a closing member of a group pulled and did not settle (see
    /// ``ConsumerCore/handBack(_:)``), and wakes another member for it.
    mutating func handBack(
        _ held: HeldDeliveries,
        to consumer: ConsumerID,
        now: BrokerInstant,
        effects: inout BrokerEffects
    ) {
        guard let record = consumers[consumer] else {
            held.entries.removeAll()
            return
        }
        record.handBack(held)
        effects.resume(record.waiterToWake(now: now))
    }

    // MARK: Settling

    mutating func settle(
        _ settlement: ConsumerCore.Settlement,
        consumer id: ConsumerID,
        sequence: UInt64,
        attempt: UInt32,
        clock: BrokerClock,
        effects: inout BrokerEffects
    ) throws(EventBusError) {
        guard let consumer = consumers[id] else {
            throw EventBusError(
                .closed,
                "the subscription that received sequence \(sequence) was closed; it will not be delivered there again"
            )
        }
        // An ack needs no time unless it makes room for a parked member; the others set deadlines.
        var now = LazyNow(clock: clock)
        if let work = try consumer.settle(settlement, sequence: sequence, attempt: attempt, now: &now) {
            deadLetter(work, now: now.instant, effects: &effects)
        }
        if consumer.hasWaiters {
            effects.resume(consumer.waiterToWake(now: now.instant))
        }
    }

    // MARK: Requests

    /// Queues a request with every consumer of its subject that has a member; returns the token under which
    /// the client tracks the reply.
    mutating func request(
        _ event: Event,
        replies: ReplyBox,
        from client: ClientID,
        now: BrokerInstant,
        effects: inout BrokerEffects
    ) throws(EventBusError) -> UInt64 {
        try requireOpen(client)
        var queued = false
        var full = false
        for consumer in index.match(event.subject) where !consumer.members.isEmpty {
            if consumer.enqueue(QueuedRequest(event: event, replies: replies), limit: requestQueueLimit) {
                queued = true
                effects.resume(consumer.waiterToWake(now: now))
            } else {
                full = true
            }
        }
        guard queued else {
            if full {
                throw EventBusError(
                    .publishFailed,
                    "request on '\(event.subject)': every responder already has \(requestQueueLimit) requests queued"
                )
            }
            throw EventBusError(.noResponders, "request on '\(event.subject)': no subscriber for that subject")
        }
        let token = nextReplyToken
        nextReplyToken += 1
        clients[client]!.replies[token] = replies
        return token
    }

    mutating func finishRequest(_ token: UInt64, client: ClientID) {
        clients[client]?.replies[token] = nil
    }
}

extension SubscriptionOptions {
    /// The settings of the consumer only: what `consume` alone reads (handler concurrency, ack
    /// extension, cancellation policy) at their defaults, since each member may run its own.
    var consumerSettings: SubscriptionOptions {
        var settings = self
        settings.handlerConcurrency = 1
        settings.ackExtension = .default
        settings.onCancel = .nak(delay: .zero)
        return settings
    }

    /// Members of one group share a consumer, so they must agree on its settings (all but `start`).
    func requireSameConsumerSettings(
        as other: SubscriptionOptions,
        group: String,
        pattern: SubjectPattern
    ) throws(EventBusError) {
        var mine = self.consumerSettings
        var theirs = other.consumerSettings
        mine.start = .new
        theirs.start = .new
        guard mine == theirs else {
            throw EventBusError(
                .invalidOption,
                "group '\(group)' on '\(pattern)' already exists with different settings "
                    + "(maxInFlight \(maxInFlight), ackWait \(ackWait), maxDeliver \(maxDeliver.map(String.init) ?? "unlimited"), "
                    + "backoff \(backoff), deadLetterSubject \(deadLetterSubject ?? "default")); members must pass the same"
            )
        }
    }
}

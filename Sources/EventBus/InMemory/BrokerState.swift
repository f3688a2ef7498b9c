#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Identifies one client (one `InMemoryEventBus` value) of a broker.
typealias ClientID = UInt64

/// What the broker must do after releasing its lock: resume parked iterators, fail replies, log.
struct BrokerEffects {
    var resumes: [(UnsafeContinuation<WaitOutcome, Never>, WaitOutcome)] = []
    var failedReplies: [ReplyBox] = []
    var warnings: [String] = []

    mutating func resume(_ waiter: Waiter?, with outcome: WaitOutcome = .retry) {
        if let waiter {
            resumes.append((waiter.continuation, outcome))
        }
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
    }

    /// Members of a group with the same pattern share one consumer.
    struct GroupKey: Hashable {
        var group: String
        var pattern: String
    }

    /// What a subscriber's pull found.
    enum PullOutcome {
        case deliveries([Delivery])
        case wait(until: ContinuousClock.Instant?)
        case ended
    }

    let streamName: String
    let batchLimit: Int
    let requestQueueLimit: Int
    var log: RetainedLog
    var duplicates: DuplicateWindow
    private var index = SubjectIndex<ConsumerID>()
    private(set) var consumers: [ConsumerID: ConsumerState] = [:]
    private var groups: [GroupKey: ConsumerID] = [:]
    private var subscribers: [SubscriberID: Subscriber] = [:]
    private var clients: [ClientID: Client] = [:]
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
        return id
    }

    func isOpen(_ client: ClientID) -> Bool {
        clients[client]?.isOpen ?? false
    }

    private func requireOpen(_ client: ClientID) throws(EventBusError) {
        guard isOpen(client) else {
            throw EventBusError(.closed, "the in-memory event bus client was closed")
        }
    }

    mutating func closeClient(_ client: ClientID, now: ContinuousClock.Instant, effects: inout BrokerEffects) {
        guard var record = clients[client], record.isOpen else { return }
        record.isOpen = false
        clients[client] = record
        for subscriber in record.subscribers {
            closeSubscriber(subscriber, now: now, effects: &effects)
        }
        effects.failedReplies.append(contentsOf: record.replies.values)
        clients[client]?.replies = [:]
    }

    // MARK: Publishing

    mutating func publish(
        _ event: Event,
        from client: ClientID,
        now: ContinuousClock.Instant,
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
    private mutating func store(_ event: Event, now: ContinuousClock.Instant, effects: inout BrokerEffects) -> UInt64 {
        let sequence = log.append(event, at: now)
        if log.trim(now: now) > 0 {
            dropDiscarded(now: now, effects: &effects)
        }
        for id in index.match(event.subject) {
            consumers[id]!.enqueue(sequence)
            effects.resume(consumers[id]!.waiterToWake(now: now))
        }
        return sequence
    }

    /// After the log discarded its oldest events: consumers forget the ones they never delivered, and a
    /// consumer that lost events is reported (its subscribers are slower than the log's limits allow).
    private mutating func dropDiscarded(now: ContinuousClock.Instant, effects: inout BrokerEffects) {
        let firstRetained = log.firstSequence
        for id in consumers.keys {
            let dropped = consumers[id]!.dropDiscarded(before: firstRetained)
            guard dropped > 0 else { continue }
            discardedBeforeDelivery += dropped
            if consumers[id]!.shouldReportDiscard(now: now) {
                let consumer = consumers[id]!
                effects.warnings.append(
                    "in-memory event bus discarded events before delivering them to "
                        + "\(consumer.group.map { "group '\($0)'" } ?? "a subscriber") on '\(consumer.pattern)': "
                        + "\(consumer.discardedUndelivered) so far; its subscribers are slower than the retained "
                        + "log's limits (maxEvents \(log.limits.maxEvents), maxBytes \(log.limits.maxBytes))"
                )
            }
        }
    }

    /// Publishes the dead-letter copy of a given-up event. Not deduplicated: it keeps the original id.
    private mutating func deadLetter(_ work: DeadLetterWork, now: ContinuousClock.Instant, effects: inout BrokerEffects) {
        guard let consumer = consumers[work.consumer] else { return }
        guard let original = log.entry(work.sequence) else {
            effects.warnings.append(
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
    }

    // MARK: Subscribing

    mutating func subscribe(
        _ pattern: SubjectPattern,
        options: SubscriptionOptions,
        client: ClientID,
        now: ContinuousClock.Instant,
        wallClockNow: Date
    ) throws(EventBusError) -> (SubscriberID, ConsumerID) {
        try requireOpen(client)
        let consumerID: ConsumerID
        if let group = options.group, let existing = groups[GroupKey(group: group, pattern: pattern.rawValue)] {
            try consumers[existing]!.options.requireSameConsumerSettings(as: options, group: group, pattern: pattern)
            consumerID = existing
        } else {
            consumerID = nextConsumerID
            nextConsumerID += 1
            var startInstant: ContinuousClock.Instant?
            if case .time(let date) = options.start {
                startInstant = now - .milliseconds(Int64((wallClockNow.timeIntervalSince(date) * 1000).rounded()))
            }
            let ready = log.sequences(matching: pattern, from: options.start, startInstant: startInstant)
            consumers[consumerID] = ConsumerState(id: consumerID, pattern: pattern, options: options, ready: ready)
            index.insert(pattern, consumerID)
            if let group = options.group {
                groups[GroupKey(group: group, pattern: pattern.rawValue)] = consumerID
            }
        }
        let subscriber = nextSubscriberID
        nextSubscriberID += 1
        subscribers[subscriber] = Subscriber(consumer: consumerID, client: client)
        clients[client]!.subscribers.insert(subscriber)
        consumers[consumerID]!.addMember(subscriber)
        return (subscriber, consumerID)
    }

    func isSubscribed(_ subscriber: SubscriberID) -> Bool {
        subscribers[subscriber] != nil
    }

    mutating func closeSubscriber(_ subscriber: SubscriberID, now: ContinuousClock.Instant, effects: inout BrokerEffects) {
        guard let record = subscribers.removeValue(forKey: subscriber) else { return }
        clients[record.client]?.subscribers.remove(subscriber)
        let id = record.consumer
        guard consumers.index(forKey: id) != nil else { return }
        for waiter in consumers[id]!.removeMember(subscriber) {
            effects.resume(waiter, with: .ended)
        }
        if consumers[id]!.isDurable {
            // The group keeps its place; another member takes over what this one left.
            effects.resume(consumers[id]!.waiterToWake(now: now))
        } else {
            removeConsumer(id, effects: &effects)
        }
    }

    private mutating func removeConsumer(_ id: ConsumerID, effects: inout BrokerEffects) {
        guard let consumer = consumers.removeValue(forKey: id) else { return }
        index.remove(consumer.pattern, id)
        for waiter in consumer.removeAllWaiters() {
            effects.resume(waiter, with: .ended)
        }
    }

    // MARK: Delivering

    mutating func pull(
        _ subscriber: SubscriberID,
        now: ContinuousClock.Instant,
        broker: InMemoryBroker,
        effects: inout BrokerEffects
    ) -> PullOutcome {
        guard let record = subscribers[subscriber], consumers.index(forKey: record.consumer) != nil else { return .ended }
        let id = record.consumer
        if log.trim(now: now) > 0 {
            dropDiscarded(now: now, effects: &effects)
        }
        var deadLetters: [DeadLetterWork] = []
        consumers[id]!.expireDeadlines(now: now, into: &deadLetters)
        var deliveries: [Delivery] = []
        consumers[id]!.takeBatch(limit: batchLimit, now: now, log: log, broker: broker, into: &deliveries)
        for work in deadLetters {
            deadLetter(work, now: now, effects: &effects)
        }
        if deliveries.isEmpty {
            return .wait(until: consumers[id]!.nextDeadline())
        }
        // Work left over goes to another parked member rather than waiting for this one to come back.
        effects.resume(consumers[id]!.waiterToWake(now: now))
        return .deliveries(deliveries)
    }

    /// Parks an iterator, unless there is something for it already (then returns what it should do).
    mutating func park(
        _ subscriber: SubscriberID,
        token: UInt64,
        timer: ContinuousClock.Instant?,
        continuation: UnsafeContinuation<WaitOutcome, Never>,
        isCancelled: Bool,
        now: ContinuousClock.Instant
    ) -> WaitOutcome? {
        guard let record = subscribers[subscriber], consumers.index(forKey: record.consumer) != nil else { return .ended }
        if isCancelled { return .cancelled }
        let id = record.consumer
        if consumers[id]!.hasWork(now: now) { return .retry }
        if let next = consumers[id]!.nextDeadline(), timer.map({ next < $0 }) ?? true {
            // A deadline appeared since the pull: pull again and park with a timer for it.
            return .retry
        }
        consumers[id]!.park(Waiter(subscriber: subscriber, token: token, deadline: timer, continuation: continuation))
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
        now: ContinuousClock.Instant,
        effects: inout BrokerEffects
    ) {
        guard consumers.index(forKey: consumer) != nil else { return }
        consumers[consumer]!.giveBack(events)
        consumers[consumer]!.giveBack(requests: requests)
        effects.resume(consumers[consumer]!.waiterToWake(now: now))
    }

    // MARK: Settling

    mutating func settle(
        _ settlement: ConsumerState.Settlement,
        consumer id: ConsumerID,
        sequence: UInt64,
        attempt: UInt32,
        now: ContinuousClock.Instant,
        effects: inout BrokerEffects
    ) throws(EventBusError) {
        guard consumers.index(forKey: id) != nil else {
            throw EventBusError(
                .closed,
                "the subscription that received sequence \(sequence) was closed; it will not be delivered there again"
            )
        }
        if let work = try consumers[id]!.settle(settlement, sequence: sequence, attempt: attempt, now: now) {
            deadLetter(work, now: now, effects: &effects)
        }
        effects.resume(consumers[id]?.waiterToWake(now: now))
    }

    // MARK: Requests

    /// Queues a request with every consumer of its subject that has a member; returns the token under which
    /// the client tracks the reply.
    mutating func request(
        _ event: Event,
        replies: ReplyBox,
        from client: ClientID,
        now: ContinuousClock.Instant,
        effects: inout BrokerEffects
    ) throws(EventBusError) -> UInt64 {
        try requireOpen(client)
        var queued = false
        var full = false
        for id in index.match(event.subject) where !consumers[id]!.members.isEmpty {
            if consumers[id]!.enqueue(QueuedRequest(event: event, replies: replies), limit: requestQueueLimit) {
                queued = true
                effects.resume(consumers[id]!.waiterToWake(now: now))
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
    /// Members of one group share a consumer, so they must agree on its settings (all but `start`).
    func requireSameConsumerSettings(
        as other: SubscriptionOptions,
        group: String,
        pattern: SubjectPattern
    ) throws(EventBusError) {
        var mine = self
        var theirs = other
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

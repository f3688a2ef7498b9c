import DequeModule
import HeapModule

/// Identifies a consumer inside one broker. 32 bits so an acknowledger packs it with the attempt number.
typealias ConsumerID = UInt32
/// Identifies a subscriber (one `subscribe` call) inside one broker.
typealias SubscriberID = UInt64

/// What wakes a parked iterator.
enum WaitOutcome: Sendable {
    /// Something may be deliverable: pull again.
    case retry
    /// The subscription ended.
    case ended
    /// The iterating task was cancelled.
    case cancelled
}

/// An iterator parked until the consumer has work for it.
struct Waiter {
    var subscriber: SubscriberID
    var token: UInt64
    var deadline: BrokerInstant?
    var continuation: UnsafeContinuation<WaitOutcome, Never>
}

/// A deadline for one delivery attempt: an ack wait or a nak delay.
struct AttemptDeadline: Comparable {
    var deadline: BrokerInstant
    var sequence: UInt64
    var attempt: UInt32

    static func < (lhs: Self, rhs: Self) -> Bool {
        (lhs.deadline, lhs.sequence) < (rhs.deadline, rhs.sequence)
    }
}

/// A request waiting to be handed to one member of a consumer; it answers through the requester's reply box.
struct QueuedRequest: RequestReplier {
    var event: Event
    var replies: ReplyBox

    var requestID: String { event.id }

    func send(_ reply: Event) {
        // A requester that gave up (timeout) or got another responder's reply first ignores this one, as a
        // NATS inbox does.
        replies.resolve(reply)
    }
}

/// A delivery that left the log and is not yet settled.
///
/// Stored as plain fields (a kind byte and one instant) and read through ``phase``: as a stored
/// multi-payload enum inside an `Optional`, every table read and write went through the runtime's generic
/// enum-tag functions (`swift_storeEnumTagSinglePayloadGeneric`), measured on the ack path.
struct PendingDelivery {
    enum Phase: Equatable {
        /// Handed to a subscriber; redelivered when `deadline` passes.
        case delivered(deadline: BrokerInstant)
        /// Nak'd with a delay; queued for redelivery when `until` passes.
        case delayed(until: BrokerInstant)
        /// In `redeliveries`, waiting for a subscriber.
        case queued
    }

    var attempt: UInt32
    private var kind: UInt8
    private var instant: BrokerInstant

    init(attempt: UInt32, phase: Phase) {
        self.attempt = attempt
        switch phase {
        case .delivered(let deadline):
            kind = 1
            instant = deadline
        case .delayed(let until):
            kind = 2
            instant = until
        case .queued:
            kind = 0
            instant = .unused
        }
    }

    var phase: Phase {
        @inline(__always) get {
            switch kind {
            case 1: .delivered(deadline: instant)
            case 2: .delayed(until: instant)
            default: .queued
            }
        }
        @inline(__always) set {
            switch newValue {
            case .delivered(let deadline):
                kind = 1
                instant = deadline
            case .delayed(let until):
                kind = 2
                instant = until
            case .queued:
                kind = 0
            }
        }
    }

    /// Whether the delivery is with a subscriber (not delayed, not queued).
    var isDelivered: Bool { kind == 1 }
    /// Whether the delivery waits in the redelivery queue.
    var isQueued: Bool { kind == 0 }
}

/// The deliveries one member of a group pulled that may still be unsettled, so that closing the member hands
/// them back at once rather than after their ack wait. Only group members keep one (a consumer of its own
/// ends with its subscriber, and its deliveries with it).
///
/// Touched only under the broker's lock, like ``ConsumerState`` (hence `@unchecked Sendable` and the
/// unchecked exclusivity); shared by the subscriber's record and its ``InMemorySubscription``, so a close
/// after the member was detached (its loop broke) still finds them. Bounded: settled entries are dropped
/// whenever they outnumber the consumer's pending deliveries.
final class HeldDeliveries: @unchecked Sendable {
    @exclusivity(unchecked) var entries: [InMemoryAcknowledger] = []
}

/// Work the broker must do after a consumer gave an event up: publish its dead-letter copy.
struct DeadLetterWork {
    var sequence: UInt64
    var attempts: Int
    var error: String
    var consumer: ConsumerID
}

/// One consumer's state, as JetStream keeps it for a consumer: where it is in the log, what it has handed
/// out and not had settled, what is due again, and who waits for work.
///
/// Part of the broker's state machine, and only ever touched under the broker's lock (its ``AckInbox`` is an
/// object of its own, with its own lock, which acks reach without the broker's). A class rather than a
/// struct because the broker's dictionary would otherwise copy the whole record (deques, dictionary, heap)
/// on every read of one field; measured, those copies were a fifth of publish-to-ack time. The subject index
/// holds these objects directly, so a publish reaches its consumers without a dictionary lookup.
///
/// Everything that changes lives in one struct, ``ConsumerCore``, behind one stored property: Swift checks
/// exclusive access to a class's stored properties at run time (`swift_beginAccess`, ~10 ns with its
/// thread-local lookup), once per access, and with a dozen mutable fields that was a third of a pull's
/// time, measured. `core` itself is `@exclusivity(unchecked)`: every access happens under the broker's
/// lock, and none overlaps another (no method of the core calls back into its wrapper), which is what the
/// run-time check would verify. `@unchecked Sendable` for the same reason the subject tree's nodes are:
/// reachable only through the lock.
final class ConsumerState: Hashable, @unchecked Sendable {
    let id: ConsumerID
    let pattern: SubjectPattern
    let options: SubscriptionOptions
    @exclusivity(unchecked) private var core: ConsumerCore

    /// Metrics and spans of the consumer's deliveries; `nil` while the bus is not instrumented.
    let telemetry: ConsumerTelemetry?

    init(
        id: ConsumerID, pattern: SubjectPattern, options: SubscriptionOptions, ready: Deque<UInt64>,
        telemetry: ConsumerTelemetry?
    ) {
        self.id = id
        self.pattern = pattern
        self.options = options
        self.telemetry = telemetry
        core = ConsumerCore(id: id, pattern: pattern, options: options, ready: ready, telemetry: telemetry)
    }

    /// Equal only to itself: one record per consumer id.
    static func == (lhs: ConsumerState, rhs: ConsumerState) -> Bool { lhs === rhs }

    func hash(into hasher: inout Hasher) {
        hasher.combine(ObjectIdentifier(self))
    }

    var group: String? { options.group }
    var isDurable: Bool { options.group != nil }
    // Readers name stored fields of `core`: a computed property of the struct would copy all of `core`
    // (retaining every buffer in it) to run its getter, measured as a third of an ack.
    var members: [SubscriberID] { core.members }
    var pendingCount: Int {
        core.drainAcks()
        return core.pending.count
    }
    var discardedUndelivered: Int { core.discardedUndelivered }
    /// Events matching the consumer that it has not delivered yet (JetStream's `num_pending`).
    var undeliveredCount: Int { core.ready.count }
    var hasWaiters: Bool { !core.waiters.isEmpty }

    func addMember(_ subscriber: SubscriberID) { core.addMember(subscriber) }
    func removeMember(_ subscriber: SubscriberID) -> [Waiter] { core.removeMember(subscriber) }
    func removeAllWaiters() -> [Waiter] { core.removeAllWaiters() }
    func park(_ waiter: Waiter) -> Bool { core.park(waiter) }
    func unpark(token: UInt64) -> Waiter? { core.unpark(token: token) }
    // Each method that reads or changes pending deliveries or their deadlines applies the ack inbox
    // first (see AckInbox for why that makes deferred acks invisible).
    func waiterToWake(now: BrokerInstant) -> Waiter? {
        core.drainAcks()
        return core.waiterToWake(now: now)
    }

    func hasWork(now: BrokerInstant) -> Bool {
        core.drainAcks()
        return core.hasWork(now: now)
    }

    func nextDeadline() -> BrokerInstant? {
        core.drainAcks()
        return core.nextDeadline()
    }

    func expireDeadlines(now: BrokerInstant, into deadLetters: inout [DeadLetterWork]) {
        core.drainAcks()
        core.expireDeadlines(now: now, into: &deadLetters)
    }

    func takeBatch(
        limit: Int,
        now: BrokerInstant,
        log: RetainedLog,
        broker: InMemoryBroker,
        holder: HeldDeliveries?,
        into deliveries: inout [Delivery]
    ) {
        core.drainAcks()
        core.takeBatch(limit: limit, now: now, log: log, broker: broker, holder: holder, into: &deliveries)
    }

    func giveBack(_ returned: [(sequence: UInt64, attempt: UInt32)]) {
        core.drainAcks()
        core.giveBack(returned)
    }

    func handBack(_ held: HeldDeliveries) {
        core.drainAcks()
        core.handBack(held)
    }
    func giveBack(requests returned: [QueuedRequest]) { core.giveBack(requests: returned) }

    func settle(
        _ settlement: ConsumerCore.Settlement,
        sequence: UInt64,
        attempt: UInt32,
        now: inout LazyNow
    ) throws(EventBusError) -> DeadLetterWork? {
        core.drainAcks()
        return try core.settle(settlement, sequence: sequence, attempt: attempt, now: &now)
    }

    func enqueue(_ sequence: UInt64) { core.enqueue(sequence) }
    func enqueue(_ request: QueuedRequest, limit: Int) -> Bool { core.enqueue(request, limit: limit) }
    func dropDiscarded(before firstRetained: UInt64) -> Int { core.dropDiscarded(before: firstRetained) }
    func shouldReportDiscard(now: BrokerInstant) -> Bool { core.shouldReportDiscard(now: now) }

    /// The consumer is removed: acks from now on go to the broker (and fail there as `closed`).
    func close() { core.inbox.close() }
}

/// The mutable part of a ``ConsumerState``; its methods are the consumer's events.
struct ConsumerCore {
    let id: ConsumerID
    let pattern: SubjectPattern
    let options: SubscriptionOptions
    fileprivate(set) var members: [SubscriberID] = []

    /// Sequences matching the pattern that were never delivered, oldest first.
    var ready: Deque<UInt64>
    /// Sequences due for redelivery, in the order they became due.
    private var redeliveries: Deque<UInt64> = []
    /// Delivered, not settled; includes those waiting for redelivery (JetStream's ack pending).
    private(set) var pending = PendingTable()
    /// Ack deadlines in the order they were set. Every one is `now + ackWait` at the time it was set, so the
    /// deque stays sorted; entries for settled deliveries are skipped lazily and compacted in bulk.
    private var ackDeadlines: Deque<AttemptDeadline> = []
    /// Nak delays, which can be any length, so they need a heap.
    private var nakDelays: Heap<AttemptDeadline> = []
    /// Requests not yet handed to a member; not stored in the log, delivered at most once.
    private var requests: Deque<QueuedRequest> = []
    /// Parked iterators, longest waiting first.
    fileprivate var waiters: Deque<Waiter> = []
    /// Acks accepted without the broker's lock; applied by ``drainAcks()`` before pending is read.
    let inbox = AckInbox()
    /// The drained acks' array, kept for its capacity.
    private var drainedAcks: [DeferredAck] = []
    /// The batch object new deliveries join, while it has room.
    private var batch: DeliveryBatch?
    private var batchCount = 0

    /// Events the log discarded before this consumer delivered them (its members were too slow).
    private(set) var discardedUndelivered = 0
    private var lastDiscardReport: BrokerInstant?

    /// Handed to each delivery, so its settling and handling are counted and traced.
    let telemetry: ConsumerTelemetry?

    init(
        id: ConsumerID, pattern: SubjectPattern, options: SubscriptionOptions, ready: Deque<UInt64>,
        telemetry: ConsumerTelemetry?
    ) {
        self.id = id
        self.pattern = pattern
        self.options = options
        self.ready = ready
        self.telemetry = telemetry
    }

    var group: String? { options.group }

    /// Whether an iterator is parked (checked before the work a wake-up decision needs).
    var hasWaiters: Bool { !waiters.isEmpty }

    /// Whether a group's consumer outlives its members (only group consumers do).
    var isDurable: Bool { options.group != nil }

    // MARK: Members and waiters

    mutating func addMember(_ subscriber: SubscriberID) {
        members.append(subscriber)
    }

    /// Removes a member and returns its parked iterators, to be resumed with `.ended`.
    mutating func removeMember(_ subscriber: SubscriberID) -> [Waiter] {
        members.removeAll { $0 == subscriber }
        var removed: [Waiter] = []
        waiters.removeAll { waiter in
            guard waiter.subscriber == subscriber else { return false }
            removed.append(waiter)
            return true
        }
        waitersChanged()
        return removed
    }

    /// Every parked iterator, removed; for closing the whole consumer.
    mutating func removeAllWaiters() -> [Waiter] {
        defer {
            waiters.removeAll()
            waitersChanged()
        }
        return Array(waiters)
    }

    /// Parks an iterator; `false` (not parked) if acks arrived in the inbox since the caller looked for
    /// work, which may have made room: the caller pulls again instead.
    mutating func park(_ waiter: Waiter) -> Bool {
        guard inbox.setHasWaiters(true) else { return false }
        waiters.append(waiter)
        return true
    }

    /// Removes the parked iterator with `token`, if it is still parked.
    mutating func unpark(token: UInt64) -> Waiter? {
        guard let index = waiters.firstIndex(where: { $0.token == token }) else { return nil }
        defer { waitersChanged() }
        return waiters.remove(at: index)
    }

    /// Tells the inbox whether acks may still bypass the broker (not while a member is parked).
    private func waitersChanged() {
        if waiters.isEmpty {
            _ = inbox.setHasWaiters(false)
        }
    }

    /// Applies the acks the inbox accepted, as the broker would have applied each when it was made.
    mutating func drainAcks() {
        guard inbox.drain(into: &drainedAcks) else { return }
        for ack in drainedAcks {
            if let entry = pending[ack.sequence], entry.attempt == ack.attempt, entry.isDelivered {
                pending[ack.sequence] = nil
            }
        }
        drainedAcks.removeAll(keepingCapacity: true)
    }

    /// Takes the longest-waiting parked iterator if there is work it could pick up now, or if a deadline is
    /// in force that no parked iterator's timer covers (it must re-park with a timer).
    mutating func waiterToWake(now: BrokerInstant) -> Waiter? {
        guard !waiters.isEmpty else { return nil }
        if hasWork(now: now) {
            defer { waitersChanged() }
            return waiters.removeFirst()
        }
        if let next = nextDeadline(),
            !waiters.contains(where: { waiter in waiter.deadline.map { $0 <= next } ?? false })
        {
            defer { waitersChanged() }
            return waiters.removeFirst()
        }
        return nil
    }

    /// Whether a pull now would deliver something.
    mutating func hasWork(now: BrokerInstant) -> Bool {
        if !requests.isEmpty || !redeliveries.isEmpty { return true }
        if !ready.isEmpty && pending.count < options.maxInFlight { return true }
        if let next = nextDeadline(), next <= now { return true }
        return false
    }

    /// The earliest ack deadline or nak delay still in force. Drops stale entries from the front on the
    /// way, so the answer costs O(1) amortized.
    mutating func nextDeadline() -> BrokerInstant? {
        while let first = ackDeadlines.first, !isLive(first) {
            ackDeadlines.removeFirst()
        }
        while let first = nakDelays.min, !isLive(first) {
            nakDelays.removeMin()
        }
        switch (ackDeadlines.first?.deadline, nakDelays.min?.deadline) {
        case (let ack?, let nak?): return min(ack, nak)
        case (let ack?, nil): return ack
        case (nil, let nak?): return nak
        case (nil, nil): return nil
        }
    }

    // MARK: Delivering

    /// Whether a deadline entry still belongs to the current phase of its delivery.
    private func isLive(_ entry: AttemptDeadline) -> Bool {
        guard let pending = pending[entry.sequence], pending.attempt == entry.attempt else { return false }
        switch pending.phase {
        case .delivered(let deadline), .delayed(until: let deadline):
            return deadline == entry.deadline
        case .queued:
            return false
        }
    }

    /// Moves expired ack waits and elapsed nak delays to the redelivery queue; an expired ack wait on the
    /// last allowed attempt gives the event up instead.
    mutating func expireDeadlines(now: BrokerInstant, into deadLetters: inout [DeadLetterWork]) {
        while let entry = ackDeadlines.first {
            guard isLive(entry) else {
                ackDeadlines.removeFirst()
                continue
            }
            guard entry.deadline <= now else { break }
            ackDeadlines.removeFirst()
            if options.isFinalAttempt(Int(entry.attempt)) {
                pending[entry.sequence] = nil
                deadLetters.append(
                    DeadLetterWork(
                        sequence: entry.sequence, attempts: Int(entry.attempt),
                        error: "ack wait of \(options.ackWait) expired on attempt \(entry.attempt)", consumer: id
                    )
                )
            } else {
                pending[entry.sequence]?.phase = .queued
                redeliveries.append(entry.sequence)
            }
        }
        while let entry = nakDelays.min, entry.deadline <= now || !isLive(entry) {
            nakDelays.removeMin()
            if isLive(entry) {
                pending[entry.sequence]?.phase = .queued
                redeliveries.append(entry.sequence)
            }
        }
        compactDeadlinesIfMostlyStale()
    }

    /// Stale deadline entries (settled deliveries) behind a live one are only dropped lazily; drop them in
    /// bulk once they outnumber the live ones, so memory stays bounded by `maxInFlight`.
    private mutating func compactDeadlinesIfMostlyStale() {
        let bound = 2 * pending.count + 64
        if ackDeadlines.count > bound {
            ackDeadlines = Deque(ackDeadlines.filter(isLive))
        }
        if nakDelays.count > bound {
            nakDelays = Heap(nakDelays.unordered.filter(isLive))
        }
    }

    /// Takes up to `limit` deliveries: requests first, then redeliveries, then new events while fewer than
    /// `maxInFlight` are pending. With several members, new events are shared out so that one member does
    /// not take the whole backlog.
    mutating func takeBatch(
        limit: Int,
        now: BrokerInstant,
        log: RetainedLog,
        broker: InMemoryBroker,
        holder: HeldDeliveries?,
        into deliveries: inout [Delivery]
    ) {
        if let holder {
            dropSettled(from: holder)
        }
        deliveries.reserveCapacity(min(limit, requests.count + redeliveries.count + ready.count))
        while deliveries.count < limit, let request = requests.popFirst() {
            deliveries.append(
                Delivery(
                    event: request.event, deliveryCount: 1, sequence: 0, subject: request.event.subject,
                    isRequest: true, acknowledger: RequestAcknowledger(request)
                )
            )
        }
        let deadline = now + options.ackWait
        while deliveries.count < limit, let sequence = redeliveries.popFirst() {
            guard var entry = pending[sequence], entry.isQueued else { continue }
            guard let logged = log.entry(sequence) else {
                pending[sequence] = nil
                discardedUndelivered += 1
                continue
            }
            entry.attempt += 1
            entry.phase = .delivered(deadline: deadline)
            pending[sequence] = entry
            ackDeadlines.append(AttemptDeadline(deadline: deadline, sequence: sequence, attempt: entry.attempt))
            deliveries.append(
                makeDelivery(
                    logged.event, sequence: sequence, attempt: entry.attempt, deadline: deadline, broker: broker,
                    holder: holder
                )
            )
        }
        let fairShare = members.count > 1 ? max(1, (ready.count + members.count - 1) / members.count) : Int.max
        var newLimit = min(limit - deliveries.count, options.maxInFlight - pending.count, fairShare)
        while newLimit > 0, let sequence = ready.popFirst() {
            guard let logged = log.entry(sequence) else {
                discardedUndelivered += 1
                continue
            }
            pending[sequence] = PendingDelivery(attempt: 1, phase: .delivered(deadline: deadline))
            ackDeadlines.append(AttemptDeadline(deadline: deadline, sequence: sequence, attempt: 1))
            deliveries.append(
                makeDelivery(logged.event, sequence: sequence, attempt: 1, deadline: deadline, broker: broker, holder: holder)
            )
            newLimit -= 1
        }
    }

    /// A delivery whose acknowledger joins the current ``DeliveryBatch`` (a new one per pull, and per 64
    /// deliveries): one small allocation per batch rather than state per delivery.
    private mutating func makeDelivery(
        _ event: Event,
        sequence: UInt64,
        attempt: UInt32,
        deadline: BrokerInstant,
        broker: InMemoryBroker,
        holder: HeldDeliveries?
    ) -> Delivery {
        let current: DeliveryBatch
        if let batch, batchCount < DeliveryBatch.capacity, batch.deadline == deadline {
            current = batch
        } else {
            current = DeliveryBatch(broker: broker, consumer: id, inbox: inbox, deadline: deadline)
            batch = current
            batchCount = 0
        }
        let index = batchCount
        batchCount += 1
        let acknowledger = InMemoryAcknowledger(batch: current, index: index, sequence: sequence, attempt: attempt)
        holder?.entries.append(acknowledger)
        return Delivery(
            event: event, deliveryCount: Int(attempt), sequence: sequence, subject: event.subject,
            acknowledger: acknowledger, telemetry: telemetry
        )
    }

    /// Whether `acknowledger`'s delivery is still out with its member: pending at that attempt, not queued
    /// or delayed again, and not claimed by a settlement.
    private func isUnsettled(_ acknowledger: InMemoryAcknowledger) -> Bool {
        guard let entry = pending[acknowledger.sequence] else { return false }
        return entry.attempt == acknowledger.attempt && entry.isDelivered
            && !acknowledger.batch.isClaimed(acknowledger.index)
    }

    /// Forgets a member's settled deliveries once they outnumber the pending ones, so its record stays
    /// bounded by `maxInFlight` at O(1) amortized cost per delivery.
    private func dropSettled(from holder: HeldDeliveries) {
        guard holder.entries.count > 2 * pending.count + 64 else { return }
        holder.entries.removeAll { !isUnsettled($0) }
    }

    /// Takes back at once every delivery of a closing member that is still unsettled, without counting
    /// the attempt (the next delivery carries the same attempt number), in the order they were delivered.
    ///
    /// Each is claimed first, exactly as a settlement would claim it, so a settlement the member's code
    /// makes afterwards is refused with `alreadyAcknowledged` instead of acting on the redelivery (which
    /// has the same sequence and attempt); one it made first wins, and the delivery is left to it.
    mutating func handBack(_ holder: HeldDeliveries) {
        var returned: [(sequence: UInt64, attempt: UInt32)] = []
        for acknowledger in holder.entries where isUnsettled(acknowledger) {
            if acknowledger.batch.claim(acknowledger.index) {
                returned.append((acknowledger.sequence, acknowledger.attempt))
            }
        }
        holder.entries.removeAll()
        giveBack(returned)
    }

    /// Takes back deliveries that were pulled but never reached the subscriber's code (its iterator ended):
    /// they are due again at once and their attempt does not count.
    mutating func giveBack(_ returned: [(sequence: UInt64, attempt: UInt32)]) {
        for (sequence, attempt) in returned.reversed() {
            guard var entry = pending[sequence], entry.attempt == attempt, entry.isDelivered else { continue }
            entry.attempt -= 1
            entry.phase = .queued
            pending[sequence] = entry
            redeliveries.prepend(sequence)
        }
    }

    /// Puts requests that never reached the subscriber's code back at the front of the queue.
    mutating func giveBack(requests returned: [QueuedRequest]) {
        for request in returned.reversed() {
            requests.prepend(request)
        }
    }

    // MARK: Settling

    enum Settlement {
        case ack
        case nak(delay: Duration?)
        case term(reason: String?)
        case inProgress
    }

    /// Applies one settlement to the delivery `sequence`/`attempt`; returns the dead-letter work if the event
    /// was given up.
    mutating func settle(
        _ settlement: Settlement,
        sequence: UInt64,
        attempt: UInt32,
        now: inout LazyNow
    ) throws(EventBusError) -> DeadLetterWork? {
        guard var entry = pending[sequence], entry.attempt == attempt, entry.isDelivered else {
            throw EventBusError(
                .alreadyAcknowledged,
                "delivery of sequence \(sequence) attempt \(attempt) on '\(pattern)' was already settled, "
                    + "or its ack wait expired and it was handed out again"
            )
        }
        switch settlement {
        case .ack:
            pending[sequence] = nil
        case .inProgress:
            let deadline = now.instant + options.ackWait
            entry.phase = .delivered(deadline: deadline)
            pending[sequence] = entry
            ackDeadlines.append(AttemptDeadline(deadline: deadline, sequence: sequence, attempt: attempt))
        case .term(let reason):
            pending[sequence] = nil
            return DeadLetterWork(
                sequence: sequence, attempts: Int(attempt), error: reason ?? "terminated by the subscriber",
                consumer: id
            )
        case .nak(let delay):
            if options.isFinalAttempt(Int(attempt)) {
                pending[sequence] = nil
                return DeadLetterWork(
                    sequence: sequence, attempts: Int(attempt),
                    error: "negatively acknowledged on attempt \(attempt), the last of \(options.maxDeliver ?? 0)",
                    consumer: id
                )
            }
            let wait = delay ?? options.backoffDelay(afterAttempt: Int(attempt)) ?? .zero
            if wait > .zero {
                let until = now.instant + wait
                entry.phase = .delayed(until: until)
                nakDelays.insert(AttemptDeadline(deadline: until, sequence: sequence, attempt: attempt))
            } else {
                entry.phase = .queued
                redeliveries.append(sequence)
            }
            pending[sequence] = entry
        }
        return nil
    }

    // MARK: Feeding

    /// Records a newly stored matching event.
    mutating func enqueue(_ sequence: UInt64) {
        ready.append(sequence)
    }

    /// Queues a request unless `limit` requests already wait; returns whether it was queued.
    mutating func enqueue(_ request: QueuedRequest, limit: Int) -> Bool {
        guard requests.count < limit else { return false }
        requests.append(request)
        return true
    }

    /// Drops ready sequences the log no longer holds; returns how many there were, for reporting.
    mutating func dropDiscarded(before firstRetained: UInt64) -> Int {
        var dropped = 0
        while let first = ready.first, first < firstRetained {
            ready.removeFirst()
            dropped += 1
        }
        discardedUndelivered += dropped
        return dropped
    }

    /// Whether a discard report is due (at most one every 10 seconds per consumer).
    mutating func shouldReportDiscard(now: BrokerInstant) -> Bool {
        if let last = lastDiscardReport, last.duration(to: now) < .seconds(10) {
            return false
        }
        lastDiscardReport = now
        return true
    }
}

import EventBus
import NATS
import Synchronization

/// Up to 64 consecutive deliveries of one subscription's iterator, with what settling each of
/// them takes: its JetStream message (ack subject and state), its event (for dead letters and
/// errors), and where it sits in the stream.
///
/// Why chunks: a delivery's acknowledger used to be an object of its own, one allocation and one
/// lock (to list it for ``JetStreamSubscription/close()``) per event. Now the acknowledger is two
/// words, the chunk and an index, which fit in the existential's inline buffer, and a chunk is
/// allocated and listed once per 64 events. A chunk lives while any of its deliveries does or the
/// subscription still lists it, so a delivery kept for long keeps up to 63 neighbours' messages.
///
/// Only the iterator that owns the chunk fills it, slot after slot; `filled` publishes each slot
/// before its delivery leaves the iterator, and the handlers and ``JetStreamSubscription/close()``
/// read only slots below it, which are never written again.
final class JetStreamDeliveryChunk: @unchecked Sendable {
    // @unchecked: the slots are raw memory; see the type's comment for why reading them is safe.

    static let capacity = 64

    struct Slot {
        let message: NATSJetStreamMessage
        let event: Event
        let streamSequence: UInt64
        let deliveryCount: UInt64
    }

    let subscription: JetStreamSubscription
    private let slots: UnsafeMutablePointer<Slot>
    private let filled = Atomic<Int>(0)

    init(subscription: JetStreamSubscription) {
        self.subscription = subscription
        slots = .allocate(capacity: Self.capacity)
    }

    deinit {
        slots.deinitialize(count: filled.load(ordering: .acquiring))
        slots.deallocate()
    }

    var isFull: Bool { filled.load(ordering: .relaxed) == Self.capacity }

    /// Stores a delivery in the next slot; the caller checked ``isFull`` (only it fills the chunk).
    func append(_ slot: consuming Slot) -> JetStreamDeliveryAcknowledger {
        let index = filled.load(ordering: .relaxed)
        precondition(index < Self.capacity, "a full delivery chunk was appended to")
        (slots + index).initialize(to: slot)
        filled.store(index + 1, ordering: .releasing)
        return JetStreamDeliveryAcknowledger(chunk: self, index: index)
    }

    /// The slot of a delivery that was handed out (so below `filled`).
    @inline(__always)
    func slot(_ index: Int) -> UnsafePointer<Slot> { UnsafePointer(slots + index) }

    /// The message in the slot of a delivery that was handed out, where it lies.
    @inline(__always)
    func message(_ index: Int) -> UnsafePointer<NATSJetStreamMessage> {
        UnsafePointer(slots + index).pointer(to: \.message)!
    }

    /// Deliveries not settled and still the newest of their event that this process knows of.
    var outstandingCount: Int {
        (0..<filled.load(ordering: .acquiring)).reduce(0) { $0 + (isOutstanding($1) ? 1 : 0) }
    }

    /// Whether every slot is filled and none of them is outstanding, so the subscription can stop
    /// listing the chunk.
    var isSpent: Bool { isFull && outstandingCount == 0 }

    func isOutstanding(_ index: Int) -> Bool {
        let slot = slot(index)
        return !slot.pointee.message.isAcknowledged
            && subscription.ledger.isCurrent(sequence: slot.pointee.streamSequence, attempt: slot.pointee.deliveryCount)
    }

    /// Returns every outstanding delivery to the server at once (`-NAK` without delay); settling one
    /// of them later throws `alreadyAcknowledged`.
    func handBackOutstanding() {
        for index in 0..<filled.load(ordering: .acquiring) {
            // A superseded attempt's ack subject would act on the live delivery: leave it alone.
            guard isOutstanding(index) else { continue }
            let slot = slot(index)
            if (try? NATSJetStreamMessage.nak(at: message(index), delay: nil)) != nil {
                subscription.ledger.settled(sequence: slot.pointee.streamSequence, attempt: slot.pointee.deliveryCount)
            }
        }
    }
}

/// Settles a stored event on JetStream, dead-lettering where the contract says so: its
/// ``JetStreamDeliveryChunk`` and its slot there.
struct JetStreamDeliveryAcknowledger: DeliveryAcknowledger {
    let chunk: JetStreamDeliveryChunk
    let index: Int

    private var slot: UnsafePointer<JetStreamDeliveryChunk.Slot> { chunk.slot(index) }
    private var subscription: JetStreamSubscription { chunk.subscription }
    private var message: NATSJetStreamMessage { slot.pointee.message }
    private var event: Event { slot.pointee.event }
    private var streamSequence: UInt64 { slot.pointee.streamSequence }
    private var attempt: Int { Int(slot.pointee.deliveryCount) }

    private func checkCurrent(_ action: String) throws(EventBusError) {
        let current = subscription.ledger.isCurrent(sequence: streamSequence, attempt: slot.pointee.deliveryCount)
        if !current {
            throw EventBusError(
                .alreadyAcknowledged,
                "cannot \(action) attempt \(attempt) of '\(event.subject)' (sequence \(streamSequence)): its ack wait expired and it was delivered again")
        }
    }

    private func settled() {
        subscription.ledger.settled(sequence: streamSequence, attempt: slot.pointee.deliveryCount)
    }

    /// Runs a settlement on the slot's message where it lies (see the NATS module's
    /// `NATSJetStreamMessage.ack(at:)`: a method called on it would copy it first).
    private func perform(
        _ what: String, _ action: (UnsafePointer<NATSJetStreamMessage>) throws(NATSError) -> Void
    ) throws(EventBusError) {
        do {
            try action(chunk.message(index))
        } catch {
            throw EventBusError(mapping: error, what: "\(what) '\(event.subject)' (sequence \(streamSequence))", fallback: .backendUnavailable)
        }
    }

    nonisolated(nonsending) func ack() async throws {
        try checkCurrent("ack")
        try perform("acknowledging") { (message) throws(NATSError) in try NATSJetStreamMessage.ack(at: message) }
        settled()
    }

    nonisolated(nonsending) func nak(delay: Duration?) async throws {
        try checkCurrent("nak")
        let attempt = attempt
        let options = subscription.options
        if options.isFinalAttempt(attempt) {
            let limit = options.maxDeliver ?? attempt
            try await deadLetter(error: "negatively acknowledged on attempt \(attempt), the last of \(limit)")
            try perform("ending") { (message) throws(NATSError) in
                try NATSJetStreamMessage.term(at: message, reason: "dead-lettered after \(attempt) attempts")
            }
        } else {
            let wait = delay ?? options.backoffDelay(afterAttempt: attempt)
            try perform("rejecting") { (message) throws(NATSError) in try NATSJetStreamMessage.nak(at: message, delay: wait) }
        }
        settled()
    }

    nonisolated(nonsending) func term(reason: String?) async throws {
        try checkCurrent("term")
        try await deadLetter(error: reason ?? "terminated by the subscriber")
        try perform("ending") { (message) throws(NATSError) in try NATSJetStreamMessage.term(at: message, reason: reason) }
        settled()
    }

    nonisolated(nonsending) func inProgress() async throws {
        try checkCurrent("extend")
        try perform("extending the ack wait of") { (message) throws(NATSError) in try NATSJetStreamMessage.inProgress(at: message) }
    }

    nonisolated(nonsending) func respond(_ reply: Event) async throws {
        throw EventBusError(.notARequest, "'\(event.subject)' (sequence \(streamSequence)) is a published event, not a request")
    }

    /// Publishes the dead letter before the event is ended, so that nothing is lost if this fails
    /// (the event is then redelivered). Its message id is derived from the consumer and sequence,
    /// so racing members store it once.
    private func deadLetter(error: String) async throws {
        if message.isAcknowledged {
            throw EventBusError(.alreadyAcknowledged, "attempt \(attempt) of '\(event.subject)' was already settled")
        }
        let subscription = subscription
        let options = subscription.options
        let event = event
        let deadLetter = DeadLetter.event(
            from: event, deadLetterSubject: options.deadLetterSubject(forOriginalSubject: event.subject), attempts: attempt,
            error: error, sequence: streamSequence, group: options.group)
        let receipt = try await subscription.bus.publish(
            deadLetter, messageID: "deadletter-\(subscription.consumerName)-\(streamSequence)")
        // A duplicate: another member dead-lettered it already and counted it.
        if !receipt.duplicate { subscription.telemetry?.deadLettered() }
    }
}

/// Settles a delivery of a stored event with the in-memory broker.
///
/// Three words (its pull's ``DeliveryBatch``, the sequence, and its index in the batch packed with the
/// attempt), so it fits an existential's inline buffer and a delivery costs no allocation for it.
///
/// `ack()` is the common act and usually goes to the consumer's ``AckInbox`` without the broker's lock;
/// nak, term and inProgress, and an ack the inbox cannot take, go to the broker as before.
struct InMemoryAcknowledger: DeliveryAcknowledger {
    let batch: DeliveryBatch
    let sequence: UInt64
    private let indexAndAttempt: UInt64

    init(batch: DeliveryBatch, index: Int, sequence: UInt64, attempt: UInt32) {
        self.batch = batch
        self.sequence = sequence
        self.indexAndAttempt = UInt64(index) << 32 | UInt64(attempt)
    }

    var broker: InMemoryBroker { batch.broker }
    var consumer: ConsumerID { batch.consumer }
    var index: Int { Int(truncatingIfNeeded: indexAndAttempt >> 32) }
    var attempt: UInt32 { UInt32(truncatingIfNeeded: indexAndAttempt) }

    nonisolated(nonsending) func ack() async throws {
        try claim()
        // Before its deadline the delivery cannot have been redelivered: the inbox may take the ack.
        if broker.clock.now < batch.deadline, batch.inbox.deferAck(sequence: sequence, attempt: attempt) {
            return
        }
        try broker.settle(.ack, consumer: consumer, sequence: sequence, attempt: attempt)
    }

    nonisolated(nonsending) func nak(delay: Duration?) async throws {
        if let delay, delay < .zero {
            throw EventBusError(.invalidOption, "nak delay \(delay) must not be negative")
        }
        try claim()
        try broker.settle(.nak(delay: delay), consumer: consumer, sequence: sequence, attempt: attempt)
    }

    nonisolated(nonsending) func term(reason: String?) async throws {
        try claim()
        try broker.settle(.term(reason: reason), consumer: consumer, sequence: sequence, attempt: attempt)
    }

    /// May be repeated, so it claims nothing; the broker applies the inbox first and sees an earlier ack.
    nonisolated(nonsending) func inProgress() async throws {
        try broker.settle(.inProgress, consumer: consumer, sequence: sequence, attempt: attempt)
    }

    nonisolated(nonsending) func respond(_ reply: Event) async throws {
        throw EventBusError(
            .notARequest,
            "sequence \(sequence) was published, not requested; there is nobody to respond to"
        )
    }

    /// The first ack, nak or term of this delivery; a second is refused as the broker would refuse it.
    private func claim() throws(EventBusError) {
        guard batch.claim(index) else {
            throw EventBusError(
                .alreadyAcknowledged,
                "delivery of sequence \(sequence) attempt \(attempt) was already settled"
            )
        }
    }
}

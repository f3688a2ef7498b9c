/// Settles a delivery of a stored event with the in-memory broker.
///
/// Three words (broker, sequence, consumer and attempt packed together), so it fits an existential's inline
/// buffer and a delivery costs no allocation for it.
struct InMemoryAcknowledger: DeliveryAcknowledger {
    let broker: InMemoryBroker
    let sequence: UInt64
    private let consumerAndAttempt: UInt64

    init(broker: InMemoryBroker, consumer: ConsumerID, sequence: UInt64, attempt: UInt32) {
        self.broker = broker
        self.sequence = sequence
        self.consumerAndAttempt = UInt64(consumer) << 32 | UInt64(attempt)
    }

    var consumer: ConsumerID { ConsumerID(truncatingIfNeeded: consumerAndAttempt >> 32) }
    var attempt: UInt32 { UInt32(truncatingIfNeeded: consumerAndAttempt) }

    func ack() async throws {
        try broker.settle(.ack, consumer: consumer, sequence: sequence, attempt: attempt)
    }

    func nak(delay: Duration?) async throws {
        if let delay, delay < .zero {
            throw EventBusError(.invalidOption, "nak delay \(delay) must not be negative")
        }
        try broker.settle(.nak(delay: delay), consumer: consumer, sequence: sequence, attempt: attempt)
    }

    func term(reason: String?) async throws {
        try broker.settle(.term(reason: reason), consumer: consumer, sequence: sequence, attempt: attempt)
    }

    func inProgress() async throws {
        try broker.settle(.inProgress, consumer: consumer, sequence: sequence, attempt: attempt)
    }

    func respond(_ reply: Event) async throws {
        throw EventBusError(
            .notARequest,
            "sequence \(sequence) was published, not requested; there is nobody to respond to"
        )
    }
}

/// One delivery of an event to a subscriber, with the means to settle it.
///
/// Settle each delivery exactly once: ``ack()`` when handled, ``nak(delay:)`` to have it redelivered,
/// ``term(reason:)`` to give it up to the dead-letter subject. Acting twice throws
/// ``EventBusError/Code/alreadyAcknowledged``.
///
/// The settling methods run on the caller's executor (`nonisolated(nonsending)`): an actor that
/// acknowledges stays on the actor, with no hop to the global executor and back.
public struct Delivery: Sendable, CustomStringConvertible {
    /// The delivered event.
    public let event: Event
    /// Which attempt this is, starting at 1 (JetStream: `NumDelivered`).
    public let deliveryCount: Int
    /// The event's sequence in the backend's log; 0 for a request, which is not stored.
    public let sequence: UInt64
    /// The subject the event was published on.
    public let subject: String
    /// Whether a requester waits for ``respond(_:)``.
    public let isRequest: Bool
    /// The backend's handle for settling this delivery.
    public let acknowledger: any DeliveryAcknowledger
    /// The subscription's metrics and spans; `nil` while the bus is not instrumented.
    package let telemetry: ConsumerTelemetry?

    /// Creates a delivery; backends call this.
    public init(
        event: Event,
        deliveryCount: Int,
        sequence: UInt64,
        subject: String,
        isRequest: Bool = false,
        acknowledger: any DeliveryAcknowledger
    ) {
        self.init(
            event: event, deliveryCount: deliveryCount, sequence: sequence, subject: subject, isRequest: isRequest,
            acknowledger: acknowledger, telemetry: nil)
    }

    /// Creates a delivery of an instrumented subscription.
    package init(
        event: Event,
        deliveryCount: Int,
        sequence: UInt64,
        subject: String,
        isRequest: Bool = false,
        acknowledger: any DeliveryAcknowledger,
        telemetry: ConsumerTelemetry?
    ) {
        self.event = event
        self.deliveryCount = deliveryCount
        self.sequence = sequence
        self.subject = subject
        self.isRequest = isRequest
        self.acknowledger = acknowledger
        self.telemetry = telemetry
    }

    /// The attempt number, starting at 1; the same as ``deliveryCount``.
    public var attempt: Int { deliveryCount }

    /// The event was handled; it is not delivered again.
    nonisolated(nonsending) public func ack() async throws {
        try await acknowledger.ack()
        telemetry?.acked()
    }

    /// The event was not handled; it is delivered again after `delay`, or after the subscription's backoff
    /// when `delay` is `nil`. At the last attempt `maxDeliver` allows, it moves to the dead-letter subject.
    nonisolated(nonsending) public func nak(delay: Duration? = nil) async throws {
        try await acknowledger.nak(delay: delay)
        telemetry?.naked()
    }

    /// The event can never be handled: it is not delivered again and moves to the dead-letter subject with
    /// `reason` as its error. To drop an event you do not care about, ``ack()`` it instead.
    nonisolated(nonsending) public func term(reason: String? = nil) async throws {
        try await acknowledger.term(reason: reason)
    }

    /// Restarts the ack wait while a long handler is still working.
    nonisolated(nonsending) public func inProgress() async throws {
        try await acknowledger.inProgress()
    }

    /// Answers the requester that sent this event (see ``isRequest``).
    nonisolated(nonsending) public func respond(_ reply: Event) async throws {
        try await acknowledger.respond(reply)
    }

    /// Subject, sequence, attempt and event id.
    public var description: String {
        "Delivery(subject: \(subject), sequence: \(sequence), attempt: \(deliveryCount), id: \(event.id))"
    }
}

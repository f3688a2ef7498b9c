/// A delivery whose payload was decoded as `Value`.
public struct TypedDelivery<Value: Sendable>: Sendable {
    /// The decoded payload.
    public let value: Value
    /// The delivery, to settle and to read attributes from.
    public let delivery: Delivery

    /// Pairs a decoded value with its delivery.
    public init(value: Value, delivery: Delivery) {
        self.value = value
        self.delivery = delivery
    }

    /// The delivered event.
    public var event: Event { delivery.event }

    /// See ``Delivery/ack()``.
    public func ack() async throws { try await delivery.ack() }

    /// See ``Delivery/nak(delay:)``.
    public func nak(delay: Duration? = nil) async throws { try await delivery.nak(delay: delay) }

    /// See ``Delivery/term(reason:)``.
    public func term(reason: String? = nil) async throws { try await delivery.term(reason: reason) }
}

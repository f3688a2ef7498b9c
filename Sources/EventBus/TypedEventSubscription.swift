#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A subscription whose payloads are decoded as `Value`.
///
/// A payload that does not decode is not an error of the sequence: that delivery is terminated, so it goes
/// to the dead-letter subject with the decoding error, and the sequence goes on with the next one.
public struct TypedEventSubscription<Value: Decodable & Sendable>: AsyncSequence, Sendable {
    /// A decoded delivery.
    public typealias Element = TypedDelivery<Value>
    /// The underlying subscription's failure.
    public typealias Failure = any Error

    /// The undecoded subscription.
    public let base: EventSubscription
    private let makeDecoder: @Sendable () -> JSONDecoder

    /// Wraps `base`; `makeDecoder` supplies the decoder each iterator uses.
    public init(base: EventSubscription, makeDecoder: @escaping @Sendable () -> JSONDecoder = { JSONDecoder() }) {
        self.base = base
        self.makeDecoder = makeDecoder
    }

    /// Starts iterating.
    public func makeAsyncIterator() -> Iterator {
        Iterator(base: base.makeAsyncIterator(), decoder: makeDecoder())
    }

    /// Closes the underlying subscription.
    public func close() async {
        await base.close()
    }

    /// Iterates decoded deliveries.
    public struct Iterator: AsyncIteratorProtocol {
        var base: EventSubscription.Iterator
        let decoder: JSONDecoder

        /// The next delivery that decodes, or `nil` once the subscription has ended.
        public mutating func next() async throws -> TypedDelivery<Value>? {
            while let delivery = try await base.next() {
                do {
                    let value = try delivery.event.decode(Value.self, decoder: decoder)
                    return TypedDelivery(value: value, delivery: delivery)
                } catch {
                    try await TypedEventSubscription.deadLetter(delivery, error)
                }
            }
            return nil
        }
    }

    /// Terminates an undecodable delivery so it reaches the dead-letter subject with the reason.
    static func deadLetter(_ delivery: Delivery, _ error: EventBusError) async throws {
        try await DeliverySettlement.settle { try await delivery.term(reason: error.message) }
    }
}

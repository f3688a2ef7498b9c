#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

extension EventBus {
    /// Publishes `value` as a JSON event on `subject`.
    @discardableResult
    public func publish<Value: Encodable>(
        _ value: Value,
        subject: String,
        type: String,
        source: String,
        id: String = Event.makeID(),
        extensions: [String: String] = [:],
        encoder: JSONEncoder = JSONEncoder()
    ) async throws -> PublishReceipt {
        let event = try Event(
            id: id, subject: subject, type: type, source: source, encoding: value, encoder: encoder,
            extensions: extensions
        )
        return try await publish(event)
    }

    /// Subscribes to `pattern`, decoding each payload as `Value`; undecodable events go to the dead-letter
    /// subject.
    public func subscribe<Value: Decodable & Sendable>(
        _ pattern: String,
        as type: Value.Type,
        options: SubscriptionOptions = .init(),
        makeDecoder: @escaping @Sendable () -> JSONDecoder = { JSONDecoder() }
    ) async throws -> TypedEventSubscription<Value> {
        TypedEventSubscription(base: try await subscribe(pattern, options: options), makeDecoder: makeDecoder)
    }

    /// `consume(_ pattern:options:handler:)` decoding each payload as `Value`; an undecodable event goes to
    /// the dead-letter subject without reaching the handler.
    public func consume<Value: Decodable & Sendable>(
        _ pattern: String,
        as type: Value.Type,
        options: SubscriptionOptions = .init(),
        makeDecoder: @escaping @Sendable () -> JSONDecoder = { JSONDecoder() },
        handler: @escaping @Sendable (Value, Delivery) async throws -> Void
    ) async throws {
        let subscription = try await subscribe(SubjectPattern(pattern), options: options)
        try await consume(subscription, as: type, options: options, makeDecoder: makeDecoder, handler: handler)
    }

    /// `consume(_ subscription:options:handler:)` decoding each payload as `Value`; an undecodable event
    /// goes to the dead-letter subject without reaching the handler. Subscribe first (the consumer exists
    /// once `subscribe` returns), then run this in a task, so that nothing published meanwhile is missed.
    public func consume<Value: Decodable & Sendable>(
        _ subscription: EventSubscription,
        as type: Value.Type,
        options: SubscriptionOptions,
        makeDecoder: @escaping @Sendable () -> JSONDecoder = { JSONDecoder() },
        handler: @escaping @Sendable (Value, Delivery) async throws -> Void
    ) async throws {
        try await consume(subscription, options: options) { delivery in
            let value: Value
            do throws(EventBusError) {
                value = try delivery.event.decode(Value.self, decoder: makeDecoder())
            } catch {
                try await TypedEventSubscription<Value>.deadLetter(delivery, error)
                return
            }
            try await handler(value, delivery)
        }
    }
}

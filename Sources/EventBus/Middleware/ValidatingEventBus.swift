/// Middleware that checks every published or requested event against an ``EventValidator`` and rejects an
/// invalid one with ``EventBusError/Code/validationFailed`` before it reaches the backend.
public struct ValidatingEventBus: EventBus {
    /// The bus valid events go to.
    public let base: any EventBus
    /// The schema checks.
    public let validator: EventValidator

    /// Wraps `base`.
    public init(_ base: any EventBus, validator: EventValidator) {
        self.base = base
        self.validator = validator
    }

    /// The wrapped bus's capabilities.
    public var capabilities: EventBusCapabilities { base.capabilities }

    /// Validates, then publishes.
    @discardableResult
    public func publish(_ event: Event) async throws -> PublishReceipt {
        try validator.validate(event)
        return try await base.publish(event)
    }

    /// Forwards.
    public func subscribe(_ pattern: SubjectPattern, options: SubscriptionOptions) async throws -> EventSubscription {
        try await base.subscribe(pattern, options: options)
    }

    /// Validates, then requests.
    public func request(_ event: Event, timeout: Duration) async throws -> Event {
        try validator.validate(event)
        return try await base.request(event, timeout: timeout)
    }

    /// Forwards, so the wrapped bus's consume (and its middleware) wrap the handler; the pattern-taking
    /// `consume` subscribes through this bus, then comes here.
    public func consume(
        _ subscription: EventSubscription,
        options: SubscriptionOptions,
        handler: @escaping @Sendable (Delivery) async throws -> Void
    ) async throws {
        try await base.consume(subscription, options: options, handler: handler)
    }

    /// The wrapped bus's health.
    public func health() async -> EventBusHealth {
        await base.health()
    }

    /// Closes the wrapped bus.
    public func close() async {
        await base.close()
    }
}

/// Middleware that retries publishes and subscribes that fail with a retriable error, with exponential
/// backoff and jitter (see ``RetryPolicy``). A retried publish carries the same event id, so the backend's
/// duplicate window keeps it from being stored twice. A request is retried only after `noResponders`, the
/// one failure that proves nobody received it.
public struct RetryingEventBus: EventBus {
    /// The bus the operations go to.
    public let base: any EventBus
    /// When to retry and how long to wait.
    public let policy: RetryPolicy

    /// Wraps `base`; throws ``EventBusError/Code/invalidOption`` if `policy` is out of range.
    public init(_ base: any EventBus, policy: RetryPolicy = .init()) throws(EventBusError) {
        try policy.validate()
        self.base = base
        self.policy = policy
    }

    /// The wrapped bus's capabilities.
    public var capabilities: EventBusCapabilities { base.capabilities }

    /// Publishes, retrying retriable failures.
    @discardableResult
    public func publish(_ event: Event) async throws -> PublishReceipt {
        try await policy.run { try await base.publish(event) }
    }

    /// Subscribes, retrying retriable failures.
    public func subscribe(_ pattern: SubjectPattern, options: SubscriptionOptions) async throws -> EventSubscription {
        try await policy.run { try await base.subscribe(pattern, options: options) }
    }

    /// Requests, retrying only `noResponders` (responders may still be starting).
    public func request(_ event: Event, timeout: Duration) async throws -> Event {
        var onlyNoResponders = policy
        onlyNoResponders.shouldRetry = { error in (error as? EventBusError)?.code == .noResponders }
        return try await onlyNoResponders.run { try await base.request(event, timeout: timeout) }
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

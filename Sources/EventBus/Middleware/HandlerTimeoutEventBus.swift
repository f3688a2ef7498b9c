/// Middleware that bounds how long a `consume` handler may run. A handler still running after `timeout` is
/// cancelled and its delivery fails with ``EventBusError/Code/timeout``, so it is nak'd (or dead-lettered on
/// its last attempt) like any other failure. Cancellation is cooperative: a handler that ignores it is
/// still waited for, but its result no longer counts.
public struct HandlerTimeoutEventBus: EventBus {
    /// The bus the operations go to.
    public let base: any EventBus
    /// How long one handler call may take.
    public let timeout: Duration

    /// Wraps `base`; throws ``EventBusError/Code/invalidOption`` unless `timeout` is positive.
    public init(_ base: any EventBus, timeout: Duration) throws(EventBusError) {
        guard timeout > .zero else {
            throw EventBusError(.invalidOption, "handler timeout \(timeout) must be positive")
        }
        self.base = base
        self.timeout = timeout
    }

    /// The wrapped bus's capabilities.
    public var capabilities: EventBusCapabilities { base.capabilities }

    /// Forwards.
    @discardableResult
    public func publish(_ event: Event) async throws -> PublishReceipt {
        try await base.publish(event)
    }

    /// Forwards.
    public func subscribe(_ pattern: SubjectPattern, options: SubscriptionOptions) async throws -> EventSubscription {
        try await base.subscribe(pattern, options: options)
    }

    /// Forwards.
    public func request(_ event: Event, timeout: Duration) async throws -> Event {
        try await base.request(event, timeout: timeout)
    }

    /// Runs each handler call with the time limit. The pattern-taking `consume` comes here as well.
    public func consume(
        _ subscription: EventSubscription,
        options: SubscriptionOptions,
        handler: @escaping @Sendable (Delivery) async throws -> Void
    ) async throws {
        let timeout = timeout
        try await base.consume(subscription, options: options) { delivery in
            try await Self.run(handler, on: delivery, timeout: timeout)
        }
    }

    /// The wrapped bus's health.
    public func health() async -> EventBusHealth {
        await base.health()
    }

    /// Closes the wrapped bus.
    public func close() async {
        await base.close()
    }

    static func run(
        _ handler: @escaping @Sendable (Delivery) async throws -> Void,
        on delivery: Delivery,
        timeout: Duration
    ) async throws {
        try await withThrowingTaskGroup(of: Bool.self) { group in
            group.addTask(operation: {
                try await handler(delivery)
                return true
            })
            group.addTask(operation: {
                try await Task.sleep(for: timeout)
                return false
            })
            defer { group.cancelAll() }
            guard let finishedInTime = try await group.next() else { return }
            if !finishedInTime {
                throw EventBusError(
                    .timeout,
                    "handler for '\(delivery.subject)' (event \(delivery.event.id), attempt \(delivery.deliveryCount)) ran longer than \(timeout)"
                )
            }
        }
    }
}

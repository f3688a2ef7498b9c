/// Middleware that propagates correlation: while a `consume` handler runs, ``EventContext/current`` holds
/// the handled event, and every event published, requested or sent as a reply from inside the handler gets
/// its correlation id, the handled event's id as causation id, and its trace context (unless it sets them
/// itself).
public struct CorrelatingEventBus: EventBus {
    /// The bus the operations go to.
    public let base: any EventBus

    /// Wraps `base`.
    public init(_ base: any EventBus) {
        self.base = base
    }

    /// The wrapped bus's capabilities.
    public var capabilities: EventBusCapabilities { base.capabilities }

    /// Publishes `event` with the current handling context applied.
    @discardableResult
    public func publish(_ event: Event) async throws -> PublishReceipt {
        try await base.publish(Self.contextual(event))
    }

    /// Forwards.
    public func subscribe(_ pattern: SubjectPattern, options: SubscriptionOptions) async throws -> EventSubscription {
        try await base.subscribe(pattern, options: options)
    }

    /// Requests with the current handling context applied.
    public func request(_ event: Event, timeout: Duration) async throws -> Event {
        try await base.request(Self.contextual(event), timeout: timeout)
    }

    /// Runs `handler` with ``EventContext/current`` set to the delivered event; replies it sends get the
    /// context too. The pattern-taking `consume` comes here as well.
    public func consume(
        _ subscription: EventSubscription,
        options: SubscriptionOptions,
        handler: @escaping @Sendable (Delivery) async throws -> Void
    ) async throws {
        try await base.consume(subscription, options: options) { delivery in
            try await EventContext.withHandling(delivery.event) {
                try await handler(Self.correlatingReplies(of: delivery))
            }
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

    static func contextual(_ event: Event) -> Event {
        EventContext.current?.applied(to: event) ?? event
    }

    /// The same delivery, whose replies get the current context.
    static func correlatingReplies(of delivery: Delivery) -> Delivery {
        guard delivery.isRequest else { return delivery }
        return Delivery(
            event: delivery.event, deliveryCount: delivery.deliveryCount, sequence: delivery.sequence,
            subject: delivery.subject, isRequest: true,
            acknowledger: CorrelatingAcknowledger(base: delivery.acknowledger)
        )
    }
}

/// Applies the handling context to replies, and forwards everything else.
struct CorrelatingAcknowledger: DeliveryAcknowledger {
    let base: any DeliveryAcknowledger

    nonisolated(nonsending) func ack() async throws { try await base.ack() }
    nonisolated(nonsending) func nak(delay: Duration?) async throws { try await base.nak(delay: delay) }
    nonisolated(nonsending) func term(reason: String?) async throws { try await base.term(reason: reason) }
    nonisolated(nonsending) func inProgress() async throws { try await base.inProgress() }
    nonisolated(nonsending) func respond(_ reply: Event) async throws { try await base.respond(CorrelatingEventBus.contextual(reply)) }
}

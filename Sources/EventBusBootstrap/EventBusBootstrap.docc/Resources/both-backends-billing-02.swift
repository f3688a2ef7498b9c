import EventBus

public struct OrderCreated: Codable, Sendable {
    public var orderID: String
    public var amount: Int
}

public struct PaymentSettled: Codable, Sendable {
    public var orderID: String
    public var amount: Int
}

public struct BillingService: Sendable {
    let bus: any EventBus
    // Replicas share the group "billing": each order is handled by one of them.
    static let options = SubscriptionOptions(group: "billing", maxDeliver: 5, backoff: [.seconds(1), .seconds(10)])

    public init(bus: any EventBus) {
        self.bus = bus
    }

    /// Joins the group; once this returns, its consumer exists and no order published from then on is missed.
    public func subscribe() async throws -> EventSubscription {
        try await bus.subscribe("order.created", options: Self.options)
    }
}

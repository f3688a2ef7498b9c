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

    /// Handles orders until the bus closes or the task is cancelled.
    public func run(_ orders: EventSubscription) async throws {
        try await bus.consume(orders, as: OrderCreated.self, options: Self.options) { order, _ in
            try await charge(order)  // throwing naks with backoff; the 5th failure goes to deadletter.order.created
            try await bus.publish(
                PaymentSettled(orderID: order.orderID, amount: order.amount),
                subject: "payment.settled", type: "com.example.payment.settled", source: "/billing"
            )
        }  // returning from the handler acks the event
    }

    func charge(_ order: OrderCreated) async throws {
        // Call the payment provider here.
    }
}

import EventBus
import Testing

// The service from README.md ("A service in 30 lines"), kept here so the example keeps compiling and working.
struct OrderCreated: Codable, Sendable { var orderID: String; var amount: Int }
struct PaymentSettled: Codable, Sendable { var orderID: String; var amount: Int }

struct BillingService: Sendable {
    let bus: any EventBus
    static let options = SubscriptionOptions(group: "billing", maxDeliver: 5, backoff: [.seconds(1), .seconds(10)])

    func subscribe() async throws -> EventSubscription {
        try await bus.subscribe("order.created", options: Self.options)
    }

    func run(_ orders: EventSubscription) async throws {
        try await bus.consume(orders, as: OrderCreated.self, options: Self.options) { order, _ in
            try await charge(order)
            try await bus.publish(
                PaymentSettled(orderID: order.orderID, amount: order.amount),
                subject: "payment.settled", type: "com.example.payment.settled", source: "/billing"
            )
        }
    }

    func charge(_ order: OrderCreated) async throws {}
}

/// (The time limit cancels the test, ending a `next()` that waits for a payment that never comes.)
@Test(.timeLimit(.minutes(1)))
func readmeBillingServiceSettlesOrdersWithCorrelation() async throws {
    let recording = RecordingEventBus()
    let bus = recording.correlating()
    let billing = BillingService(bus: bus)
    // The readiness point: no group existed before, and nothing waits for the service's task to run.
    let orders = try await billing.subscribe()
    let settled = try await recording.subscribe("payment.settled", as: PaymentSettled.self)
    try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask(operation: { try await billing.run(orders) })
        let order = try Event(
            subject: "order.created", type: "com.example.order.created", source: "/shop",
            encoding: OrderCreated(orderID: "o-1", amount: 42), correlationID: "checkout-9"
        )
        try await recording.publish(order)
        var iterator = settled.makeAsyncIterator()
        let payment = try #require(try await iterator.next())
        #expect(payment.value.orderID == "o-1" && payment.value.amount == 42)
        #expect(payment.event.correlationID == "checkout-9")
        #expect(payment.event.causationID == order.id)
        #expect(recording.published(type: "com.example.payment.settled").count == 1)
        await recording.close()
        try await group.waitForAll()
    }
}

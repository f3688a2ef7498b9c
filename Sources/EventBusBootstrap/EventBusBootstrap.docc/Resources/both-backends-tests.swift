import EventBus
import Testing
@testable import Billing

@Test func billingSettlesAnOrder() async throws {
    let recording = RecordingEventBus()  // an in-memory bus that records what was published
    let billing = BillingService(bus: recording)
    let orders = try await billing.subscribe()
    let settled = try await recording.subscribe("payment.settled", as: PaymentSettled.self)
    try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await billing.run(orders) }
        try await recording.publish(
            OrderCreated(orderID: "o-1", amount: 42),
            subject: "order.created", type: "com.example.order.created", source: "/shop")

        var payments = settled.makeAsyncIterator()
        let payment = try #require(try await payments.next())
        #expect(payment.value.orderID == "o-1" && payment.value.amount == 42)
        #expect(recording.published(subject: "payment.settled").count == 1)

        await recording.close()  // ends the subscriptions, so billing.run returns
        try await group.waitForAll()
    }
}

import EventBus
import Testing

@Test func smokePublishSubscribeAck() async throws {
    let bus = try InMemoryEventBus()
    let subscription = try await bus.subscribe("order.*")
    for index in 0..<300 {
        try await bus.publish(Event(subject: "order.created", type: "t", source: "/s", data: [UInt8(index % 256)]))
    }
    var count = 0
    for try await delivery in subscription {
        try await delivery.ack()
        count += 1
        if count == 300 { break }
    }
    #expect(count == 300)
    await bus.close()
}

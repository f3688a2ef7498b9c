import EventBus
import Testing

@Suite("RecordingEventBus")
struct RecordingEventBusTests {
    @Test func recordsAcceptedPublishesButNotDuplicates() async throws {
        let bus = RecordingEventBus()
        let first = makeEvent("orders.created", "1")
        try await bus.publish(first)
        try await bus.publish(first)
        try await bus.publish(makeEvent("payments.settled", "2"))
        #expect(bus.published.map(\.subject) == ["orders.created", "payments.settled"])
        #expect(bus.published(subject: "orders.created").map(\.id) == [first.id])
        #expect(bus.published(type: "test.payments.settled").count == 1)
        await #expect(throws: EventBusError.self) { try await bus.publish(makeEvent("bad..subject")) }
        #expect(bus.published.count == 2, "a rejected publish was recorded")
        bus.reset()
        #expect(bus.published.isEmpty)
        await bus.close()
    }

    @Test func forwardsToTheWrappedBusSoSubscribersStillGetEvents() async throws {
        let memory = try InMemoryEventBus()
        let bus = RecordingEventBus(wrapping: memory)
        let subscription = try await memory.subscribe("orders.*")
        try await bus.publish(makeEvent("orders.created"))
        let delivered = try await take(1, from: subscription)
        #expect(delivered[0].event.subject == "orders.created")
        #expect(bus.capabilities == memory.capabilities)
        await bus.close()
        await #expect(throws: EventBusError.self) { try await memory.publish(makeEvent("orders.created")) }
    }

    @Test func recordsRequestsEvenUnanswered() async throws {
        let bus = RecordingEventBus()
        await #expect(throws: EventBusError.self) { _ = try await bus.request(makeEvent("rpc.nobody"), timeout: .seconds(1)) }
        #expect(bus.requests.map(\.subject) == ["rpc.nobody"])
        await bus.close()
    }

    @Test func keepsAtMostItsLimit() async throws {
        let bus = RecordingEventBus(limit: 3)
        for index in 0..<5 {
            try await bus.publish(makeEvent("n", "\(index)"))
        }
        #expect(bus.published.map { String(decoding: $0.data, as: UTF8.self) } == ["2", "3", "4"])
        #expect(bus.droppedCount == 2)
        await bus.close()
    }
}

@Suite("NoopEventBus")
struct NoopEventBusTests {
    @Test func acceptsPublishesDeliversNothingAndEndsOnClose() async throws {
        let bus = NoopEventBus()
        let first = try await bus.publish(makeEvent("a"))
        let second = try await bus.publish(makeEvent("a"))
        #expect(second.sequence == first.sequence + 1)
        await #expect(throws: EventBusError.self) { try await bus.publish(makeEvent("a.*")) }
        await #expect(throws: EventBusError.self) { _ = try await bus.request(makeEvent("a"), timeout: .seconds(1)) }
        let subscription = try await bus.subscribe("a")
        try await withThrowingTaskGroup(of: Int.self) { group in
            group.addTask(operation: {
                var count = 0
                for try await _ in subscription { count += 1 }
                return count
            })
            try await Task.sleep(for: .milliseconds(60))
            await bus.close()
            let delivered = try await group.next()
            #expect(delivered == 0)
        }
        await #expect(throws: EventBusError.self) { try await bus.publish(makeEvent("a")) }
    }

    @Test func closingTheSubscriptionEndsIt() async throws {
        let subscription = try await NoopEventBus().subscribe("a")
        await subscription.close()
        var iterator = subscription.makeAsyncIterator()
        #expect(try await iterator.next() == nil)
    }
}

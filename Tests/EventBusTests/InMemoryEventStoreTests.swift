import EventBus
import EventBusConformance
import Testing

/// The in-memory event store against the event store conformance suite, and its own limit.
@Suite("InMemoryEventStore")
struct InMemoryEventStoreTests {
    static let harness = EventStoreConformanceHarness(makeStore: { InMemoryEventStore() })

    @Test(arguments: EventStoreConformance.checks)
    func conformance(_ check: EventStoreConformance.Check) async throws {
        try await EventStoreConformance.run(check, harness: Self.harness)
    }

    @Test func anAppendPastTheLimitIsRefusedWhole() async throws {
        let store = InMemoryEventStore(maxEventsPerAggregate: 3)
        let order = try AggregateID(category: "order", id: "full")
        try await store.append([makeEvent("order.a"), makeEvent("order.a")], to: order, expectedVersion: .noEvents)
        do {
            try await store.append([makeEvent("order.a"), makeEvent("order.a")], to: order, expectedVersion: .exactly(2))
            Issue.record("an append past the limit was accepted")
        } catch {
            #expect(error.code == .limitReached)
            #expect(error.message.contains("limit of 3"), "\(error.message)")
        }
        #expect(try await store.version(of: order) == 2)
        try await store.append([makeEvent("order.a")], to: order, expectedVersion: .exactly(2))
    }
}

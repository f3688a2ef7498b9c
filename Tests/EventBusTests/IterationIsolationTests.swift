import EventBus
import NATSTestSupport
import Testing

/// `next()` and the settling calls run on the caller's executor (`nonisolated(nonsending)`): an
/// actor that iterates a subscription and acknowledges each delivery stays on the actor, instead
/// of hopping to the pool and back for every call.
@Suite("Iterating from an actor")
struct IterationIsolationTests {
    @Test func anActorThatIteratesAndAcknowledgesStaysOnItsExecutor() async throws {
        let bus = try InMemoryEventBus()
        let count = 200
        for index in 0..<count {
            try await bus.publish(makeEvent("isolation.work", "\(index)"))
        }
        let subscription = try await bus.subscribe("isolation.work", options: .init(group: "readers", start: .all))
        let (received, jobs) = try await CountingActor().run { _ in
            var iterator = subscription.makeAsyncIterator()
            var texts: [String] = []
            while texts.count < count, let delivery = try await iterator.next() {
                texts.append(String(decoding: delivery.event.data, as: UTF8.self))
                try await delivery.ack()
            }
            return texts
        }
        #expect(received == (0..<count).map { "\($0)" })
        // Entering the actor is one job; calls that left it would add one for every return, at
        // least 2 per delivery (400).
        #expect(jobs < 20, "\(jobs) jobs enqueued on the actor for \(count) deliveries")
        await subscription.close()
        await bus.close()
    }
}

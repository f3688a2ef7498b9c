import EventBus
import Testing

@Suite("EventBusHealth")
struct EventBusHealthTests {
    @Test func theInMemoryBusReportsItsSubscriptionsWhileOpenAndClosedAfter() async throws {
        let bus = try InMemoryEventBus()
        let subscription = try await bus.subscribe("orders.>", options: .init(group: "billing"))
        try await bus.publish(Event(subject: "orders.created", type: "t", source: "/test"))
        let health = await bus.health()
        #expect(health.backend == "memory")
        #expect(health.connection == .inProcess)
        #expect(health.isReady)
        let entry = try #require(health.subscriptions.first)
        #expect(entry.pattern == "orders.>")
        #expect(entry.group == "billing")
        #expect(entry.state == .running)
        #expect(entry.pending != nil)
        _ = subscription
        await bus.close()
        let closed = await bus.health()
        #expect(closed.connection == .closed)
        #expect(closed.status == .unhealthy)
        #expect(!closed.isReady)
    }

    @Test func middlewareForwardsTheWrappedBusHealth() async throws {
        let bus = try InMemoryEventBus()
        let wrapped = RecordingEventBus(wrapping: bus)
        let subscription = try await bus.subscribe("a.b", options: .init())
        #expect((await wrapped.health()).subscriptions.count == 1)
        await subscription.close()
    }

    @Test func statusFollowsTheConnectionAndTheWorstSubscription() {
        var health = EventBusHealth(backend: "x", connection: .connected, subscriptions: [.init(pattern: "a", state: .running)])
        #expect(health.status == .healthy)
        health.subscriptions.append(.init(pattern: "b", state: .stalled))
        #expect(health.status == .degraded)
        health.subscriptions = [.init(pattern: "a", state: .running)]
        health.connection = .reconnecting
        #expect(health.status == .degraded)
        health.connection = .closed
        #expect(health.status == .unhealthy)
    }

    @Test func jsonEscapesWhatItQuotes() {
        let health = EventBusHealth(
            backend: "jetstream", connection: .connected, server: "nats://h:4222",
            subscriptions: [.init(pattern: "a.>", group: "g\"1", state: .running, lastMessageAge: .milliseconds(1500), pending: 3, lastError: "bad\nline\u{1B}")])
        let json = health.json
        #expect(json.contains(#""group":"g\"1""#))
        #expect(json.contains(#""lastError":"bad\nline\u001b""#))
        #expect(json.contains(#""lastMessageAgeSeconds":1.5"#))
        #expect(json.contains(#""lastHeartbeatAgeSeconds":null"#))
        #expect(json.contains(#""status":"healthy","ready":true"#))
    }
}

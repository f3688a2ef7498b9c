import EventBus
import EventBusConformance
import Synchronization
import Testing

/// A bus that makes each subscription's consumer only when its iteration starts, as a backend whose
/// `subscribe` returned too early would: what is published in between is lost to a new group.
final class LazyConsumerBus: EventBus {
    let base: InMemoryEventBus

    init(base: InMemoryEventBus) {
        self.base = base
    }

    var capabilities: EventBusCapabilities { base.capabilities }

    func publish(_ event: Event) async throws -> PublishReceipt {
        try await base.publish(event)
    }

    func subscribe(_ pattern: SubjectPattern, options: SubscriptionOptions) async throws -> EventSubscription {
        EventSubscription(LazySource(base: base, pattern: pattern, options: options))
    }

    func request(_ event: Event, timeout: Duration) async throws -> Event {
        try await base.request(event, timeout: timeout)
    }

    func close() async {
        await base.close()
    }

    final class LazySource: DeliverySource {
        let base: InMemoryEventBus
        let pattern: SubjectPattern
        let options: SubscriptionOptions
        let made = Mutex<EventSubscription?>(nil)
        let closed = Atomic<Bool>(false)

        init(base: InMemoryEventBus, pattern: SubjectPattern, options: SubscriptionOptions) {
            self.base = base
            self.pattern = pattern
            self.options = options
        }

        func makeDeliveryIterator() -> any DeliveryIterator {
            Iterator(source: self)
        }

        func close() async {
            closed.store(true, ordering: .relaxed)
            await made.withLock { $0 }?.close()
        }

        struct Iterator: DeliveryIterator {
            let source: LazySource
            var inner: EventSubscription.Iterator?

            mutating func next() async throws -> Delivery? {
                if inner == nil {
                    guard !source.closed.load(ordering: .relaxed) else { return nil }
                    let subscription = try await source.base.subscribe(source.pattern, options: source.options)
                    source.made.withLock { $0 = subscription }
                    inner = subscription.makeAsyncIterator()
                }
                return try await inner?.next()
            }
        }
    }
}

@Suite("Conformance checks catch what they are for")
struct ConformanceCheckBitesTests {
    static let harness = EventBusConformanceHarness(
        timing: ConformanceTiming(ackWait: .milliseconds(200), quietPeriod: .milliseconds(50), stepTimeout: .seconds(2)),
        makeBus: { LazyConsumerBus(base: try InMemoryEventBus()) },
        connect: { bus in LazyConsumerBus(base: (bus as! LazyConsumerBus).base.newClient()) }
    )

    @Test func theReadinessCheckFailsWhenTheConsumerIsMadeLazily() async throws {
        let check = try #require(EventBusConformance.checks.first { $0.name == "consumeSubscriptionIsReady" })
        await withKnownIssue("a lazily made consumer misses the events published before its task ran") {
            try await EventBusConformance.run(check, harness: Self.harness, size: .short)
        }
    }

    @Test func theReadinessCheckPassesOnTheInMemoryBus() async throws {
        let check = try #require(EventBusConformance.checks.first { $0.name == "consumeSubscriptionIsReady" })
        var harness = Self.harness
        harness.makeBus = { try InMemoryEventBus() }
        harness.connect = { bus in (bus as! InMemoryEventBus).newClient() }
        try await EventBusConformance.run(check, harness: harness, size: .short)
    }
}

/// A bus whose deliveries ignore `inProgress()`, as a backend that never restarts the ack wait would.
final class NoProgressBus: EventBus {
    let base: InMemoryEventBus

    init(base: InMemoryEventBus) {
        self.base = base
    }

    var capabilities: EventBusCapabilities { base.capabilities }

    func publish(_ event: Event) async throws -> PublishReceipt {
        try await base.publish(event)
    }

    func subscribe(_ pattern: SubjectPattern, options: SubscriptionOptions) async throws -> EventSubscription {
        EventSubscription(Source(base: try await base.subscribe(pattern, options: options)))
    }

    func request(_ event: Event, timeout: Duration) async throws -> Event {
        try await base.request(event, timeout: timeout)
    }

    func close() async {
        await base.close()
    }

    struct Source: DeliverySource {
        let base: EventSubscription

        func makeDeliveryIterator() -> any DeliveryIterator {
            Iterator(inner: base.makeAsyncIterator())
        }

        func close() async {
            await base.close()
        }

        struct Iterator: DeliveryIterator {
            var inner: EventSubscription.Iterator

            mutating func next() async throws -> Delivery? {
                guard let delivery = try await inner.next() else { return nil }
                return Delivery(
                    event: delivery.event, deliveryCount: delivery.deliveryCount, sequence: delivery.sequence,
                    subject: delivery.subject, isRequest: delivery.isRequest,
                    acknowledger: IgnoringProgress(base: delivery.acknowledger))
            }
        }
    }

    struct IgnoringProgress: DeliveryAcknowledger {
        let base: any DeliveryAcknowledger

        func ack() async throws { try await base.ack() }
        func nak(delay: Duration?) async throws { try await base.nak(delay: delay) }
        func term(reason: String?) async throws { try await base.term(reason: reason) }
        func inProgress() async throws {}
        func respond(_ reply: Event) async throws { try await base.respond(reply) }
    }
}

extension ConformanceCheckBitesTests {
    @Test func theLongHandlerCheckFailsWhenInProgressDoesNothing() async throws {
        let check = try #require(EventBusConformance.checks.first { $0.name == "longHandlerKeepsItsDelivery" })
        var harness = Self.harness
        harness.makeBus = { NoProgressBus(base: try InMemoryEventBus()) }
        harness.connect = { bus in NoProgressBus(base: (bus as! NoProgressBus).base.newClient()) }
        await withKnownIssue("without in-progress the long handler's event is delivered again") {
            try await EventBusConformance.run(check, harness: harness, size: .short)
        }
    }
}

import Synchronization

/// An ``EventBus`` for service tests: it forwards everything to another bus (by default a fresh
/// ``InMemoryEventBus``) and records every event that was published or requested, so a test can assert
/// what a service sent.
public final class RecordingEventBus: EventBus {
    /// The bus everything is forwarded to.
    public let base: any EventBus
    private let records: Mutex<Records>
    /// How many events are kept at most; past it the oldest are dropped (and counted in ``droppedCount``).
    public let limit: Int

    private struct Records {
        var published: [Event] = []
        var requests: [Event] = []
        var dropped = 0
    }

    /// Records what passes through to `base`.
    public init(wrapping base: any EventBus, limit: Int = 100_000) {
        self.base = base
        self.limit = max(1, limit)
        self.records = Mutex(Records())
    }

    /// Records what passes through to a new ``InMemoryEventBus`` with the default configuration.
    public convenience init(limit: Int = 100_000) {
        self.init(wrapping: InMemoryEventBus(defaultConfigurationLogger: .init(label: "eventbus.recording")), limit: limit)
    }

    /// The wrapped bus's capabilities.
    public var capabilities: EventBusCapabilities { base.capabilities }

    /// Every event the wrapped bus accepted, in the order the publishes returned.
    public var published: [Event] {
        records.withLock { $0.published }
    }

    /// Every request sent (whether or not it was answered).
    public var requests: [Event] {
        records.withLock { $0.requests }
    }

    /// Events dropped from the records because more than ``limit`` were kept.
    public var droppedCount: Int {
        records.withLock { $0.dropped }
    }

    /// The recorded published events on `subject`.
    public func published(subject: String) -> [Event] {
        published.filter { $0.subject == subject }
    }

    /// The recorded published events of CloudEvents `type`.
    public func published(type: String) -> [Event] {
        published.filter { $0.type == type }
    }

    /// Forgets everything recorded so far.
    public func reset() {
        records.withLock { $0 = Records() }
    }

    /// Forwards and, once the wrapped bus accepted the event (and it was not a duplicate), records it.
    @discardableResult
    public func publish(_ event: Event) async throws -> PublishReceipt {
        let receipt = try await base.publish(event)
        if !receipt.duplicate {
            records.withLock { records in
                Self.append(event, to: &records.published, dropped: &records.dropped, limit: limit)
            }
        }
        return receipt
    }

    /// Forwards.
    public func subscribe(_ pattern: SubjectPattern, options: SubscriptionOptions) async throws -> EventSubscription {
        try await base.subscribe(pattern, options: options)
    }

    /// Records the request, then forwards it.
    public func request(_ event: Event, timeout: Duration) async throws -> Event {
        records.withLock { records in
            Self.append(event, to: &records.requests, dropped: &records.dropped, limit: limit)
        }
        return try await base.request(event, timeout: timeout)
    }

    /// Forwards, so the wrapped bus's consume (and its middleware) wrap the handler; the pattern-taking
    /// `consume` subscribes through this bus, then comes here.
    public func consume(
        _ subscription: EventSubscription,
        options: SubscriptionOptions,
        handler: @escaping @Sendable (Delivery) async throws -> Void
    ) async throws {
        try await base.consume(subscription, options: options, handler: handler)
    }

    /// The wrapped bus's health.
    public func health() async -> EventBusHealth {
        await base.health()
    }

    /// Closes the wrapped bus.
    public func close() async {
        await base.close()
    }

    private static func append(_ event: Event, to list: inout [Event], dropped: inout Int, limit: Int) {
        if list.count >= limit {
            list.removeFirst()
            dropped += 1
        }
        list.append(event)
    }
}

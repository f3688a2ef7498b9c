import Synchronization

/// An ``EventBus`` that accepts every publish and delivers nothing, for code paths that must publish but
/// where no one listens (tools, dry runs). Its subscriptions end only when it is closed; requests fail with
/// `noResponders`.
public final class NoopEventBus: EventBus {
    private let state = Mutex<(closed: Bool, sequence: UInt64)>((false, 0))

    /// Creates a bus that drops everything.
    public init() {}

    /// Nothing beyond the basic contract.
    public var capabilities: EventBusCapabilities { [] }

    /// Validates the event and returns a receipt with a rising sequence; stores nothing.
    @discardableResult
    public func publish(_ event: Event) async throws -> PublishReceipt {
        try event.validateForPublish()
        let (closed, sequence) = state.withLock { state in
            if !state.closed { state.sequence += 1 }
            return (state.closed, state.sequence)
        }
        if closed {
            throw EventBusError(.closed, "the no-op event bus was closed")
        }
        return PublishReceipt(sequence: sequence, duplicate: false, stream: "noop")
    }

    /// A subscription that delivers nothing and ends when the bus or it is closed (or the task is cancelled).
    public func subscribe(_ pattern: SubjectPattern, options: SubscriptionOptions) async throws -> EventSubscription {
        try options.validate()
        if state.withLock({ $0.closed }) {
            throw EventBusError(.closed, "the no-op event bus was closed")
        }
        return EventSubscription(NoopDeliverySource(bus: self))
    }

    /// Always fails with `noResponders`: nobody listens here.
    public func request(_ event: Event, timeout: Duration) async throws -> Event {
        try event.validateForPublish()
        throw EventBusError(.noResponders, "request on '\(event.subject)': the no-op event bus has no subscribers")
    }

    /// Refuses further publishes and ends every subscription.
    public func close() async {
        state.withLock { $0.closed = true }
    }

    var isClosed: Bool {
        state.withLock { $0.closed }
    }
}

/// The subscription of a ``NoopEventBus``: it only waits for the end.
struct NoopDeliverySource: DeliverySource {
    let bus: NoopEventBus
    let closed = ClosedFlag()

    /// Shared between a source and its iterators, so `close()` reaches iterators already made.
    final class ClosedFlag: Sendable {
        let value = Atomic<Bool>(false)
    }

    func makeDeliveryIterator() -> any DeliveryIterator {
        Iterator(source: self)
    }

    func close() async {
        closed.value.store(true, ordering: .relaxed)
    }

    struct Iterator: DeliveryIterator {
        let source: NoopDeliverySource

        /// Polls for the end every 50 ms: there is nothing to deliver, so there is no one to wake it.
        nonisolated(nonsending) mutating func next() async throws -> Delivery? {
            while !source.bus.isClosed && !source.closed.value.load(ordering: .relaxed) {
                do {
                    try await Task.sleep(for: .milliseconds(50))
                } catch {
                    return nil
                }
            }
            return nil
        }
    }
}

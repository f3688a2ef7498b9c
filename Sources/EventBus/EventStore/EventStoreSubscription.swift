/// An aggregate's events from a version on: first the stored ones (catch-up), then each new one as
/// it is appended (live), in version order, with no gap and no repeat at the switch.
///
/// Iterate it once. Iteration ends (returns `nil`) when the task is cancelled, after ``cancel()``, or
/// when the store closes; it throws when the backend fails in a way it cannot recover from. Nothing is
/// buffered beyond what the backend's own bounded delivery holds: the in-memory store reads straight
/// from its log, JetStream from an ordered consumer with flow control.
public struct EventStoreSubscription: AsyncSequence, Sendable {
    /// Each recorded event.
    public typealias Element = RecordedEvent
    /// Why iteration stopped early.
    public typealias Failure = EventStoreError

    /// What a backend provides: the next event, and a way to stop.
    public struct Source: Sendable {
        let next: @Sendable () async throws(EventStoreError) -> RecordedEvent?
        let cancel: @Sendable () async -> Void

        /// Creates a source from its two operations. `next` is called by one iterator at a time.
        public init(
            next: @escaping @Sendable () async throws(EventStoreError) -> RecordedEvent?,
            cancel: @escaping @Sendable () async -> Void
        ) {
            self.next = next
            self.cancel = cancel
        }
    }

    private let source: Source

    /// Wraps a backend's source.
    public init(_ source: Source) {
        self.source = source
    }

    /// Stops the subscription: the iterator's next call returns `nil`, and the backend releases what
    /// it held (a JetStream consumer).
    public func cancel() async {
        await source.cancel()
    }

    /// The iterator.
    public func makeAsyncIterator() -> Iterator {
        Iterator(source: source)
    }

    /// Iterates the events in version order.
    public struct Iterator: AsyncIteratorProtocol, Sendable {
        let source: Source

        /// The next event; `nil` when the subscription ended.
        public mutating func next() async throws(EventStoreError) -> RecordedEvent? {
            try await source.next()
        }

        /// The next event; `nil` when the subscription ended.
        public mutating func next(isolation actor: isolated (any Actor)?) async throws(EventStoreError) -> RecordedEvent? {
            try await source.next()
        }
    }
}

/// The deliveries of one subscription, as an `AsyncSequence`.
///
/// The sequence ends (returns `nil`) when the subscription or its bus is closed, or when the task iterating
/// it is cancelled. Iterate it from one task at a time. ``close()`` may be called from anywhere, also while
/// another task is waiting in `next()`.
public struct EventSubscription: AsyncSequence, Sendable {
    /// Each element is one delivery to settle.
    public typealias Element = Delivery
    /// A backend may end the sequence with an error it cannot recover from.
    public typealias Failure = any Error

    private let source: any DeliverySource

    /// Wraps a backend's delivery source; backends call this.
    public init(_ source: any DeliverySource) {
        self.source = source
    }

    /// Starts iterating.
    public func makeAsyncIterator() -> Iterator {
        Iterator(base: source.makeDeliveryIterator())
    }

    /// Stops the subscription: no new deliveries, and every iterator ends. Deliveries already handed out may
    /// still be settled; a group's other members take over the rest.
    public func close() async {
        await source.close()
    }

    /// Iterates deliveries.
    public struct Iterator: AsyncIteratorProtocol {
        var base: any DeliveryIterator

        /// The next delivery, or `nil` once the subscription has ended.
        public mutating func next() async throws -> Delivery? {
            try await base.next()
        }
    }
}

/// A backend's subscription, wrapped by ``EventSubscription``.
public protocol DeliverySource: Sendable {
    /// Creates an iterator over the subscription's deliveries.
    func makeDeliveryIterator() -> any DeliveryIterator
    /// Closes the subscription; see ``EventSubscription/close()``.
    func close() async
}

/// A backend's iterator of deliveries.
public protocol DeliveryIterator {
    /// The next delivery, or `nil` once the subscription has ended.
    mutating func next() async throws -> Delivery?
}

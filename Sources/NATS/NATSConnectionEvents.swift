/// The events of one connection, as an `AsyncSequence`. Each access to
/// ``NATSConnection/events`` makes a new, independent listener that sees the events from then on.
/// The sequence ends after ``NATSConnectionEvent/closed``.
///
/// Events are rare (a handful per reconnect), so a plain `AsyncStream` carries them; each listener
/// keeps the newest 1,024 undelivered events.
public struct NATSConnectionEvents: AsyncSequence, Sendable {
    public typealias Element = NATSConnectionEvent
    public typealias Failure = Never

    let stream: AsyncStream<NATSConnectionEvent>

    /// Creates an iterator.
    public func makeAsyncIterator() -> Iterator {
        Iterator(base: stream.makeAsyncIterator())
    }

    /// Iterates over the events.
    public struct Iterator: AsyncIteratorProtocol {
        var base: AsyncStream<NATSConnectionEvent>.Iterator

        /// The next event, or `nil` after the connection closed.
        public mutating func next() async -> NATSConnectionEvent? {
            await base.next()
        }

        /// The next event, or `nil` after the connection closed.
        public mutating func next(isolation actor: isolated (any Actor)?) async -> NATSConnectionEvent? {
            await base.next(isolation: actor)
        }
    }
}

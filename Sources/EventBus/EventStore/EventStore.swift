/// An append-only log of events per aggregate, for event sourcing and audit: append with an
/// optimistic concurrency check, load an aggregate to rebuild its state, query, count, follow new
/// events live, and keep snapshots.
///
/// Two implementations hold to one conformance suite (`EventStoreConformance`):
/// ``InMemoryEventStore`` for tests and development, and `JetStreamEventStore` (module
/// `EventBusJetStream`), where each aggregate is one subject of a JetStream stream and the server
/// itself checks the expected version. Events are the same ``Event`` values the bus carries.
///
/// ```swift
/// let order = try AggregateID(category: "order", id: "o-1042")
/// try await store.append([placed], to: order, expectedVersion: .noEvents)
/// let history = try await store.load(order)
/// do {
///     try await store.append([billed], to: order, expectedVersion: .exactly(history.last!.version))
/// } catch where error.code == .conflict {
///     // Someone else wrote first: reload (error.currentVersion says where it is now) and decide.
/// }
/// ```
public protocol EventStore: Sendable {
    /// Appends events to an aggregate's history, all or nothing.
    ///
    /// The events get the versions after the aggregate's current one, in order. With
    /// `expectedVersion` other than `.any` the append is refused, with nothing stored, when the
    /// aggregate is not at that version.
    ///
    /// Retrying is safe: when an earlier attempt with the same event ids was stored (its outcome was
    /// unknown: a timeout, a dropped connection), the retry returns that append's result with
    /// ``AppendResult/wasAlreadyStored`` set instead of storing the events twice or reporting a
    /// conflict.
    ///
    /// - Throws: ``EventStoreError/Code/conflict`` with ``EventStoreError/currentVersion``;
    ///   ``EventStoreError/Code/invalidArgument`` for an empty batch or one over the backend's limit;
    ///   ``EventStoreError/Code/invalidEvent`` for an empty or repeated event id;
    ///   ``EventStoreError/Code/limitReached`` when the aggregate is full;
    ///   ``EventStoreError/Code/timeout`` when the outcome is unknown (retry with the same events).
    @discardableResult
    func append(_ events: [Event], to aggregate: AggregateID, expectedVersion: ExpectedVersion) async throws(EventStoreError)
        -> AppendResult

    /// The aggregate's events from `version` (1 = all) to its current last, in version order; empty
    /// for an aggregate with no events.
    func load(_ aggregate: AggregateID, from version: UInt64) async throws(EventStoreError) -> [RecordedEvent]

    /// The aggregate's current version: the number of events appended to it (0 for none).
    func version(of aggregate: AggregateID) async throws(EventStoreError) -> UInt64

    /// The stored events that match the query, oldest first, at most `query.limit`.
    func query(_ query: EventQuery) async throws(EventStoreError) -> [RecordedEvent]

    /// How many stored events match the query (its `limit` is ignored).
    func count(_ query: EventQuery) async throws(EventStoreError) -> Int

    /// The aggregate's events from `version` on: those stored now, then each one appended later.
    func subscribe(to aggregate: AggregateID, from version: UInt64) async throws(EventStoreError) -> EventStoreSubscription

    /// Saves a snapshot; it replaces the aggregate's previous one.
    ///
    /// - Throws: ``EventStoreError/Code/invalidArgument`` when the snapshot's version is 0 or past the
    ///   aggregate's current version.
    func saveSnapshot(_ snapshot: AggregateSnapshot) async throws(EventStoreError)

    /// The aggregate's latest snapshot, or `nil`.
    func snapshot(of aggregate: AggregateID) async throws(EventStoreError) -> AggregateSnapshot?

    /// The aggregate's latest snapshot and the events after it: what rebuilding its state needs.
    /// A backend that knows where the snapshot's version sits reads only the events after it.
    func loadFromSnapshot(_ aggregate: AggregateID) async throws(EventStoreError) -> LoadedAggregate

    /// Removes the aggregate's events and snapshot. Its version is 0 again afterwards, so a writer
    /// still holding an older version gets a conflict. To keep the history and mark the end, append
    /// a final event of your own instead (a tombstone such as `order.closed`).
    ///
    /// - Returns: how many events were removed.
    @discardableResult
    func delete(_ aggregate: AggregateID) async throws(EventStoreError) -> UInt64

    /// Closes the store: running subscriptions end, later calls fail with ``EventStoreError/Code/closed``.
    func close() async
}

extension EventStore {
    /// The aggregate's whole history.
    public func load(_ aggregate: AggregateID) async throws(EventStoreError) -> [RecordedEvent] {
        try await load(aggregate, from: 1)
    }

    /// The aggregate's latest snapshot and the events after it, read with ``snapshot(of:)`` and
    /// ``load(_:from:)``.
    public func loadFromSnapshot(_ aggregate: AggregateID) async throws(EventStoreError) -> LoadedAggregate {
        let snapshot = try await snapshot(of: aggregate)
        let events = try await load(aggregate, from: (snapshot?.version ?? 0) + 1)
        return LoadedAggregate(snapshot: snapshot, events: events)
    }
}

/// The checks every ``EventStore`` makes before anything is stored.
package enum EventStoreRules {
    /// The most events one append may carry (JetStream's atomic batch limit).
    package static let maxBatch = 1_000

    package static func checkAppend(_ events: [Event], to aggregate: AggregateID) throws(EventStoreError) {
        guard !events.isEmpty else {
            throw EventStoreError(.invalidArgument, "append to \(aggregate) has no events; an append needs 1 to \(maxBatch)")
        }
        guard events.count <= maxBatch else {
            throw EventStoreError(
                .invalidArgument, "append to \(aggregate) has \(events.count) events; one append takes at most \(maxBatch) (split it)")
        }
        var seen = Set<String>()
        for event in events {
            guard !event.id.isEmpty else {
                throw EventStoreError(.invalidEvent, "an event appended to \(aggregate) has an empty id")
            }
            guard seen.insert(event.id).inserted else {
                throw EventStoreError(
                    .invalidEvent, "event id '\(TerminalText.escaped(event.id))' appears twice in one append to \(aggregate); ids must be unique")
            }
            do {
                try event.validateForPublish()
            } catch {
                throw EventStoreError(.invalidEvent, "event '\(TerminalText.escaped(event.id))' for \(aggregate): \(error.message)", underlying: error)
            }
        }
    }

    package static func checkVersion(_ version: UInt64, _ what: String) throws(EventStoreError) {
        guard version >= 1 else {
            throw EventStoreError(.invalidArgument, "\(what) 0 is invalid; versions start at 1")
        }
    }
}

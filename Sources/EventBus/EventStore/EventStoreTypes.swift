#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// What an append expects the aggregate's version to be; the store refuses the append with
/// ``EventStoreError/Code/conflict`` otherwise.
public enum ExpectedVersion: Sendable, Hashable, CustomStringConvertible {
    /// No check: the events go after whatever is there. Concurrent appends still get distinct,
    /// gap-free versions.
    case any
    /// The aggregate must have no events yet (version 0): the first append of a new aggregate.
    case noEvents
    /// The aggregate's last event must have exactly this version (the version the caller loaded).
    case exactly(UInt64)

    /// `any`, `no events` or `version N`.
    public var description: String {
        switch self {
        case .any: "any"
        case .noEvents: "no events"
        case .exactly(let version): "version \(version)"
        }
    }

    /// Whether an aggregate at `current` meets the expectation.
    public func isMet(by current: UInt64) -> Bool {
        switch self {
        case .any: true
        case .noEvents: current == 0
        case .exactly(let version): current == version
        }
    }
}

/// An event as the store holds it: the event, its aggregate, its version there and when it was stored.
public struct RecordedEvent: Sendable, Equatable {
    /// The event, as it was appended.
    public var event: Event
    /// The aggregate whose history it belongs to.
    public var aggregate: AggregateID
    /// Its place in the aggregate's history: 1 for the first event, with no gaps.
    public var version: UInt64
    /// Its place in the whole store (a JetStream stream sequence; the in-memory store's append
    /// counter): increasing across all aggregates, with gaps.
    public var position: UInt64
    /// When the store stored it.
    public var recordedAt: Date

    /// Creates a recorded event.
    public init(event: Event, aggregate: AggregateID, version: UInt64, position: UInt64, recordedAt: Date) {
        self.event = event
        self.aggregate = aggregate
        self.version = version
        self.position = position
        self.recordedAt = recordedAt
    }
}

/// What a successful append stored.
public struct AppendResult: Sendable, Hashable {
    /// The version of the first event appended.
    public var firstVersion: UInt64
    /// The aggregate's version after the append: the version of the last event appended.
    public var version: UInt64
    /// The store position of the last event appended.
    public var position: UInt64
    /// True when these events were already stored by an earlier attempt of the same append (same
    /// event ids at the same versions): nothing was stored twice.
    public var wasAlreadyStored: Bool

    /// Creates a result.
    public init(firstVersion: UInt64, version: UInt64, position: UInt64, wasAlreadyStored: Bool = false) {
        self.firstVersion = firstVersion
        self.version = version
        self.position = position
        self.wasAlreadyStored = wasAlreadyStored
    }
}

/// A state saved at a version, so that loading an aggregate can start from it instead of from its
/// first event.
public struct AggregateSnapshot: Sendable, Equatable {
    /// The aggregate.
    public var aggregate: AggregateID
    /// The version the state was computed at: it includes events 1 through `version`.
    public var version: UInt64
    /// The state, in whatever encoding the application chose.
    public var state: [UInt8]
    /// When the snapshot was taken.
    public var takenAt: Date

    /// Creates a snapshot.
    public init(aggregate: AggregateID, version: UInt64, state: [UInt8], takenAt: Date = Date()) {
        self.aggregate = aggregate
        self.version = version
        self.state = state
        self.takenAt = takenAt
    }
}

/// An aggregate loaded from its latest snapshot and the events after it.
public struct LoadedAggregate: Sendable, Equatable {
    /// The snapshot the load started from, if there was one.
    public var snapshot: AggregateSnapshot?
    /// The events after the snapshot (all of them without one), in version order.
    public var events: [RecordedEvent]

    /// Creates a loaded aggregate.
    public init(snapshot: AggregateSnapshot?, events: [RecordedEvent]) {
        self.snapshot = snapshot
        self.events = events
    }

    /// The aggregate's version: the last event's, else the snapshot's, else 0.
    public var version: UInt64 {
        events.last?.version ?? snapshot?.version ?? 0
    }
}

/// Which stored events a ``EventStore/query(_:)`` or ``EventStore/count(_:)`` returns. Every set
/// criterion must hold.
///
/// On JetStream a query reads the messages of its category (or of the whole store) from the first
/// at or after ``from`` on, and checks the rest of the criteria on the client: its cost grows with
/// the events in that range, not with the matches. Narrow it with a category and a start time.
public struct EventQuery: Sendable, Hashable {
    /// The most events one query returns.
    public static let maxLimit = 100_000

    /// Only this category's aggregates; `nil` for all.
    public var category: String?
    /// Only events with one of these types; `nil` for any type.
    public var types: Set<String>?
    /// Only events stored at or after this time.
    public var from: Date?
    /// Only events stored before this time.
    public var until: Date?
    /// Only events with this correlation id.
    public var correlationID: String?
    /// At most this many events, oldest first (1 to ``maxLimit``).
    public var limit: Int

    /// Creates a query.
    public init(
        category: String? = nil, types: Set<String>? = nil, from: Date? = nil, until: Date? = nil,
        correlationID: String? = nil, limit: Int = 10_000
    ) {
        self.category = category
        self.types = types
        self.from = from
        self.until = until
        self.correlationID = correlationID
        self.limit = limit
    }

    /// Checks the query's values.
    ///
    /// - Throws: ``EventStoreError/Code/invalidArgument`` or ``EventStoreError/Code/invalidAggregate``
    ///   naming the value and the rule.
    public func validate() throws(EventStoreError) {
        if let category { try AggregateID.check(category, part: "category") }
        guard (1...Self.maxLimit).contains(limit) else {
            throw EventStoreError(.invalidArgument, "query limit \(limit) must be between 1 and \(Self.maxLimit)")
        }
        if let from, let until, until <= from {
            throw EventStoreError(.invalidArgument, "query range is empty: until (\(until)) is not after from (\(from))")
        }
        if let types, types.isEmpty {
            throw EventStoreError(.invalidArgument, "query types is an empty set, which matches nothing; use nil for any type")
        }
    }

    /// Whether a recorded event meets every criterion.
    public func matches(_ recorded: RecordedEvent) -> Bool {
        if let category, recorded.aggregate.category != category { return false }
        if let types, !types.contains(recorded.event.type) { return false }
        if let from, recorded.recordedAt < from { return false }
        if let until, recorded.recordedAt >= until { return false }
        if let correlationID, recorded.event.correlationID != correlationID { return false }
        return true
    }
}

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Synchronization

/// An ``EventStore`` in this process's memory, for tests and development; held to the same
/// conformance suite as the JetStream store.
///
/// All state sits behind one lock; subscriptions read straight from the aggregate's history and wait
/// for the next append when they reach its end, so nothing is buffered per subscriber.
public final class InMemoryEventStore: EventStore {
    private struct Waiter {
        let aggregate: AggregateID
        let continuation: CheckedContinuation<Void, Never>
    }

    private struct History {
        var events: [RecordedEvent] = []
        /// Event id → version, for recognising a retried append.
        var versionsByID: [String: UInt64] = [:]
    }

    private struct State {
        var histories: [AggregateID: History] = [:]
        /// Every stored event in position order, for queries across aggregates.
        var log: [RecordedEvent] = []
        var snapshots: [AggregateID: AggregateSnapshot] = [:]
        var nextPosition: UInt64 = 1
        var waiters: [Int: Waiter] = [:]
        var nextWaiterID = 0
        var isClosed = false
    }

    private let state = Mutex(State())
    /// The most events one aggregate may hold; an append past it fails with `limitReached`.
    public let maxEventsPerAggregate: UInt64

    /// Creates an empty store.
    ///
    /// - Parameter maxEventsPerAggregate: the most events one aggregate may hold (default: no limit
    ///   but memory).
    public init(maxEventsPerAggregate: UInt64 = .max) {
        self.maxEventsPerAggregate = maxEventsPerAggregate
    }

    @discardableResult
    public func append(_ events: [Event], to aggregate: AggregateID, expectedVersion: ExpectedVersion) async throws(EventStoreError)
        -> AppendResult
    {
        try EventStoreRules.checkAppend(events, to: aggregate)
        let now = Date()
        let (result, waiters): (AppendResult, [CheckedContinuation<Void, Never>]) = try state.withLock { state throws(EventStoreError) in
            guard !state.isClosed else { throw EventStoreError(.closed, "the event store is closed") }
            var history = state.histories[aggregate] ?? History()
            if let earlier = Self.earlierAttempt(of: events, in: history, expected: expectedVersion) {
                return (earlier, [])
            }
            let current = UInt64(history.events.count)
            guard expectedVersion.isMet(by: current) else {
                throw EventStoreError(
                    .conflict, "\(aggregate) is at version \(current); the append expected \(expectedVersion)",
                    currentVersion: current)
            }
            guard current + UInt64(events.count) <= maxEventsPerAggregate else {
                throw EventStoreError(
                    .limitReached,
                    "\(aggregate) holds \(current) events; \(events.count) more would pass the limit of \(maxEventsPerAggregate) per aggregate")
            }
            for (offset, event) in events.enumerated() {
                let version = current + UInt64(offset) + 1
                let recorded = RecordedEvent(
                    event: event, aggregate: aggregate, version: version, position: state.nextPosition, recordedAt: now)
                state.nextPosition += 1
                history.events.append(recorded)
                history.versionsByID[event.id] = version
                state.log.append(recorded)
            }
            state.histories[aggregate] = history
            let woken = state.waiters.filter { $0.value.aggregate == aggregate }
            for id in woken.keys { state.waiters[id] = nil }
            let result = AppendResult(
                firstVersion: current + 1, version: current + UInt64(events.count), position: state.nextPosition - 1)
            return (result, woken.values.map(\.continuation))
        }
        for waiter in waiters { waiter.resume() }
        return result
    }

    /// The result of an earlier append of exactly these events, when the history holds them in order
    /// where that append would have put them (right after the expected version; anywhere for `.any`).
    private static func earlierAttempt(of events: [Event], in history: History, expected: ExpectedVersion) -> AppendResult? {
        guard let first = history.versionsByID[events[0].id] else { return nil }
        switch expected {
        case .any: break
        case .noEvents: guard first == 1 else { return nil }
        case .exactly(let version): guard first == version + 1 else { return nil }
        }
        let last = first + UInt64(events.count) - 1
        guard last <= UInt64(history.events.count) else { return nil }
        for (offset, event) in events.enumerated() where history.events[Int(first) - 1 + offset].event.id != event.id {
            return nil
        }
        return AppendResult(
            firstVersion: first, version: last, position: history.events[Int(last) - 1].position, wasAlreadyStored: true)
    }

    public func load(_ aggregate: AggregateID, from version: UInt64) async throws(EventStoreError) -> [RecordedEvent] {
        try EventStoreRules.checkVersion(version, "load from version")
        return try state.withLock { state throws(EventStoreError) in
            guard !state.isClosed else { throw EventStoreError(.closed, "the event store is closed") }
            let events = state.histories[aggregate]?.events ?? []
            guard version <= UInt64(events.count) else { return [] }
            return Array(events[Int(version - 1)...])
        }
    }

    public func version(of aggregate: AggregateID) async throws(EventStoreError) -> UInt64 {
        try state.withLock { state throws(EventStoreError) in
            guard !state.isClosed else { throw EventStoreError(.closed, "the event store is closed") }
            return UInt64(state.histories[aggregate]?.events.count ?? 0)
        }
    }

    public func query(_ query: EventQuery) async throws(EventStoreError) -> [RecordedEvent] {
        try query.validate()
        return try state.withLock { state throws(EventStoreError) in
            guard !state.isClosed else { throw EventStoreError(.closed, "the event store is closed") }
            var found: [RecordedEvent] = []
            for recorded in state.log where query.matches(recorded) {
                found.append(recorded)
                if found.count == query.limit { break }
            }
            return found
        }
    }

    public func count(_ query: EventQuery) async throws(EventStoreError) -> Int {
        var query = query
        query.limit = EventQuery.maxLimit
        try query.validate()
        return try state.withLock { state throws(EventStoreError) in
            guard !state.isClosed else { throw EventStoreError(.closed, "the event store is closed") }
            return state.log.reduce(0) { $0 + (query.matches($1) ? 1 : 0) }
        }
    }

    public func subscribe(to aggregate: AggregateID, from version: UInt64) async throws(EventStoreError) -> EventStoreSubscription {
        try EventStoreRules.checkVersion(version, "subscribe from version")
        if state.withLock({ $0.isClosed }) { throw EventStoreError(.closed, "the event store is closed") }
        let cursor = Cursor(aggregate: aggregate, next: version)
        return EventStoreSubscription(
            .init(
                next: { [self] () async throws(EventStoreError) -> RecordedEvent? in await self.next(for: cursor) },
                cancel: { [self] in self.cancel(cursor) }))
    }

    /// Where one subscription is: the next version it returns, and whether it was cancelled.
    private final class Cursor: Sendable {
        let aggregate: AggregateID
        let position: Mutex<(next: UInt64, cancelled: Bool, waiter: Int?)>

        init(aggregate: AggregateID, next: UInt64) {
            self.aggregate = aggregate
            position = Mutex((next, false, nil))
        }
    }

    private enum Step {
        case event(RecordedEvent)
        case end
        case wait
    }

    private func next(for cursor: Cursor) async -> RecordedEvent? {
        while true {
            if Task.isCancelled { return nil }
            let step: Step = state.withLock { state in
                cursor.position.withLock { position in
                    if state.isClosed || position.cancelled { return .end }
                    let events = state.histories[cursor.aggregate]?.events ?? []
                    guard position.next <= UInt64(events.count) else { return .wait }
                    position.next += 1
                    return .event(events[Int(position.next - 2)])
                }
            }
            switch step {
            case .event(let recorded): return recorded
            case .end: return nil
            case .wait: await waitForAppend(cursor)
            }
        }
    }

    /// Suspends until the cursor's aggregate gets an event, the store closes, the subscription is
    /// cancelled or the task is.
    private func waitForAppend(_ cursor: Cursor) async {
        let id = state.withLock { state in
            state.nextWaiterID += 1
            return state.nextWaiterID
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { state in
                    cursor.position.withLock { position in
                        let stored = UInt64(state.histories[cursor.aggregate]?.events.count ?? 0)
                        if state.isClosed || position.cancelled || Task.isCancelled || position.next <= stored { return true }
                        state.waiters[id] = Waiter(aggregate: cursor.aggregate, continuation: continuation)
                        position.waiter = id
                        return false
                    }
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            wake(id)
        }
        cursor.position.withLock { $0.waiter = nil }
    }

    private func wake(_ id: Int) {
        state.withLock { $0.waiters.removeValue(forKey: id) }?.continuation.resume()
    }

    private func cancel(_ cursor: Cursor) {
        let waiter = cursor.position.withLock { position in
            position.cancelled = true
            return position.waiter
        }
        if let waiter { wake(waiter) }
    }

    public func saveSnapshot(_ snapshot: AggregateSnapshot) async throws(EventStoreError) {
        try EventStoreRules.checkVersion(snapshot.version, "snapshot version")
        try state.withLock { state throws(EventStoreError) in
            guard !state.isClosed else { throw EventStoreError(.closed, "the event store is closed") }
            let current = UInt64(state.histories[snapshot.aggregate]?.events.count ?? 0)
            guard snapshot.version <= current else {
                throw EventStoreError(
                    .invalidArgument,
                    "snapshot of \(snapshot.aggregate) at version \(snapshot.version) is past its current version \(current)")
            }
            state.snapshots[snapshot.aggregate] = snapshot
        }
    }

    public func snapshot(of aggregate: AggregateID) async throws(EventStoreError) -> AggregateSnapshot? {
        try state.withLock { state throws(EventStoreError) in
            guard !state.isClosed else { throw EventStoreError(.closed, "the event store is closed") }
            return state.snapshots[aggregate]
        }
    }

    @discardableResult
    public func delete(_ aggregate: AggregateID) async throws(EventStoreError) -> UInt64 {
        try state.withLock { state throws(EventStoreError) in
            guard !state.isClosed else { throw EventStoreError(.closed, "the event store is closed") }
            let removed = state.histories.removeValue(forKey: aggregate)?.events.count ?? 0
            state.snapshots[aggregate] = nil
            if removed > 0 { state.log.removeAll { $0.aggregate == aggregate } }
            return UInt64(removed)
        }
    }

    public func close() async {
        let waiters = state.withLock { state in
            state.isClosed = true
            defer { state.waiters.removeAll() }
            return state.waiters.values.map(\.continuation)
        }
        for waiter in waiters { waiter.resume() }
    }
}

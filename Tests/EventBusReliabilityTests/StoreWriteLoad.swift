import EventBus
import EventBusJetStream
import EventBusReliabilitySupport
import Foundation
import Synchronization

/// Writers appending to an event store with exact expected versions, each append retried with the
/// same events (same ids) and the same expectation until it has a result, recording every outcome
/// and how it was reached.
///
/// Aggregates `0..<writers` are owned, one per writer: nobody else appends there, so the writer
/// always knows the version and a conflict can only mean an attempt of its own was stored. The
/// others are shared by all writers: a writer reads the version, appends with it, and on a conflict
/// takes the version the store reports and tries again (after checking, when an earlier attempt's
/// outcome was unknown, that the history does not hold its events already).
final class StoreWriteLoad: Sendable {
    /// How one append (one set of event ids) ended.
    enum Path: String, Sendable {
        /// Stored by an attempt that was answered (possibly after earlier attempts that were not stored).
        case stored
        /// The store recognised an earlier, unanswered attempt as stored (`wasAlreadyStored`).
        case recognised
        /// A conflict after an unanswered attempt; the aggregate's history held the events: stored, but
        /// not recognised by the store.
        case foundInHistory
        /// No result within the retry budget: the outcome is unknown.
        case unresolved
    }

    /// One append and its outcome.
    struct Record: Sendable {
        var writer: Int
        var aggregate: AggregateID
        var ids: [String]
        /// The versions and position the result named; `nil` when unresolved.
        var result: AppendResult?
        var path: Path
        var attempts: Int
        var completedAt: Double
    }

    /// What the retry loops ran into, across all writers.
    struct Counters: Sendable {
        /// Attempts that failed with `timeout` (outcome unknown).
        var timeouts = 0
        /// Other retriable failures, by code (for example `unavailable` while no leader answers).
        var otherRetriable: [String: Int] = [:]
        /// One message of each kind of retriable failure (the first seen per code).
        var retriableSamples: [String: String] = [:]
        /// Conflicts the store reported after the aggregate kept changing under its own retries.
        var restlessConflicts = 0
        /// Conflicts that named the expected version as the current one: the aggregate was where the
        /// append expected it, yet the append was refused.
        var conflictsAtExpectedVersion = 0
        /// Failures that are not retriable and not a conflict (retried anyway: the same ids are safe).
        var unexpectedErrors = 0
        /// The first few of them.
        var unexpectedErrorSamples: [String] = []
        /// Conflicts on shared aggregates with no unanswered attempt before: another writer was first.
        var conflicts = 0
        /// Conflicts after an unanswered attempt whose events the history did not hold: another writer
        /// was first, and the earlier attempt was not stored.
        var conflictsAfterRetry = 0
        /// Conflicts on an owned aggregate whose events the history did not hold (cannot happen: nobody
        /// else writes there).
        var ownedConflicts = 0
        /// Appends whose events the history held only in part (an atomic batch split: cannot happen).
        var partiallyStored: [String] = []
        /// Version reads (before a shared append) that failed and were retried.
        var failedReads = 0
    }

    let history = HistoryLog<Record>()
    private let counters = Mutex(Counters())
    private let stopped = Atomic<Bool>(false)
    private let tasks = Mutex<[Task<Void, Never>]>([])
    let aggregates: [AggregateID]
    let owned: Int
    private let idPrefix: String
    private let ratePerWriter: Int
    private let batchSize: Int
    private let retryBudget: Duration

    /// - Parameters:
    ///   - writers: How many writers (and owned aggregates) there will be.
    ///   - shared: How many aggregates all writers share.
    ///   - idPrefix: Event ids are `<idPrefix>-w<writer>-<append>-<n>`.
    ///   - ratePerWriter: Appends per second per writer, 0 for as fast as results come.
    ///   - batchSize: Events in every third append (the rest carry one).
    ///   - retryBudget: How long one append keeps retrying before it counts as unresolved.
    init(writers: Int, shared: Int, idPrefix: String, ratePerWriter: Int, batchSize: Int, retryBudget: Duration) throws {
        owned = writers
        var aggregates: [AggregateID] = []
        for index in 0..<writers { aggregates.append(try AggregateID(category: "account", id: "owned-\(index)")) }
        for index in 0..<shared { aggregates.append(try AggregateID(category: "account", id: "shared-\(index)")) }
        self.aggregates = aggregates
        self.idPrefix = idPrefix
        self.ratePerWriter = ratePerWriter
        self.batchSize = batchSize
        self.retryBudget = retryBudget
    }

    /// Starts one writer per store (writer `i` owns aggregate `i`).
    func start(on stores: [JetStreamEventStore]) {
        precondition(stores.count == owned, "one store per writer")
        for (index, store) in stores.enumerated() {
            let task = Task { await self.writeLoop(writer: index, store: store) }
            tasks.withLock { $0.append(task) }
        }
    }

    /// Stops writing and waits for each writer to finish its current append (bounded by the budget).
    func stop() async {
        stopped.store(true, ordering: .releasing)
        for task in tasks.withLock({ $0 }) { await task.value }
    }

    /// The figures so far.
    var figures: Counters { counters.withLock { $0 } }

    /// When each append that got a result completed.
    var timeline: AvailabilityTimeline {
        AvailabilityTimeline(ackTimes: history.all.filter { $0.result != nil }.map(\.completedAt))
    }

    private func writeLoop(writer: Int, store: JetStreamEventStore) async {
        var known: [Int: UInt64] = [:]
        let start = ContinuousClock.now
        var number = 0
        while !stopped.load(ordering: .acquiring) {
            number += 1
            if ratePerWriter > 0 {
                let due = start + .milliseconds(Int64(number - 1) * 1_000 / Int64(ratePerWriter))
                if due > .now { try? await Task.sleep(until: due, clock: .continuous) }
            }
            // Every other append goes to a shared aggregate, every third carries a batch.
            let isShared = number % 2 == 0 && aggregates.count > owned
            let index = isShared ? Int.random(in: owned..<aggregates.count) : writer
            let aggregate = aggregates[index]
            let count = number % 3 == 0 ? batchSize : 1
            let events = (1...count).map { offset in
                Event(
                    id: "\(idPrefix)-w\(writer)-\(number)-\(offset)", subject: "store.\(aggregate.category).\(aggregate.id)",
                    type: "account.changed", source: "/reliability/writer-\(writer)", data: Array("{\"n\":\(number)}".utf8))
            }
            var version = known[index] ?? 0
            if isShared {
                // Load, then append with what was loaded: the usual read-decide-write of a shared aggregate.
                guard let current = await readVersion(of: aggregate, store: store) else { continue }
                version = current
            }
            let record = await appendUntilResult(
                events, to: aggregate, shared: isShared, writer: writer, version: &version, store: store)
            known[index] = version
            history.append(record)
        }
    }

    private func readVersion(of aggregate: AggregateID, store: JetStreamEventStore) async -> UInt64? {
        let deadline = ContinuousClock.now + retryBudget
        while true {
            do throws(EventStoreError) {
                return try await store.version(of: aggregate)
            } catch {
                counters.withLock { $0.failedReads += 1 }
                if ContinuousClock.now >= deadline || stopped.load(ordering: .acquiring) { return nil }
                try? await Task.sleep(for: .milliseconds(100))
            }
        }
    }

    /// One append: attempts with the same events until one has a result or the budget is spent.
    /// `version` is the expectation going in and the aggregate's version (as far as known) coming out.
    private func appendUntilResult(
        _ events: [Event], to aggregate: AggregateID, shared: Bool, writer: Int, version: inout UInt64, store: JetStreamEventStore
    ) async -> Record {
        let ids = events.map(\.id)
        let deadline = ContinuousClock.now + retryBudget
        var attempts = 0
        // Whether an attempt with the current expectation went unanswered (it may be stored).
        var unanswered = false
        func record(_ result: AppendResult?, _ path: Path) -> Record {
            Record(writer: writer, aggregate: aggregate, ids: ids, result: result, path: path, attempts: attempts, completedAt: wallClock())
        }
        while true {
            attempts += 1
            do throws(EventStoreError) {
                let result = try await store.append(events, to: aggregate, expectedVersion: version == 0 ? .noEvents : .exactly(version))
                version = result.version
                return record(result, result.wasAlreadyStored ? .recognised : .stored)
            } catch {
                switch error.code {
                case .conflict:
                    if unanswered {
                        // The store checks this itself; look again in the history, independently.
                        do throws(EventStoreError) {
                            let stored = try await store.load(aggregate, from: version + 1)
                            let found = stored.filter { ids.contains($0.event.id) }
                            if found.count == ids.count, found.map(\.event.id) == ids,
                                found.last!.version - found.first!.version + 1 == UInt64(ids.count)
                            {
                                version = stored.last?.version ?? found.last!.version
                                let result = AppendResult(
                                    firstVersion: found.first!.version, version: found.last!.version, position: found.last!.position,
                                    wasAlreadyStored: true)
                                return record(result, .foundInHistory)
                            }
                            if !found.isEmpty {
                                counters.withLock {
                                    $0.partiallyStored.append("\(aggregate): \(found.count) of \(ids.count) events of \(ids[0])")
                                }
                            }
                        } catch {
                            counters.withLock { $0.failedReads += 1 }
                            break
                        }
                    }
                    counters.withLock { counters in
                        if error.message.contains("kept changing") { counters.restlessConflicts += 1 }
                        if error.currentVersion == version { counters.conflictsAtExpectedVersion += 1 }
                        if !shared {
                            counters.ownedConflicts += 1
                        } else if unanswered {
                            counters.conflictsAfterRetry += 1
                        } else {
                            counters.conflicts += 1
                        }
                    }
                    // Not stored, and it cannot be any more: the aggregate moved past the expectation
                    // every earlier attempt carried. Expect the version the store found.
                    if let current = error.currentVersion {
                        version = current
                        unanswered = false
                        continue
                    }
                case .timeout:
                    counters.withLock { counters in
                        counters.timeouts += 1
                        if counters.retriableSamples["timeout"] == nil { counters.retriableSamples["timeout"] = error.message }
                    }
                    unanswered = true
                default:
                    counters.withLock { counters in
                        if error.isRetriable {
                            counters.otherRetriable[error.code.name, default: 0] += 1
                            if counters.retriableSamples[error.code.name] == nil { counters.retriableSamples[error.code.name] = error.message }
                        } else {
                            counters.unexpectedErrors += 1
                            if counters.unexpectedErrorSamples.count < 3 { counters.unexpectedErrorSamples.append(error.description) }
                        }
                    }
                    // Same ids, same expectation: retrying is safe whatever this was.
                    unanswered = true
                }
            }
            if ContinuousClock.now >= deadline { return record(nil, .unresolved) }
            // An election takes seconds: retry soon, but do not spin.
            try? await Task.sleep(for: .milliseconds(min(50 * attempts, 500)))
        }
    }
}

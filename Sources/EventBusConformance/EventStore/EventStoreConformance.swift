#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import EventBus
import Synchronization
import Testing

/// How the event store suite gets at a backend.
public struct EventStoreConformanceHarness: Sendable {
    /// A store for one check. Checks use their own random category, so a store may be shared.
    public var makeStore: @Sendable () async throws -> any EventStore
    /// Restarts the backend behind the store (it may be closed first) and returns a new store on it;
    /// `nil` skips the restart check.
    public var restart: (@Sendable (any EventStore) async throws -> any EventStore)?
    /// Releases what `makeStore` set up; the default closes the store.
    public var teardown: @Sendable (any EventStore) async throws -> Void
    /// The most any single wait in a check may take.
    public var stepTimeout: Duration

    /// Creates a harness.
    public init(
        stepTimeout: Duration = .seconds(20),
        makeStore: @escaping @Sendable () async throws -> any EventStore,
        restart: (@Sendable (any EventStore) async throws -> any EventStore)? = nil,
        teardown: @escaping @Sendable (any EventStore) async throws -> Void = { await $0.close() }
    ) {
        self.stepTimeout = stepTimeout
        self.makeStore = makeStore
        self.restart = restart
        self.teardown = teardown
    }
}

/// The behaviour suite every `EventStore` must pass, one test case per check:
///
/// ```swift
/// @Test(arguments: EventStoreConformance.checks)
/// func storeConformance(_ check: EventStoreConformance.Check) async throws {
///     try await EventStoreConformance.run(check, harness: myHarness)
/// }
/// ```
public enum EventStoreConformance {
    /// One behaviour of the event store contract.
    public struct Check: Sendable, Hashable, CustomStringConvertible, CustomTestStringConvertible {
        /// A stable, unique name.
        public let name: String
        /// What the check verifies, in a sentence.
        public let summary: String
        let body: @Sendable (StoreCheckContext) async throws -> Void

        init(_ name: String, _ summary: String, body: @escaping @Sendable (StoreCheckContext) async throws -> Void) {
            self.name = name
            self.summary = summary
            self.body = body
        }

        /// Checks are equal when their names are.
        public static func == (lhs: Check, rhs: Check) -> Bool { lhs.name == rhs.name }
        /// Hashes the name.
        public func hash(into hasher: inout Hasher) { hasher.combine(name) }
        /// The check's name.
        public var description: String { name }
        /// The check's name, as test output shows it.
        public var testDescription: String { name }
    }

    /// Every check, in a stable order.
    public static let checks: [Check] = [
        appendThenLoad, expectedVersionIsChecked, concurrentWritersLeaveAGapFreeHistory, batchIsAllOrNothing,
        retriedAppendIsStoredOnce, queryByTypeTimeAndCorrelation, subscribeCatchesUpThenFollowsLive,
        snapshotPlusTailEqualsFullLoad, historySurvivesARestart, deleteRemovesHistoryAndSnapshot, invalidInputIsRefused,
        closeEndsSubscriptions,
    ]

    /// Runs one check against a store from `harness`, then tears it down.
    public static func run(_ check: Check, harness: EventStoreConformanceHarness) async throws {
        let store = try await harness.makeStore()
        let context = StoreCheckContext(store: store, harness: harness, category: "c" + UUID().uuidString.prefix(8).lowercased())
        do {
            try await withTimeLimit(.seconds(120), "check '\(check.name)'", onTimeout: { await context.store.close() }) {
                try await check.body(context)
            }
        } catch {
            try? await harness.teardown(context.store)
            throw error
        }
        try await harness.teardown(context.store)
    }
}

/// What a store check works with.
final class StoreCheckContext: Sendable {
    private let current: Mutex<any EventStore>
    let harness: EventStoreConformanceHarness
    /// The category every aggregate of the check belongs to.
    let category: String

    init(store: any EventStore, harness: EventStoreConformanceHarness, category: String) {
        current = Mutex(store)
        self.harness = harness
        self.category = category
    }

    /// The store (a new one after ``restart()``).
    var store: any EventStore { current.withLock { $0 } }

    func restart() async throws {
        guard let restart = harness.restart else { return }
        let restarted = try await restart(store)
        current.withLock { $0 = restarted }
    }

    func aggregate(_ id: String, category: String? = nil) throws -> AggregateID {
        try AggregateID(category: category ?? self.category, id: id)
    }

    func event(_ type: String, _ index: Int, correlation: String? = nil) -> Event {
        Event(
            subject: "store.\(category).e", type: type, source: "/conformance/store", data: Array("\(type) \(index)".utf8),
            extensions: ["seq": "\(index)"], correlationID: correlation)
    }
}

/// Runs `body`, expecting an ``EventStoreError`` with `code`; returns it, or records an issue.
@discardableResult
func expectStoreError(
    _ code: EventStoreError.Code,
    _ what: String,
    sourceLocation: SourceLocation = #_sourceLocation,
    _ body: () async throws -> Void
) async -> EventStoreError? {
    do {
        try await body()
        Issue.record("\(what): expected EventStoreError.\(code), but it succeeded", sourceLocation: sourceLocation)
    } catch let error as EventStoreError {
        #expect(error.code == code, "\(what): expected .\(code), got \(error)", sourceLocation: sourceLocation)
        return error
    } catch {
        Issue.record("\(what): expected EventStoreError.\(code), got \(error)", sourceLocation: sourceLocation)
    }
    return nil
}

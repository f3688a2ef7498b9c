import Foundation

/// How hard the fault tests push: `short` (the default, in CI through `swift test`, a few minutes
/// in all) or `long` (`EVENTBUS_FAULTS=long`, `make reliability`: more faults, more events).
struct FaultProfile: Sendable {
    var name: String
    /// R1: leader SIGKILLs during the steady load.
    var leaderKills: Int
    /// Steady load between two faults.
    var steadyPeriod: Duration
    /// Publishing tasks, each waiting for its acks one at a time.
    var publishers: Int
    /// Publishes per second per task (0: as fast as acks come).
    var ratePerPublisher: Int
    /// R6: stream leader step-downs.
    var stepDowns: Int
    /// R7: events consumed with ackSync while leaders step down and the cluster restarts node by node.
    var ackSyncEvents: Int
    /// R7: rounds of (stream step-down, consumer step-down, rolling restart).
    var ackSyncRounds: Int
    /// K3: asynchronous publishes in the burst that the cluster restart interrupts.
    var asyncBurst: Int
    /// Whole-cluster stop/start: events published before and after.
    var eventsPerPhase: Int
    /// Multi-host: events the orders host publishes in each phase.
    var multiHostEvents: Int
    /// E1: stream leader SIGKILLs while the event store's writers append.
    var storeLeaderKills: Int

    static let short = FaultProfile(
        name: "short", leaderKills: 3, steadyPeriod: .seconds(2), publishers: 4, ratePerPublisher: 50, stepDowns: 4,
        ackSyncEvents: 1_500, ackSyncRounds: 1, asyncBurst: 3_000, eventsPerPhase: 300, multiHostEvents: 300,
        storeLeaderKills: 2)

    static let long = FaultProfile(
        name: "long", leaderKills: 6, steadyPeriod: .seconds(6), publishers: 6, ratePerPublisher: 100, stepDowns: 15,
        ackSyncEvents: 8_000, ackSyncRounds: 3, asyncBurst: 20_000, eventsPerPhase: 3_000, multiHostEvents: 3_000,
        storeLeaderKills: 6)

    /// `EVENTBUS_FAULTS=long` selects the long profile; anything else (or nothing) the short one.
    static var current: FaultProfile {
        ProcessInfo.processInfo.environment["EVENTBUS_FAULTS"]?.lowercased() == "long" ? .long : .short
    }
}

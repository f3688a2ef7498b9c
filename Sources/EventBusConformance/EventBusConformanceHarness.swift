import EventBus

/// How the conformance suite gets at a backend: how to make a fresh bus for each check, how to connect a
/// second client to it, how to restart it, and how long its timing-based checks may take.
public struct EventBusConformanceHarness: Sendable {
    /// A fresh, empty bus for one check. For a server-backed bus, set up what the check needs here (a new
    /// stream, say); the suite calls it once per check.
    public var makeBus: @Sendable () async throws -> any EventBus
    /// Another client of the same backend as the given bus, as a second process would connect to the same
    /// server. Closing it must not affect the given bus.
    public var connect: @Sendable (any EventBus) async throws -> any EventBus
    /// Restarts the backend behind the given bus (it may be closed first) and returns a new client. Needed
    /// only by backends that declare `EventBusCapabilities.survivesRestart`.
    public var restart: (@Sendable (any EventBus) async throws -> any EventBus)?
    /// Releases what `makeBus` set up; the default closes the bus.
    public var teardown: @Sendable (any EventBus) async throws -> Void
    /// Durations the checks use.
    public var timing: ConformanceTiming
    /// The first token of every subject the checks use (a random token follows it). A backend must store
    /// subjects under `<prefix>.>` and dead letters under `deadletter.<prefix>.>`.
    public var subjectPrefix: String

    /// Creates a harness.
    public init(
        timing: ConformanceTiming = .init(),
        subjectPrefix: String = "conformance",
        makeBus: @escaping @Sendable () async throws -> any EventBus,
        connect: @escaping @Sendable (any EventBus) async throws -> any EventBus,
        restart: (@Sendable (any EventBus) async throws -> any EventBus)? = nil,
        teardown: @escaping @Sendable (any EventBus) async throws -> Void = { await $0.close() }
    ) {
        self.timing = timing
        self.subjectPrefix = subjectPrefix
        self.makeBus = makeBus
        self.connect = connect
        self.restart = restart
        self.teardown = teardown
    }
}

/// The durations the conformance checks use. Checks of timing (ack wait, nak delay, backoff) scale with
/// ``ackWait``; every other wait is bounded by ``stepTimeout`` (or, where its length is the machine's pace,
/// fails after ``stepTimeout`` without progress), and a whole check by ``checkTimeout``, so a broken backend
/// fails instead of hanging.
public struct ConformanceTiming: Sendable {
    /// The ack wait of subscriptions in timing checks; nak delays and backoff are fractions of it.
    public var ackWait: Duration
    /// How long a check watches that nothing more (or nothing early) arrives.
    public var quietPeriod: Duration
    /// The most any single wait in a check may take before the check fails; a wait for many handlers to
    /// finish (whose length is the machine's pace) fails after this long without progress instead.
    public var stepTimeout: Duration
    /// The most a whole check may take; past it the check fails and its buses are closed.
    public var checkTimeout: Duration

    /// Creates timing values; the defaults suit a server on loopback.
    public init(
        ackWait: Duration = .seconds(1),
        quietPeriod: Duration = .milliseconds(300),
        stepTimeout: Duration = .seconds(20),
        checkTimeout: Duration = .seconds(120)
    ) {
        self.ackWait = ackWait
        self.quietPeriod = quietPeriod
        self.stepTimeout = stepTimeout
        self.checkTimeout = checkTimeout
    }
}

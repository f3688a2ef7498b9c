import EventBus
import EventBusJetStream
import NATS
import Synchronization

/// The EventBus on JetStream for a benchmark: its defaults (stream `EVENTS` on `events.>`, file
/// storage), pointed at the benchmark's server, with the given adjustments; started.
public func makeBenchmarkBus(
    _ server: BenchmarkServer,
    _ adjust: (inout JetStreamEventBus.Configuration) -> Void = { _ in }
) async throws -> JetStreamEventBus {
    var configuration = JetStreamEventBus.Configuration(connection: try natsConfiguration(server))
    adjust(&configuration)
    let bus = JetStreamEventBus(configuration: configuration, logger: benchmarkLogger)
    try await bus.start()
    return bus
}

/// An event as a service would publish it: 128 bytes of data, a new id, the current time.
@inline(__always)
public func benchmarkEvent() -> Event {
    Event(subject: Workload.eventSubject, type: "bench.created", source: "/benchmarks", data: Workload.payload)
}

/// The headers the EventBus sends for message `index` of a preload: those of a new benchmark
/// event, with its own generated id (`ce-id` and `Nats-Msg-Id`, 36 characters, as every event the
/// bus publishes has; a short id would fit in a small string and flatter the consumer).
public func benchmarkEventHeaders(_ index: Int) -> [(String, String)] {
    CloudEventsNATSBinding.headers(for: benchmarkEvent()).map { ($0.name, $0.value) }
}

/// Lets one task wait until another signals, without a lock held across the wait: the W8
/// publisher waits for its subscriber. `fail()` releases the waiter for good (a watchdog uses it
/// when a message does not arrive).
public final class AsyncSignal: Sendable {
    private struct State {
        var pending = 0
        var waiter: CheckedContinuation<Bool, Never>?
        var failed = false
    }

    private let state = Mutex(State())

    /// A signal with nothing posted.
    public init() {}

    /// Wakes the waiter, or lets the next `wait()` return at once.
    public func signal() {
        let waiter = state.withLock { state -> CheckedContinuation<Bool, Never>? in
            if let waiter = state.waiter {
                state.waiter = nil
                return waiter
            }
            state.pending += 1
            return nil
        }
        waiter?.resume(returning: true)
    }

    /// Ends every wait, now and later, with false.
    public func fail() {
        let waiter = state.withLock { state -> CheckedContinuation<Bool, Never>? in
            state.failed = true
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(returning: false)
    }

    /// Waits for one signal; false after `fail()`.
    public func wait() async -> Bool {
        await withCheckedContinuation { continuation in
            let immediate = state.withLock { state -> Bool? in
                if state.failed { return false }
                if state.pending > 0 {
                    state.pending -= 1
                    return true
                }
                state.waiter = continuation
                return nil
            }
            if let immediate { continuation.resume(returning: immediate) }
        }
    }
}

/// Fails an iteration that stops making progress instead of letting it hang: every second it
/// compares `progress()` with its last value and calls `onStall` after `limit` without change.
public func startWatchdog(
    limit: Duration = .seconds(30),
    progress: @escaping @Sendable () -> Int,
    onStall: @escaping @Sendable () -> Void
) -> Task<Void, Never> {
    Task {
        var last = progress()
        var lastChange = ContinuousClock.now
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(1))
            let now = progress()
            if now != last {
                last = now
                lastChange = .now
            } else if ContinuousClock.now - lastChange > limit {
                onStall()
                return
            }
        }
    }
}

/// How many events a `consume` handler saw, and a signal when the count reached its target.
private final class HandledEvents: Sendable {
    let count = Atomic<Int>(0)
    let reached = AsyncSignal()
}

/// The measured consume loop of the EventBus's handler form: runs `bus.consume` on the workloads'
/// subject with `options` in a child task, with a handler that only counts (`consume` acks each
/// event when its handler returns), until `count` events were handled. Then calls `afterLast`
/// (stop the clocks there: ending the consume is not part of the workload), cancels the consume
/// and waits for it to end. Returns how many events were handled: fewer than `count` when the
/// consume ended early or stalled for 30 s.
public func consumeAndCount(
    _ bus: some EventBus,
    options: SubscriptionOptions,
    count: Int,
    afterLast: () -> Void
) async throws -> Int {
    let handled = HandledEvents()
    return try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask {
            // Releases the wait below if the consume ends (or fails) before the last event.
            defer { handled.reached.fail() }
            try await bus.consume(Workload.eventSubject, options: options) { _ in
                if handled.count.add(1, ordering: .relaxed).newValue == count { handled.reached.signal() }
            }
        }
        let watchdog = startWatchdog(progress: { handled.count.load(ordering: .relaxed) }, onStall: { handled.reached.fail() })
        _ = await handled.reached.wait()
        afterLast()
        watchdog.cancel()
        group.cancelAll()
        let seen = handled.count.load(ordering: .relaxed)
        do {
            try await group.waitForAll()
        } catch {
            // After the last event, how the cancelled consume ended is not the benchmark's concern.
            if seen < count { throw error }
        }
        return seen
    }
}

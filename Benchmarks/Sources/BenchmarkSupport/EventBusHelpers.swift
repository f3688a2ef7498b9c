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

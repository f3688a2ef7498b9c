import Benchmark
import BenchmarkSupport
import EventBus
import Logging
import Synchronization

// The in-memory EventBus (docs/DESIGN.md, "Workloads for benchmarks"): M1 publish with no subscriber,
// M2 publish → one subscriber receives and acks, and variants that isolate where their time goes.
// No server and no C library, so they run in run.sh's quick mode too.
//
// Every benchmark measures through the public API only, with events built before the measured part
// (an event's UUID id and its storage are the caller's cost, not the bus's): each iteration builds
// its events, calls startMeasurement(), runs, and reports operations per second, wall and CPU
// nanoseconds per operation (custom metrics; the tool's own throughput counts whole iterations)
// and the operations per iteration, so that the report can divide mallocs by it.
//
// Each body keeps its events alive past the measured part (withExtendedLifetime): Swift ends an
// array's lifetime at its last use, and destroying 1,000 events (~60 ns each) right after the loop
// would otherwise be measured.
//
// The closures are nonisolated async functions (this is not main.swift), so publish, next and ack
// run on the cooperative pool without a hop to the main actor.
let benchmarks: @Sendable () -> Void = {
    registerM1()
    registerM2()
    registerCostIsolation()
}

/// Sizes and helpers shared by the in-memory benchmarks.
enum InMemoryWorkload {
    /// Publishes (M1) or publish-receive-acks (M2) per iteration.
    static let m1Operations = 1_000
    static let m2Operations = 10_000
    /// A subject of four tokens, as services use.
    static let subject = "orders.eu.created.v1"

    /// `count` new events, each with its own UUID id (so duplicate suppression stores every one) and the
    /// shared 128-byte payload of every workload.
    static func events(_ count: Int, subject: String = subject) -> [Event] {
        (0..<count).map { _ in event(subject: subject) }
    }

    static func event(subject: String) -> Event {
        Event(
            id: makeID(), subject: subject, type: "com.example.order.created", source: "/benchmarks/orders",
            dataContentType: "application/octet-stream", data: Workload.payload
        )
    }

    /// A new id shaped like a UUID string (36 characters, so hashing and comparing it cost what a real
    /// one does), from a random prefix and a counter: `UUID()` reads /dev/urandom for every id, which
    /// made building the events, outside the measured part, most of each iteration's time.
    static func makeID() -> String {
        let number = idCounter.wrappingAdd(1, ordering: .relaxed).newValue
        let digits = Array("0123456789abcdef".utf8)
        return String(unsafeUninitializedCapacity: 36) { buffer in
            var position = 0
            for value in [idPrefix, number] {
                for shift in stride(from: 60, through: 0, by: -4) {
                    if position == 8 || position == 13 || position == 18 || position == 23 {
                        buffer[position] = UInt8(ascii: "-")
                        position += 1
                    }
                    buffer[position] = digits[Int((value >> UInt64(shift)) & 0xF)]
                    position += 1
                }
            }
            return position
        }
    }

    private static let idPrefix = UInt64.random(in: 0 ... .max)
    private static let idCounter = Atomic<UInt64>(0)

    /// A bus whose logger only reports errors (a benchmark must not measure log output).
    static func bus(duplicateWindow: Duration? = nil, maxEvents: Int? = nil) throws -> InMemoryEventBus {
        var configuration = InMemoryEventBus.Configuration()
        if let duplicateWindow { configuration.duplicateWindow = duplicateWindow }
        if let maxEvents { configuration.maxEvents = maxEvents }
        var logger = Logger(label: "bench.memory")
        logger.logLevel = .error
        return try InMemoryEventBus(configuration: configuration, logger: logger)
    }

    /// How many events setup publishes before measuring: the default retained log's and duplicate window's
    /// limit, so that every measured publish finds both full, as in a service that has run a while (each
    /// publish then also discards the oldest event and forgets the oldest id). Without it, a quick run
    /// (100 ms) measured an emptier bus than a full run (1 s).
    static let prefillEvents = 1_000_000

    /// Publishes ``prefillEvents`` events on `bus` (setup, not measured).
    static func prefill(_ bus: InMemoryEventBus) async throws {
        for _ in 0..<(prefillEvents / 10_000) {
            for event in events(10_000, subject: "prefill.events") {
                try await bus.publish(event)
            }
        }
    }

    /// Publishes `events` in order, measured; returns how many were stored (duplicates are not).
    static func publishAll(_ events: [Event], on bus: InMemoryEventBus, benchmark: Benchmark) async throws {
        benchmark.startMeasurement()
        let meter = ThroughputMeter()
        for event in events {
            blackHole(try await bus.publish(event))
        }
        meter.finishOperations(benchmark, operations: events.count)
        benchmark.stopMeasurement()
        withExtendedLifetime(events) {}
    }

    /// Iteration settings: short iterations, bounded by time, with warmup.
    static func configuration(maxIterations: Int = 100_000) -> Benchmark.Configuration {
        BenchmarkSettings.micro(metrics: BenchmarkMetrics.inMemory, maxIterations: maxIterations)
    }
}

/// M1: publish with no subscriber. The log retains every event (up to its limits), as JetStream would;
/// setup fills it first (see `prefill`).
func registerM1() {
    let withDedupe = SetupBox<InMemoryEventBus>()
    Benchmark("M1 publish", configuration: InMemoryWorkload.configuration()) { benchmark in
        let events = InMemoryWorkload.events(InMemoryWorkload.m1Operations)
        try await InMemoryWorkload.publishAll(events, on: withDedupe.unwrapped, benchmark: benchmark)
    } setup: {
        let bus = try InMemoryWorkload.bus()
        try await InMemoryWorkload.prefill(bus)
        withDedupe.value = bus
    } teardown: {
        await withDedupe.value?.close()
        withDedupe.value = nil
    }

    // The same without duplicate suppression (duplicateWindow .zero): no id hashing.
    let withoutDedupe = SetupBox<InMemoryEventBus>()
    Benchmark("M1 publish dedupe off", configuration: InMemoryWorkload.configuration()) { benchmark in
        let events = InMemoryWorkload.events(InMemoryWorkload.m1Operations)
        try await InMemoryWorkload.publishAll(events, on: withoutDedupe.unwrapped, benchmark: benchmark)
    } setup: {
        let bus = try InMemoryWorkload.bus(duplicateWindow: .zero)
        try await InMemoryWorkload.prefill(bus)
        withoutDedupe.value = bus
    } teardown: {
        await withoutDedupe.value?.close()
        withoutDedupe.value = nil
    }

    // The closest this bus comes to one that keeps nothing (as the Go bus of the target): no
    // duplicate suppression and a log of 1,000 events, which stays in the CPU's caches, so the
    // event each publish discards is not a cache miss. Validation, the timestamp, the lock and
    // the log remain.
    let smallLog = SetupBox<InMemoryEventBus>()
    Benchmark("M1 publish dedupe off log 1,000", configuration: InMemoryWorkload.configuration()) { benchmark in
        let events = InMemoryWorkload.events(InMemoryWorkload.m1Operations)
        try await InMemoryWorkload.publishAll(events, on: smallLog.unwrapped, benchmark: benchmark)
    } setup: {
        let bus = try InMemoryWorkload.bus(duplicateWindow: .zero, maxEvents: 1_000)
        for event in InMemoryWorkload.events(1_000, subject: "prefill.events") {
            try await bus.publish(event)
        }
        smallLog.value = bus
    } teardown: {
        await smallLog.value?.close()
        smallLog.value = nil
    }
}

import Benchmark
import BenchmarkSupport
import EventBus
import Synchronization

// Variants that isolate one cost of M1 and M2 each, 1,000 operations per iteration:
// - validation alone (what every publish checks before it takes the lock), of new events and of one
//   event again;
// - subject matching: publishes (duplicate suppression off) with 1,000 subscribed patterns that
//   match none of the subjects, on 64 subjects (the index's cache answers) and on 10,000 subjects
//   (more than the cache holds, so the token tree is walked), beside a linear scan of the same
//   patterns with SubjectPattern.matches for scale (10 subjects per iteration);
// - floors every publish pays in some form: one ContinuousClock.now and one uncontended
//   Mutex.withLock;
// - Event.makeID, the default id of every event a service builds (not measured by M1 and M2,
//   whose events are built before the measured part).

func registerCostIsolation() {
    let configuration = InMemoryWorkload.configuration()

    Benchmark("validation Event.validateForPublish", configuration: configuration) { benchmark in
        let events = InMemoryWorkload.events(InMemoryWorkload.m1Operations)
        benchmark.startMeasurement()
        let meter = ThroughputMeter()
        for event in events {
            try event.validateForPublish()
        }
        meter.finishOperations(benchmark, operations: events.count)
        benchmark.stopMeasurement()
        withExtendedLifetime(events) {}
    }

    // The same event again (a retry): the event remembers that it passed.
    Benchmark("validation Event.validateForPublish again", configuration: configuration) { benchmark in
        let events = InMemoryWorkload.events(InMemoryWorkload.m1Operations)
        benchmark.startMeasurement()
        let meter = ThroughputMeter()
        for _ in events {
            try events[0].validateForPublish()
        }
        meter.finishOperations(benchmark, operations: events.count)
        benchmark.stopMeasurement()
        withExtendedLifetime(events) {}
    }
    registerMatching(subjects: 64)
    registerMatching(subjects: 10_000)

    // 10 subjects per iteration: a scan of 1,000 patterns takes about a millisecond per subject.
    Benchmark("matching SubjectPattern.matches scan 1,000 patterns", configuration: configuration) { benchmark in
        let patterns = try manyPatterns()
        let subjects = subjectList(64)
        let operations = 10
        benchmark.startMeasurement()
        let meter = ThroughputMeter()
        var matched = 0
        for index in 0..<operations {
            let subject = subjects[index & 63]
            for pattern in patterns where pattern.matches(subject) {
                matched += 1
            }
        }
        blackHole(matched)
        meter.finishOperations(benchmark, operations: operations)
        benchmark.stopMeasurement()
    }

    Benchmark("floor ContinuousClock.now", configuration: configuration) { benchmark in
        let clock = ContinuousClock()
        benchmark.startMeasurement()
        let meter = ThroughputMeter()
        for _ in 0..<InMemoryWorkload.m1Operations {
            blackHole(clock.now)
        }
        meter.finishOperations(benchmark, operations: InMemoryWorkload.m1Operations)
        benchmark.stopMeasurement()
    }

    let mutex = Mutex<Int>(0)
    Benchmark("floor Mutex.withLock uncontended", configuration: configuration) { benchmark in
        benchmark.startMeasurement()
        let meter = ThroughputMeter()
        for _ in 0..<InMemoryWorkload.m1Operations {
            mutex.withLock { $0 &+= 1 }
        }
        meter.finishOperations(benchmark, operations: InMemoryWorkload.m1Operations)
        benchmark.stopMeasurement()
        blackHole(mutex.withLock { $0 })
    }

    Benchmark("Event.makeID", configuration: configuration) { benchmark in
        benchmark.startMeasurement()
        let meter = ThroughputMeter()
        for _ in 0..<InMemoryWorkload.m1Operations {
            blackHole(Event.makeID())
        }
        meter.finishOperations(benchmark, operations: InMemoryWorkload.m1Operations)
        benchmark.stopMeasurement()
    }
}

/// 1,000 patterns of several shapes (literal, `*` in the middle and first, `>` at the end), none of
/// which matches a subject of `subjectList`.
private func manyPatterns() throws -> [SubjectPattern] {
    var patterns: [SubjectPattern] = []
    for index in 0..<250 {
        patterns.append(try SubjectPattern("tenant\(index).orders.created"))
        patterns.append(try SubjectPattern("tenant\(index).*.created"))
        patterns.append(try SubjectPattern("*.tenant\(index).created"))
        patterns.append(try SubjectPattern("tenant\(index).>"))
    }
    return patterns
}

/// `count` distinct subjects of four tokens, built once.
private func subjectList(_ count: Int) -> [String] {
    (0..<count).map { "shop\($0).orders.created.v1" }
}

private func registerMatching(subjects count: Int) {
    let box = SetupBox<(bus: InMemoryEventBus, subscriptions: [EventSubscription], subjects: [String])>()
    Benchmark(
        "matching publish 1,000 patterns \(count) subjects dedupe off",
        configuration: InMemoryWorkload.configuration()
    ) { benchmark in
        let (bus, _, subjects) = box.unwrapped
        let base = Int(benchmark.currentIteration)
        let events = (0..<InMemoryWorkload.m1Operations).map { index in
            InMemoryWorkload.event(subject: subjects[(base &* InMemoryWorkload.m1Operations &+ index) % subjects.count])
        }
        try await InMemoryWorkload.publishAll(events, on: bus, benchmark: benchmark)
    } setup: {
        let bus = try InMemoryWorkload.bus(duplicateWindow: .zero)
        var subscriptions: [EventSubscription] = []
        for pattern in try manyPatterns() {
            subscriptions.append(try await bus.subscribe(pattern, options: .init()))
        }
        box.value = (bus, subscriptions, subjectList(count))
    } teardown: {
        await box.value?.bus.close()
        box.value = nil
    }
}

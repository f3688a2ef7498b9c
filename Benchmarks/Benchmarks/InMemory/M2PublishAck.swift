import Benchmark
import BenchmarkSupport
import EventBus

// M2: publish → one subscriber receives and acks. Setup fills the log and the duplicate window (see
// InMemoryWorkload.prefill, on a subject the subscription does not match). The subscription (default
// options: maxInFlight 256, ack wait 30 s) lives for the whole benchmark; each iteration publishes 10,000 events from the
// benchmark's task while a child task iterates the subscription and acks each delivery, and ends
// when the last one is acked. Time per event is the pipeline's.
//
// Where the subscriber runs: package-benchmark blocks one of the cooperative pool's two threads for
// as long as an async benchmark runs (see ThreadTaskExecutor), so the subscriber's child task shares
// the one pool thread left with the publisher, and the two take turns: "M2 publish receive ack"
// (written as a service would write it) then measures the CPU cost of publish, delivery and ack
// together. "... subscriber own thread" runs the subscriber on a thread of its own (a task executor
// preference), so the two run at the same time on the two cores; its figure includes what Swift's
// runtime charges a task with an executor preference on every async call (a status-record lock,
// measured at a quarter of that thread's time), which a service's subscriber does not pay.

func registerM2() {
    registerM2Pipeline(name: "M2 publish receive ack", duplicateWindow: nil, ownThread: false)
    registerM2Pipeline(name: "M2 publish receive ack dedupe off", duplicateWindow: .zero, ownThread: false)
    registerM2Pipeline(name: "M2 publish receive ack subscriber own thread", duplicateWindow: nil, ownThread: true)

    // The same path on one task: publish one event, take it from the iterator, ack it. No thread
    // hand-off, so this is the CPU cost of the three calls, without waking a parked subscriber.
    // A subscription per iteration, made before the measurement: ending an iteration early
    // ends the subscription's deliveries (the EventBus hands back what it holds), so a second
    // loop over the same subscription would get nothing.
    let sequential = SetupBox<InMemoryEventBus>()
    Benchmark("M2 one task publish next ack", configuration: InMemoryWorkload.configuration()) { benchmark in
        let bus = sequential.unwrapped
        let events = InMemoryWorkload.events(InMemoryWorkload.m1Operations)
        let subscription = try await bus.subscribe(SubjectPattern("orders.>"), options: .init())
        var iterator = subscription.makeAsyncIterator()
        benchmark.startMeasurement()
        let meter = ThroughputMeter()
        for event in events {
            try await bus.publish(event)
            guard let delivery = try await iterator.next() else {
                benchmark.error("the subscription ended early")
                await subscription.close()
                return
            }
            try await delivery.ack()
        }
        meter.finishOperations(benchmark, operations: events.count)
        benchmark.stopMeasurement()
        await subscription.close()
        withExtendedLifetime(events) {}
    } setup: {
        let bus = try InMemoryWorkload.bus()
        try await InMemoryWorkload.prefill(bus)
        sequential.value = bus
    } teardown: {
        await sequential.value?.close()
        sequential.value = nil
    }
}

private func registerM2Pipeline(name: String, duplicateWindow: Duration?, ownThread: Bool) {
    let box = SetupBox<(bus: InMemoryEventBus, executor: ThreadTaskExecutor?)>()
    Benchmark(name, configuration: InMemoryWorkload.configuration(maxIterations: 10_000)) { benchmark in
        let (bus, executor) = box.unwrapped
        let count = InMemoryWorkload.m2Operations
        let events = InMemoryWorkload.events(count)
        // A subscription per iteration (see "M2 one task publish next ack"), made and closed
        // outside the measurement.
        let subscription = try await bus.subscribe(SubjectPattern("orders.>"), options: .init())
        benchmark.startMeasurement()
        let meter = ThroughputMeter()
        @Sendable func receiveAndAck() async throws -> Int {
            try await BenchmarkSupport.receiveAndAck(subscription, count: count)
        }
        let received = try await withThrowingTaskGroup(of: Int.self, returning: Int.self) { group in
            // Plain addTask when there is no thread of its own: a child started with an executor
            // preference, even nil, checked it on every await (swift_task_switch taking the task's
            // status-record lock), measured at a fifth of the time.
            if let executor {
                group.addTask(executorPreference: executor, operation: receiveAndAck)
            } else {
                group.addTask(operation: receiveAndAck)
            }
            for event in events {
                try await bus.publish(event)
            }
            return try await group.next() ?? 0
        }
        meter.finishOperations(benchmark, operations: count)
        benchmark.stopMeasurement()
        await subscription.close()
        if received != count {
            benchmark.error("received \(received) of \(count)")
        }
    } setup: {
        let bus = try InMemoryWorkload.bus(duplicateWindow: duplicateWindow)
        try await InMemoryWorkload.prefill(bus)
        box.value = (bus, ownThread ? ThreadTaskExecutor(name: "m2-subscriber") : nil)
    } teardown: {
        await box.value?.bus.close()
        box.value?.executor?.shutdown()
        box.value = nil
    }
}

import Benchmark
import BenchmarkSupport
import EventBus

// M2: publish → one subscriber receives and acks. The subscription (default options: maxInFlight 256,
// ack wait 30 s) lives for the whole benchmark; each iteration publishes 10,000 events from the
// benchmark's task while a child task iterates the subscription and acks each delivery, and ends
// when the last one is acked. Time per event is the pipeline's: publisher and subscriber run at the
// same time on the two cores, so CPU per event is about twice the wall time when both are busy.

func registerM2() {
    registerM2Pipeline(name: "M2 publish receive ack", duplicateWindow: nil)
    registerM2Pipeline(name: "M2 publish receive ack dedupe off", duplicateWindow: .zero)

    // The same path on one task: publish one event, take it from the iterator, ack it. No thread
    // hand-off, so this is the CPU cost of the three calls, without waking a parked subscriber.
    let sequential = SetupBox<(bus: InMemoryEventBus, subscription: EventSubscription)>()
    Benchmark("M2 one task publish next ack", configuration: InMemoryWorkload.configuration()) { benchmark in
        let (bus, subscription) = sequential.unwrapped
        let events = InMemoryWorkload.events(InMemoryWorkload.m1Operations)
        var iterator = subscription.makeAsyncIterator()
        benchmark.startMeasurement()
        let meter = ThroughputMeter()
        for event in events {
            try await bus.publish(event)
            guard let delivery = try await iterator.next() else {
                benchmark.error("the subscription ended early")
                return
            }
            try await delivery.ack()
        }
        meter.finishOperations(benchmark, operations: events.count)
        benchmark.stopMeasurement()
        withExtendedLifetime(events) {}
    } setup: {
        let bus = try InMemoryWorkload.bus()
        let subscription = try await bus.subscribe(SubjectPattern("orders.>"), options: .init())
        sequential.value = (bus, subscription)
    } teardown: {
        await sequential.value?.bus.close()
        sequential.value = nil
    }
}

private func registerM2Pipeline(name: String, duplicateWindow: Duration?) {
    let box = SetupBox<(bus: InMemoryEventBus, subscription: EventSubscription)>()
    Benchmark(name, configuration: InMemoryWorkload.configuration(maxIterations: 10_000)) { benchmark in
        let (bus, subscription) = box.unwrapped
        let count = InMemoryWorkload.m2Operations
        let events = InMemoryWorkload.events(count)
        benchmark.startMeasurement()
        let meter = ThroughputMeter()
        let received = try await withThrowingTaskGroup(of: Int.self, returning: Int.self) { group in
            group.addTask {
                var received = 0
                for try await delivery in subscription {
                    try await delivery.ack()
                    received += 1
                    if received == count { break }
                }
                return received
            }
            for event in events {
                try await bus.publish(event)
            }
            return try await group.next() ?? 0
        }
        meter.finishOperations(benchmark, operations: count)
        benchmark.stopMeasurement()
        if received != count {
            benchmark.error("received \(received) of \(count)")
        }
    } setup: {
        let bus = try InMemoryWorkload.bus(duplicateWindow: duplicateWindow)
        let subscription = try await bus.subscribe(SubjectPattern("orders.>"), options: .init())
        box.value = (bus, subscription)
    } teardown: {
        await box.value?.bus.close()
        box.value = nil
    }
}

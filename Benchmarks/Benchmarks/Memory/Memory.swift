import Benchmark
import BenchmarkSupport
import CNATSRaw
import EventBus
import EventBusJetStream
import NATS

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Peak resident memory while consuming stored messages: 100,000 and 1,000,000 messages of 128
// bytes, through a NATS module pull consumer (batch 256, ack each) and through the EventBus (a
// group subscription, ack each delivery). A client that keeps nothing per message stays flat: the
// two sizes must show the same peak, under 64 MiB.
//
// "Memory EventBus publish consume" publishes the events through the bus first (the batch API,
// 1,000 events per `publish(contentsOf:)` call, into an empty stream) and then consumes them
// (`consume` with a group, default settings, a handler that only counts): the whole round trip
// in one measured iteration, peak resident memory sampled in each half. Target: under 48 MiB,
// the same for 100,000 and 1,000,000 events.
//
// The messages are stored by raw cnats in setup (at most 4,096 in flight); then the setup waits
// for cnats's garbage collector thread to free the published messages and hands the freed heap
// back to the kernel (malloc_trim), so that what setup left behind is not counted. The process's
// resident set is sampled every 5 ms by package-benchmark during the one measured iteration;
// nothing else runs in the process.

private func registerPull(_ name: String, messages: Int) {
    liveBenchmark(name, configuration: memoryConfiguration()) { benchmark, connection in
        let js = connection.jetStream()
        try await js.ensureConsumer(stream: Workload.streamName, NATSConsumerConfiguration(durableName: "memory"))
        let consumer = try await js.pullConsumer(stream: Workload.streamName, name: "memory")
        benchmark.startMeasurement()
        let sampler = ResidentMemorySampler()
        let meter = ThroughputMeter()
        let received = try await receiveAndAck(consumer, count: messages)
        meter.finish(benchmark, operations: messages)
        report(sampler, benchmark)
        benchmark.stopMeasurement()
        consumer.stop()
        if received != messages { benchmark.error("received \(received) of \(messages)") }
    } setup: { server -> NATSConnection in
        let js = try RawJetStream.workloadStream(on: server, preloaded: messages)
        releaseSetupMemory()
        let connection = try await NATSConnection.connectForBenchmark(server)
        // The preloading connection closes when setup ends, in both benchmarks alike.
        withExtendedLifetime(js) {}
        return connection
    } teardown: { connection in
        await connection.close()
    }
}

private func registerEventBus(_ name: String, messages: Int) {
    liveBenchmark(name, configuration: memoryConfiguration()) { benchmark, bus in
        let subscription = try await bus.subscribe(Workload.eventSubject, options: .init(group: "memory", start: .all))
        benchmark.startMeasurement()
        let sampler = ResidentMemorySampler()
        let meter = ThroughputMeter()
        let received = try await receiveAndAck(subscription, count: messages)
        meter.finish(benchmark, operations: messages)
        report(sampler, benchmark)
        benchmark.stopMeasurement()
        await subscription.close()
        if received != messages { benchmark.error("received \(received) of \(messages)") }
    } setup: { server -> JetStreamEventBus in
        let bus = try await makeBenchmarkBus(server)
        let js = try RawJetStream(server)
        try js.preloadWorkload(messages, asEvents: true)
        releaseSetupMemory()
        // The preloading connection closes when setup ends, in both benchmarks alike.
        withExtendedLifetime(js) {}
        return bus
    } teardown: { bus in
        await bus.close()
    }
}

private func registerEventBusPublishConsume(_ name: String, events: Int) {
    liveBenchmark(name, configuration: memoryConfiguration(metrics: BenchmarkMetrics.memoryPublishWorkload)) { benchmark, bus in
        benchmark.startMeasurement()
        let publishing = ResidentMemorySampler()
        let meter = ThroughputMeter()
        var published = 0
        while published < events {
            let count = min(Workload.memoryPublishBatch, events - published)
            var batch: [Event] = []
            batch.reserveCapacity(count)
            for _ in 0..<count { batch.append(benchmarkEvent()) }
            blackHole(try await bus.publish(contentsOf: batch))
            published += count
        }
        let publishingPeak = publishing.stop()
        let consuming = ResidentMemorySampler()
        let handled = try await consumeAndCount(bus, options: .init(group: "memory", start: .all), count: events) {
            // Events per second and CPU per event of the whole round trip: publish and consume.
            meter.finish(benchmark, operations: events)
            benchmark.measurement(BenchmarkMetrics.residentAtStart, publishing.atStart)
            benchmark.measurement(BenchmarkMetrics.residentPeakPublishing, publishingPeak)
            benchmark.measurement(BenchmarkMetrics.residentPeakConsuming, consuming.stop())
            benchmark.stopMeasurement()
        }
        if handled != events { benchmark.error("handled \(handled) of \(events)") }
    } setup: { server -> JetStreamEventBus in
        // The bus creates its stream, empty.
        try await makeBenchmarkBus(server)
    } teardown: { bus in
        await bus.close()
    }
}

/// Records the resident memory at the start of consuming and its peak while consuming.
private func report(_ sampler: ResidentMemorySampler, _ benchmark: Benchmark) {
    let peak = sampler.stop()
    benchmark.measurement(BenchmarkMetrics.residentAtStart, sampler.atStart)
    benchmark.measurement(BenchmarkMetrics.residentPeakConsuming, peak)
}

/// Lets cnats's garbage collector thread free the messages published in setup, then returns the
/// freed heap to the kernel, so that the measured peak is the consumer's own.
private func releaseSetupMemory() {
    usleep(500_000)
    #if os(Linux)
    malloc_trim(0)
    #endif
}

/// One measured iteration, no warmup (it would consume the stream).
private func memoryConfiguration(metrics: [BenchmarkMetric] = BenchmarkMetrics.memoryWorkload) -> Benchmark.Configuration {
    Benchmark.Configuration(
        metrics: metrics,
        timeUnits: .automatic,
        warmupIterations: 0,
        maxDuration: .seconds(600),
        maxIterations: 1
    )
}

let benchmarks: @Sendable () -> Void = {
    registerPull("Memory pull 100k", messages: Workload.memorySmall)
    registerPull("Memory pull 1M", messages: Workload.memoryLarge)
    registerEventBus("Memory EventBus 100k", messages: Workload.memorySmall)
    registerEventBus("Memory EventBus 1M", messages: Workload.memoryLarge)
    registerEventBusPublishConsume("Memory EventBus publish consume 100k", events: Workload.memorySmall)
    registerEventBusPublishConsume("Memory EventBus publish consume 1M", events: Workload.memoryLarge)
}

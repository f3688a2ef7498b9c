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
// The messages are stored by raw cnats in setup (at most 4,096 in flight); then the setup waits
// for cnats's garbage collector thread to free the published messages and hands the freed heap
// back to the kernel (malloc_trim), so that what setup left behind is not counted. The process's
// resident set is sampled every 5 ms by package-benchmark during the one measured iteration;
// nothing else runs in the process.

private func registerPull(_ name: String, messages: Int) {
    let box = SetupBox<(server: BenchmarkServer, connection: NATSConnection)>()
    Benchmark(name, configuration: memoryConfiguration()) { benchmark in
        let (_, connection) = box.unwrapped
        let js = connection.jetStream()
        do {
            try await js.ensureConsumer(stream: Workload.streamName, NATSConsumerConfiguration(durableName: "memory"))
            let consumer = try await js.pullConsumer(stream: Workload.streamName, name: "memory")
            benchmark.startMeasurement()
            let sampler = ResidentMemorySampler()
            let meter = ThroughputMeter()
            var received = 0
            for try await message in consumer {
                try message.ack()
                received += 1
                if received == messages { break }
            }
            meter.finish(benchmark, operations: messages)
            report(sampler, benchmark)
            benchmark.stopMeasurement()
            consumer.stop()
            if received != messages { benchmark.error("received \(received) of \(messages)") }
        } catch {
            benchmark.error("\(error)")
        }
    } setup: {
        let server = try BenchmarkServer.start()
        let js = try RawJetStream(connection: RawConnection(url: server.url))
        try js.addStream(name: Workload.streamName, subjects: Workload.streamSubjects)
        try js.preload(subject: Workload.jetStreamSubject, count: messages, payload: Workload.payload)
        releaseSetupMemory()
        box.value = (server, try await NATSConnection.connectForBenchmark(server))
    } teardown: {
        await box.value?.connection.close()
        box.value?.server.stop()
        box.value = nil
    }
}

private func registerEventBus(_ name: String, messages: Int) {
    let box = SetupBox<(server: BenchmarkServer, bus: JetStreamEventBus)>()
    Benchmark(name, configuration: memoryConfiguration()) { benchmark in
        let (_, bus) = box.unwrapped
        do {
            let subscription = try await bus.subscribe(Workload.eventSubject, options: .init(group: "memory", start: .all))
            benchmark.startMeasurement()
            let sampler = ResidentMemorySampler()
            let meter = ThroughputMeter()
            var received = 0
            for try await delivery in subscription {
                try await delivery.ack()
                received += 1
                if received == messages { break }
            }
            meter.finish(benchmark, operations: messages)
            report(sampler, benchmark)
            benchmark.stopMeasurement()
            await subscription.close()
            if received != messages { benchmark.error("received \(received) of \(messages)") }
        } catch {
            benchmark.error("\(error)")
        }
    } setup: {
        let server = try BenchmarkServer.start()
        let bus = try await makeBenchmarkBus(server)
        let js = try RawJetStream(connection: RawConnection(url: server.url))
        try js.preload(subject: Workload.jetStreamSubject, count: messages, payload: Workload.payload, headers: benchmarkEventHeaders)
        releaseSetupMemory()
        box.value = (server, bus)
    } teardown: {
        await box.value?.bus.close()
        box.value?.server.stop()
        box.value = nil
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
private func memoryConfiguration() -> Benchmark.Configuration {
    Benchmark.Configuration(
        metrics: BenchmarkMetrics.memoryWorkload,
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
}

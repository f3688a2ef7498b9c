import Benchmark
import BenchmarkSupport
import EventBus
import EventBusJetStream
import NATS

// Peak resident memory while consuming stored messages: 100,000 and 1,000,000 messages of 128
// bytes, through a NATS module pull consumer (batch 256, ack each) and through the EventBus (a
// group subscription, ack each delivery). A client that keeps nothing per message stays flat: the
// two sizes must show the same peak, under 64 MiB.
//
// The messages are stored by raw cnats in setup (at most 4,096 in flight, so setup leaves little
// behind), the process's resident set is sampled every 5 ms by package-benchmark during the one
// measured iteration, and nothing else runs in the process.

private func registerPull(_ name: String, messages: Int) {
    let box = SetupBox<(server: BenchmarkServer, connection: NATSConnection)>()
    Benchmark(name, configuration: memoryConfiguration()) { benchmark in
        let (_, connection) = box.unwrapped
        let js = connection.jetStream()
        do {
            try await js.ensureConsumer(stream: Workload.streamName, NATSConsumerConfiguration(durableName: "memory"))
            let consumer = try await js.pullConsumer(stream: Workload.streamName, name: "memory")
            benchmark.startMeasurement()
            let meter = ThroughputMeter()
            var received = 0
            for try await message in consumer {
                try message.ack()
                received += 1
                if received == messages { break }
            }
            meter.finish(benchmark, operations: messages)
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
            let meter = ThroughputMeter()
            var received = 0
            for try await delivery in subscription {
                try await delivery.ack()
                received += 1
                if received == messages { break }
            }
            meter.finish(benchmark, operations: messages)
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
        box.value = (server, bus)
    } teardown: {
        await box.value?.bus.close()
        box.value?.server.stop()
        box.value = nil
    }
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

import Benchmark
import BenchmarkSupport
import CNATSRaw
import EventBus
import EventBusJetStream
import NATS

// W4: 20,000 JetStream publishes of 128 bytes, one at a time, each waiting for its ack (what
// `EventBus.publish` does for one publisher). Messages per second. The stream is purged before
// every iteration (unmeasured), and afterwards it must hold exactly the messages published.

func registerW4() {
    let configuration = BenchmarkSettings.live(metrics: BenchmarkMetrics.throughputWorkload, scalingFactor: .kilo)
    let messages = Workload.w4Messages

    let raw = SetupBox<(server: BenchmarkServer, js: RawJetStream, subject: RawCString)>()
    Benchmark("W4 raw", configuration: configuration) { benchmark in
        let (_, js, subject) = raw.unwrapped
        do throws(RawFailure) {
            try js.purge(stream: Workload.streamName)
            benchmark.startMeasurement()
            let meter = ThroughputMeter()
            var errorCode = jsErrCode(0)
            let failure: natsStatus = Workload.payload.withUnsafeBytes { payload in
                for _ in 0..<messages {
                    var ack: UnsafeMutablePointer<jsPubAck>?
                    let status = js_Publish(&ack, js.pointer, subject.pointer, payload.baseAddress, Int32(payload.count), nil, &errorCode)
                    // The ack is ours to free.
                    jsPubAck_Destroy(ack)
                    if status != NATS_OK { return status }
                }
                return NATS_OK
            }
            try rawCheck(failure, "js_Publish (error code \(errorCode.rawValue))")
            meter.finish(benchmark, operations: messages)
            benchmark.stopMeasurement()
            try js.expectMessageCount(stream: Workload.streamName, messages)
        } catch {
            benchmark.error(error.description)
        }
    } setup: {
        let server = try BenchmarkServer.start()
        let js = try RawJetStream(connection: RawConnection(url: server.url))
        try js.addStream(name: Workload.streamName, subjects: Workload.streamSubjects)
        raw.value = (server, js, RawCString(Workload.jetStreamSubject))
    } teardown: {
        raw.value?.server.stop()
        raw.value = nil
    }

    registerW4NATS(name: "W4 NATS", configuration: configuration, sendAsap: false)
    registerW4NATS(name: "W4 NATS send-asap", configuration: configuration, sendAsap: true)

    let bus = SetupBox<(server: BenchmarkServer, bus: JetStreamEventBus, admin: RawJetStream)>()
    Benchmark("W4 EventBus", configuration: configuration) { benchmark in
        let (_, bus, admin) = bus.unwrapped
        do {
            try admin.purge(stream: Workload.streamName)
            benchmark.startMeasurement()
            let meter = ThroughputMeter()
            for _ in 0..<messages {
                blackHole(try await bus.publish(benchmarkEvent()))
            }
            meter.finish(benchmark, operations: messages)
            benchmark.stopMeasurement()
            try admin.expectMessageCount(stream: Workload.streamName, messages)
        } catch {
            benchmark.error("\(error)")
        }
    } setup: {
        let server = try BenchmarkServer.start()
        let eventBus = try await makeBenchmarkBus(server)
        bus.value = (server, eventBus, try RawJetStream(connection: RawConnection(url: server.url)))
    } teardown: {
        await bus.value?.bus.close()
        bus.value?.server.stop()
        bus.value = nil
    }
}

/// The NATS module's W4: `jetStream().publish` on a connection with the default configuration
/// (cnats's blocking request on the blocking executor) or with SendAsap (the connection's request
/// multiplexer).
private func registerW4NATS(name: String, configuration: Benchmark.Configuration, sendAsap: Bool) {
    let messages = Workload.w4Messages
    let module = SetupBox<(server: BenchmarkServer, connection: NATSConnection, admin: RawJetStream)>()
    Benchmark(name, configuration: configuration) { benchmark in
        let (_, connection, admin) = module.unwrapped
        do {
            try admin.purge(stream: Workload.streamName)
            benchmark.startMeasurement()
            let meter = ThroughputMeter()
            let js = connection.jetStream()
            let payload = Workload.payload
            for _ in 0..<messages {
                blackHole(try await js.publish(subject: Workload.jetStreamSubject, payload: payload))
            }
            meter.finish(benchmark, operations: messages)
            benchmark.stopMeasurement()
            try admin.expectMessageCount(stream: Workload.streamName, messages)
        } catch {
            benchmark.error("\(error)")
        }
    } setup: {
        let server = try BenchmarkServer.start()
        let admin = try RawJetStream(connection: RawConnection(url: server.url))
        try admin.addStream(name: Workload.streamName, subjects: Workload.streamSubjects)
        module.value = (server, try await NATSConnection.connectForBenchmark(server, sendAsap: sendAsap), admin)
    } teardown: {
        await module.value?.connection.close()
        module.value?.server.stop()
        module.value = nil
    }

}

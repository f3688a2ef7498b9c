import Benchmark
import BenchmarkSupport
import CNATSRaw
import EventBus
import EventBusJetStream
import NATS

// W4: 20,000 JetStream publishes of 128 bytes, one at a time, each waiting for its ack (what
// `EventBus.publish` does for one publisher). Messages per second. The stream is purged before
// every iteration (unmeasured), and afterwards it must hold exactly the messages published.
// "NATS events" and "NATS publisher events" publish the messages the EventBus sends (a new
// event's CloudEvents headers and `Nats-Msg-Id` per publish) through the NATS module's
// `publish` and through its `NATSJetStreamPublisher` (the bus's path): what the module alone
// achieves on the bus's messages, the like-for-like ceiling of "W4 EventBus".

func registerW4() {
    let configuration = BenchmarkSettings.live(metrics: BenchmarkMetrics.throughputWorkload, scalingFactor: .kilo)
    let messages = Workload.w4Messages

    registerW4Raw(name: "W4 raw", configuration: configuration, eventHeaders: false)
    registerW4Raw(name: "W4 raw events", configuration: configuration, eventHeaders: true)

    registerW4NATS(name: "W4 NATS", configuration: configuration, sendAsap: false)
    registerW4NATS(name: "W4 NATS send-asap", configuration: configuration, sendAsap: true)
    registerW4NATSEvents(name: "W4 NATS events", configuration: configuration, throughPublisher: false)
    registerW4NATSEvents(name: "W4 NATS publisher events", configuration: configuration, throughPublisher: true)

    liveBenchmark("W4 EventBus", configuration: configuration) { benchmark, fixture in
        let (bus, admin) = fixture
        try admin.purge(stream: Workload.streamName)
        benchmark.startMeasurement()
        let meter = ThroughputMeter()
        for _ in 0..<messages {
            blackHole(try await bus.publish(benchmarkEvent()))
        }
        meter.finish(benchmark, operations: messages)
        benchmark.stopMeasurement()
        try admin.expectMessageCount(stream: Workload.streamName, messages)
    } setup: { server in
        // The bus creates its stream; the raw context only purges and counts.
        (bus: try await makeBenchmarkBus(server), admin: try RawJetStream(server))
    } teardown: { fixture in
        await fixture.bus.close()
    }
}

/// The NATS module's W4: `jetStream().publish` on a connection with the default configuration
/// (cnats's blocking request on the blocking executor) or with SendAsap (the connection's request
/// multiplexer).
private func registerW4NATS(name: String, configuration: Benchmark.Configuration, sendAsap: Bool) {
    let messages = Workload.w4Messages
    liveBenchmark(name, configuration: configuration) { benchmark, module in
        let (connection, admin) = module
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
    } setup: { server -> (connection: NATSConnection, admin: RawJetStream) in
        let admin = try RawJetStream.workloadStream(on: server)
        return (connection: try await NATSConnection.connectForBenchmark(server, sendAsap: sendAsap), admin: admin)
    } teardown: { module in
        await module.connection.close()
    }
}

/// Raw cnats's W4: js_Publish of the plain payload, or (`eventHeaders`) js_PublishMsg of the
/// message the EventBus sends (its CloudEvents headers and a 36-character id in `ce-id` and
/// `Nats-Msg-Id`, which the server checks against its duplicate window): the like-for-like
/// baseline of "W4 EventBus".
private func registerW4Raw(name: String, configuration: Benchmark.Configuration, eventHeaders: Bool) {
    let messages = Workload.w4Messages
    let template = eventHeaders ? RawEventHeaders(benchmarkEventHeaders(0)) : nil
    liveBenchmark(name, configuration: configuration) { benchmark, raw throws(RawFailure) in
        let (js, subject, iterations) = raw
        let iteration = iterations.next()
        try js.purge(stream: Workload.streamName)
        benchmark.startMeasurement()
        let meter = ThroughputMeter()
        var errorCode = jsErrCode(0)
        let failure: natsStatus = Workload.payload.withUnsafeBytes { payload in
            for index in 0..<messages {
                let status = rawPublishAndWait(
                    js: js.pointer, subject: subject.pointer, payload: payload, eventHeaders: template, iteration: iteration,
                    index: index, errorCode: &errorCode)
                if status != NATS_OK { return status }
            }
            return NATS_OK
        }
        try rawCheck(failure, "publishing (error code \(errorCode.rawValue))")
        meter.finish(benchmark, operations: messages)
        benchmark.stopMeasurement()
        try js.expectMessageCount(stream: Workload.streamName, messages)
    } setup: { server in
        (
            js: try RawJetStream.workloadStream(on: server), subject: RawCString(Workload.jetStreamSubject),
            iterations: IterationCounter()
        )
    }
}

/// The NATS module's W4 on the EventBus's messages: each publish builds a new benchmark event's
/// headers (as the bus does) and awaits its ack, through `jetStream().publish` or, with
/// `throughPublisher`, through a `NATSJetStreamPublisher` as the bus does.
private func registerW4NATSEvents(name: String, configuration: Benchmark.Configuration, throughPublisher: Bool) {
    let messages = Workload.w4Messages
    liveBenchmark(name, configuration: configuration) { benchmark, module in
        let (connection, admin) = module
        try admin.purge(stream: Workload.streamName)
        let js = connection.jetStream()
        let publisher = throughPublisher ? try await js.makePublisher() : nil
        benchmark.startMeasurement()
        let meter = ThroughputMeter()
        for _ in 0..<messages {
            let event = benchmarkEvent()
            let headers = CloudEventsNATSBinding.headers(for: event)
            let options = NATSPublishOptions(messageID: event.id)
            if let publisher {
                let pending = try await publisher.publish(
                    subject: Workload.jetStreamSubject, payload: event.data, headers: headers, options: options)
                blackHole(try await pending.ack())
            } else {
                blackHole(
                    try await js.publish(
                        subject: Workload.jetStreamSubject, payload: event.data, headers: headers, options: options))
            }
        }
        meter.finish(benchmark, operations: messages)
        benchmark.stopMeasurement()
        try admin.expectMessageCount(stream: Workload.streamName, messages)
        await publisher?.close()
    } setup: { server -> (connection: NATSConnection, admin: RawJetStream) in
        let admin = try RawJetStream.workloadStream(on: server)
        return (connection: try await NATSConnection.connectForBenchmark(server, sendAsap: false), admin: admin)
    } teardown: { module in
        await module.connection.close()
    }
}

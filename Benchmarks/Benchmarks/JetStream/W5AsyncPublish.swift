import Benchmark
import BenchmarkSupport
import CNATSRaw
import EventBus
import EventBusJetStream
import NATS

// W5: 200,000 asynchronous JetStream publishes of 128 bytes with at most 4,096 awaiting their
// acks; the iteration ends when every ack arrived. Messages per second. The stream is purged
// before every iteration (unmeasured) and must afterwards hold exactly the messages published.
//
// Raw: js_PublishAsync (MaxPending 4,096, MaxWait 10 s per publish), then
// js_PublishAsyncComplete. NATS: NATSJetStreamPublisher with its defaults (4,096 in flight, a
// generated Nats-Msg-Id on every publish so that a resend is safe). EventBus: the bus's publish
// awaits each ack, so 4,096 tasks publish at once (a task group topped up as publishes finish).
// "W5 raw events" publishes the EventBus's messages (headers and a message id each) from C.

func registerW5() {
    let configuration = BenchmarkSettings.live(metrics: BenchmarkMetrics.throughputWorkload, scalingFactor: .kilo)
    let messages = Workload.w5Messages

    registerW5Raw(name: "W5 raw", configuration: configuration, eventHeaders: false)
    registerW5Raw(name: "W5 raw events", configuration: configuration, eventHeaders: true)

    registerW5NATS(name: "W5 NATS", configuration: configuration, assignMessageIDs: true)
    registerW5NATS(name: "W5 NATS no message ids", configuration: configuration, assignMessageIDs: false)

    let bus = SetupBox<(server: BenchmarkServer, bus: JetStreamEventBus, admin: RawJetStream)>()
    Benchmark("W5 EventBus", configuration: configuration) { benchmark in
        let (_, bus, admin) = bus.unwrapped
        do {
            try admin.purge(stream: Workload.streamName)
            benchmark.startMeasurement()
            let meter = ThroughputMeter()
            try await withThrowingTaskGroup(of: Void.self) { group in
                var started = 0
                while started < messages {
                    if started >= Workload.w5InFlight { try await group.next() }
                    group.addTask { blackHole(try await bus.publish(benchmarkEvent())) }
                    started += 1
                }
                try await group.waitForAll()
            }
            meter.finish(benchmark, operations: messages)
            benchmark.stopMeasurement()
            try admin.expectMessageCount(stream: Workload.streamName, messages)
        } catch {
            benchmark.error("\(error)")
        }
    } setup: {
        let server = try BenchmarkServer.start()
        let eventBus = try await makeBenchmarkBus(server) { $0.maxPendingPublishes = Workload.w5InFlight }
        bus.value = (server, eventBus, try RawJetStream(connection: RawConnection(url: server.url)))
    } teardown: {
        await bus.value?.bus.close()
        bus.value?.server.stop()
        bus.value = nil
    }
}

/// Raw cnats's W5 with plain 128-byte messages, or (`eventHeaders`) with the headers the EventBus
/// sends (CloudEvents attributes and a `Nats-Msg-Id` per message): the like-for-like ceiling for
/// "W5 EventBus" and for the NATS module's publisher, which sends a message id too.
private func registerW5Raw(name: String, configuration: Benchmark.Configuration, eventHeaders: Bool) {
    let messages = Workload.w5Messages
    let raw = SetupBox<(server: BenchmarkServer, js: RawJetStream, subject: RawCString, iterations: IterationCounter)>()
    let template = eventHeaders ? RawEventHeaders(benchmarkEventHeaders(0)) : nil
    Benchmark(name, configuration: configuration) { benchmark in
        let (_, js, subject, iterations) = raw.unwrapped
        do throws(RawFailure) {
            try js.purge(stream: Workload.streamName)
            benchmark.startMeasurement()
            let meter = ThroughputMeter()
            var options = jsPubOptions()
            jsPubOptions_Init(&options)
            options.MaxWait = 10_000
            let failedBefore = js.failures.value
            let iteration = iterations.next()
            let failure: natsStatus = Workload.payload.withUnsafeBytes { payload in
                for index in 0..<messages {
                    var status: natsStatus
                    if let template {
                        // A C program publishing CloudEvents: a message with the bus's headers and
                        // an id of its own.
                        status = template.publish(
                            js: js.pointer, subject: subject.pointer, payload: payload, id: "raw-\(iteration)-\(index)",
                            options: &options)
                    } else {
                        repeat {
                            // NATS_TIMEOUT: the window stayed full for StallWait (200 ms); try again.
                            status = js_PublishAsync(js.pointer, subject.pointer, payload.baseAddress, Int32(payload.count), &options)
                        } while status == NATS_TIMEOUT
                    }
                    if status != NATS_OK { return status }
                }
                var complete = jsPubOptions()
                jsPubOptions_Init(&complete)
                complete.MaxWait = 60_000
                return js_PublishAsyncComplete(js.pointer, &complete)
            }
            try rawCheck(failure, "js_PublishAsync")
            meter.finish(benchmark, operations: messages)
            benchmark.stopMeasurement()
            if js.failures.value != failedBefore {
                throw RawFailure(description: "\(js.failures.value - failedBefore) publishes failed")
            }
            try js.expectMessageCount(stream: Workload.streamName, messages)
        } catch {
            benchmark.error(error.description)
        }
    } setup: {
        let server = try BenchmarkServer.start()
        let js = try RawJetStream(connection: RawConnection(url: server.url))
        try js.addStream(name: Workload.streamName, subjects: Workload.streamSubjects)
        raw.value = (server, js, RawCString(Workload.jetStreamSubject), IterationCounter())
    } teardown: {
        raw.value?.server.stop()
        raw.value = nil
    }

}

/// The NATS module's W5: NATSJetStreamPublisher with its defaults (a generated `Nats-Msg-Id` on
/// every publish, so that a resend is safe; the server then checks each against its duplicate
/// window), or without generated ids (the same messages as "W5 raw").
private func registerW5NATS(name: String, configuration: Benchmark.Configuration, assignMessageIDs: Bool) {
    let messages = Workload.w5Messages
    let module = SetupBox<(server: BenchmarkServer, connection: NATSConnection, publisher: NATSJetStreamPublisher, admin: RawJetStream)>()
    Benchmark(name, configuration: configuration) { benchmark in
        let (_, _, publisher, admin) = module.unwrapped
        do {
            try admin.purge(stream: Workload.streamName)
            benchmark.startMeasurement()
            let meter = ThroughputMeter()
            let payload = Workload.payload
            for _ in 0..<messages {
                blackHole(try await publisher.publish(subject: Workload.jetStreamSubject, payload: payload))
            }
            await publisher.waitForPending()
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
        let connection = try await NATSConnection.connectForBenchmark(server)
        let publisher = try await connection.jetStream().makePublisher(
            configuration: .init(maxPending: Workload.w5InFlight, assignMessageIDs: assignMessageIDs))
        module.value = (server, connection, publisher, admin)
    } teardown: {
        await module.value?.publisher.close()
        await module.value?.connection.close()
        module.value?.server.stop()
        module.value = nil
    }

}

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
// generated Nats-Msg-Id on every publish so that a resend is safe). EventBus (default
// configuration: a publish window of 4,096): "W5 EventBus" is the natural way without the batch
// API: `publish` awaits its ack, so 4,096 tasks publish at once (a task group topped up as
// publishes finish); "W5 EventBus batch" builds the events in chunks of 4,096 and publishes each
// chunk with one `publish(contentsOf:)` call, one chunk after another. "W5 raw events" publishes
// the EventBus's messages (its CloudEvents headers and a 36-character id per message, in
// `ce-id` and `Nats-Msg-Id`) from C: the like-for-like ceiling of both EventBus variants.

func registerW5() {
    let configuration = BenchmarkSettings.live(metrics: BenchmarkMetrics.throughputWorkload, scalingFactor: .kilo)
    let messages = Workload.w5Messages

    registerW5Raw(name: "W5 raw", configuration: configuration, eventHeaders: false)
    registerW5Raw(name: "W5 raw events", configuration: configuration, eventHeaders: true)
    registerW5Raw(name: "W5 raw message ids", configuration: configuration, eventHeaders: false, messageIDs: true)

    registerW5NATS(name: "W5 NATS", configuration: configuration, assignMessageIDs: true)
    registerW5NATS(name: "W5 NATS no message ids", configuration: configuration, assignMessageIDs: false)

    liveBenchmark("W5 EventBus", configuration: configuration) { benchmark, fixture in
        let (bus, admin) = fixture
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
    } setup: { server in
        // The bus creates its stream; the raw context only purges and counts.
        (bus: try await makeBenchmarkBus(server), admin: try RawJetStream(server))
    } teardown: { fixture in
        await fixture.bus.close()
    }

    liveBenchmark("W5 EventBus batch", configuration: configuration) { benchmark, fixture in
        let (bus, admin) = fixture
        try admin.purge(stream: Workload.streamName)
        benchmark.startMeasurement()
        let meter = ThroughputMeter()
        var published = 0
        while published < messages {
            // A service with events to publish builds them and hands them over in one call.
            let count = min(Workload.w5BatchSize, messages - published)
            var events: [Event] = []
            events.reserveCapacity(count)
            for _ in 0..<count { events.append(benchmarkEvent()) }
            blackHole(try await bus.publish(contentsOf: events))
            published += count
        }
        meter.finish(benchmark, operations: messages)
        benchmark.stopMeasurement()
        try admin.expectMessageCount(stream: Workload.streamName, messages)
    } setup: { server in
        (bus: try await makeBenchmarkBus(server), admin: try RawJetStream(server))
    } teardown: { fixture in
        await fixture.bus.close()
    }
}

/// Raw cnats's W5 with plain 128-byte messages, or (`eventHeaders`) with the headers the EventBus
/// sends (CloudEvents attributes and a 36-character id per message in `ce-id` and `Nats-Msg-Id`):
/// the like-for-like ceiling for "W5 EventBus" and "W5 EventBus batch"; or (`messageIDs`) plain
/// messages with a `Nats-Msg-Id` each (`jsPubOptions.MsgId`, a counter formatted in place), the
/// like-for-like ceiling for the NATS module's publisher with its defaults.
private func registerW5Raw(
    name: String, configuration: Benchmark.Configuration, eventHeaders: Bool, messageIDs: Bool = false
) {
    let messages = Workload.w5Messages
    let template = eventHeaders ? RawEventHeaders(benchmarkEventHeaders(0)) : nil
    liveBenchmark(name, configuration: configuration) { benchmark, raw throws(RawFailure) in
        let (js, subject, iterations) = raw
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
                    // an id of its own, as long as the bus's.
                    status = withUnsafeTemporaryAllocation(of: CChar.self, capacity: 40) { id in
                        formatEventID(into: id, iteration: iteration, index: index)
                        return template.publish(
                            js: js.pointer, subject: subject.pointer, payload: payload, id: id.baseAddress!, options: &options)
                    }
                } else if messageIDs {
                    status = withUnsafeTemporaryAllocation(of: CChar.self, capacity: 32) { id in
                        formatMessageID(into: id, iteration: iteration, index: index)
                        options.MsgId = UnsafePointer(id.baseAddress)
                        defer { options.MsgId = nil }
                        var status: natsStatus
                        repeat {
                            status = js_PublishAsync(js.pointer, subject.pointer, payload.baseAddress, Int32(payload.count), &options)
                        } while status == NATS_TIMEOUT
                        return status
                    }
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
    } setup: { server in
        (
            js: try RawJetStream.workloadStream(on: server), subject: RawCString(Workload.jetStreamSubject),
            iterations: IterationCounter()
        )
    }
}

/// Writes `r<iteration>-<index>` and a NUL into `buffer` (at least 32 bytes), as a C program
/// would format a counter: no allocation.
@inline(__always)
private func formatMessageID(into buffer: UnsafeMutableBufferPointer<CChar>, iteration: Int, index: Int) {
    var position = 0
    func put(_ value: Int) {
        var digits = 1
        var rest = value / 10
        while rest > 0 {
            digits += 1
            rest /= 10
        }
        var remaining = value
        for offset in stride(from: digits - 1, through: 0, by: -1) {
            buffer[position + offset] = CChar(UInt8(ascii: "0") + UInt8(remaining % 10))
            remaining /= 10
        }
        position += digits
    }
    buffer[position] = CChar(UInt8(ascii: "r"))
    position += 1
    put(iteration)
    buffer[position] = CChar(UInt8(ascii: "-"))
    position += 1
    put(index)
    buffer[position] = 0
}

/// The NATS module's W5: NATSJetStreamPublisher with its defaults (a generated `Nats-Msg-Id` on
/// every publish, so that a resend is safe; the server then checks each against its duplicate
/// window), or without generated ids (the same messages as "W5 raw").
private func registerW5NATS(name: String, configuration: Benchmark.Configuration, assignMessageIDs: Bool) {
    let messages = Workload.w5Messages
    liveBenchmark(name, configuration: configuration) { benchmark, module in
        let (_, publisher, admin) = module
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
    } setup: { server -> (connection: NATSConnection, publisher: NATSJetStreamPublisher, admin: RawJetStream) in
        let admin = try RawJetStream.workloadStream(on: server)
        let connection = try await NATSConnection.connectForBenchmark(server)
        let publisher = try await connection.jetStream().makePublisher(
            configuration: .init(maxPending: Workload.w5InFlight, assignMessageIDs: assignMessageIDs))
        return (connection: connection, publisher: publisher, admin: admin)
    } teardown: { module in
        await module.publisher.close()
        await module.connection.close()
    }
}

import Benchmark
import BenchmarkSupport
import CNATSRaw
import EventBus
import EventBusJetStream
import NATS
import Synchronization

// W8: JetStream end to end: 10,000 messages of 128 bytes published one at a time; each is timed
// from the start of its publish until a subscriber in the same process (its own connection)
// received it, and the next is published only then. p50/p99 µs over every message.
//
// Raw: js_Publish (waits for the ack) and a push consumer (js_Subscribe, deliver new) whose
// callback takes the time, acks and signals. NATS: jetStream().publish and a NATSPushConsumer
// iterated by a task. EventBus: publish and subscribe with a group (a pull consumer), ack() on
// each delivery.

/// Where the raw subscriber's callback leaves the time it received the message.
private final class ReceiptClock: @unchecked Sendable {
    // @unchecked: written by the delivery thread before it posts `arrived`, read by the publisher
    // after waiting for it; the semaphore orders the two.
    var receivedAt: UInt64 = 0
    let arrived = RawSignal()
}

private let rawReceive: natsMsgHandler = { _, _, message, closure in
    let clock = Unmanaged<ReceiptClock>.fromOpaque(closure!).takeUnretainedValue()
    clock.receivedAt = Clocks.monotonicNanos()
    natsMsg_Ack(message, nil)
    // The message is ours once handed to the callback.
    natsMsg_Destroy(message)
    clock.arrived.signal()
}

/// The receipt times of the NATS and EventBus subscribers, handed to the publishing task.
private final class Receipts: Sendable {
    let signal = AsyncSignal()
    let lastReceivedAt = Atomic<UInt64>(0)
    let count = Atomic<Int>(0)

    func received() {
        lastReceivedAt.store(Clocks.monotonicNanos(), ordering: .releasing)
        count.add(1, ordering: .relaxed)
        signal.signal()
    }
}

func registerW8() {
    let configuration = BenchmarkSettings.live(metrics: BenchmarkMetrics.latencyWorkload)
    let messages = Workload.w8Messages

    let raw = SetupBox<(server: BenchmarkServer, js: RawJetStream, subscriber: RawJetStream, subject: RawCString, iterations: IterationCounter, clocks: KeepAlive<ReceiptClock>)>()
    Benchmark("W8 raw", configuration: configuration) { benchmark in
        let (_, js, subscriber, subject, iterations, clocks) = raw.unwrapped
        let iteration = iterations.next()
        let durable = "w8-raw-\(iteration)"
        let clock = ReceiptClock()
        clocks.keep(clock)
        do throws(RawFailure) {
            try subscriber.addConsumer(
                stream: Workload.streamName, durable: durable, maxAckPending: Int64(Workload.maxAckPending),
                deliverSubject: "w8.deliver.raw.\(iteration)", deliverNew: true)
            defer { subscriber.deleteConsumer(stream: Workload.streamName, durable: durable) }
            var options = jsSubOptions()
            try rawCheck(jsSubOptions_Init(&options), "jsSubOptions_Init")
            let streamName = RawCString(Workload.streamName)
            let consumerName = RawCString(durable)
            options.Stream = UnsafePointer(streamName.pointer)
            options.Consumer = UnsafePointer(consumerName.pointer)
            options.ManualAck = true
            var subscription: OpaquePointer?
            var errorCode = jsErrCode(0)
            try rawCheck(
                js_Subscribe(
                    &subscription, subscriber.pointer, subject.pointer, rawReceive, Unmanaged.passUnretained(clock).toOpaque(),
                    nil, &options, &errorCode),
                "js_Subscribe (error code \(errorCode.rawValue))")
            defer {
                natsSubscription_Unsubscribe(subscription)
                // Unsubscribed above; this frees the subscription object.
                natsSubscription_Destroy(subscription)
            }
            try subscriber.connection.flush()
            benchmark.startMeasurement()
            var recorder = LatencyRecorder(capacity: messages)
            let failure: RawFailure? = Workload.payload.withUnsafeBytes { payload in
                for index in 0..<messages {
                    var ack: UnsafeMutablePointer<jsPubAck>?
                    let start = Clocks.monotonicNanos()
                    let status = js_Publish(&ack, js.pointer, subject.pointer, payload.baseAddress, Int32(payload.count), nil, &errorCode)
                    // The ack is ours to free.
                    jsPubAck_Destroy(ack)
                    if status != NATS_OK {
                        return RawFailure(description: "js_Publish: \(String(cString: natsStatus_GetText(status))) (error code \(errorCode.rawValue))")
                    }
                    guard clock.arrived.wait(milliseconds: 30_000) else {
                        return RawFailure(description: "message \(index) did not arrive within 30 s")
                    }
                    recorder.record(nanos: clock.receivedAt - start)
                }
                return nil
            }
            if let failure { throw failure }
            recorder.stop()
            benchmark.stopMeasurement()
            recorder.finish(benchmark)
            withExtendedLifetime((streamName, consumerName)) {}
        } catch {
            benchmark.error(error.description)
        }
    } setup: {
        let server = try BenchmarkServer.start()
        let js = try RawJetStream(connection: RawConnection(url: server.url))
        try js.addStream(name: Workload.streamName, subjects: Workload.streamSubjects)
        let subscriber = try RawJetStream(connection: RawConnection(url: server.url))
        raw.value = (server, js, subscriber, RawCString(Workload.jetStreamSubject), IterationCounter(), KeepAlive())
    } teardown: {
        raw.value?.server.stop()
        raw.value = nil
    }

    registerW8NATS(name: "W8 NATS", configuration: configuration, sendAsap: false)
    registerW8NATS(name: "W8 NATS send-asap", configuration: configuration, sendAsap: true)

    let bus = SetupBox<(server: BenchmarkServer, publisher: JetStreamEventBus, subscriber: JetStreamEventBus, iterations: IterationCounter)>()
    Benchmark("W8 EventBus", configuration: configuration) { benchmark in
        let (_, publisher, subscriber, iterations) = bus.unwrapped
        do {
            let subscription = try await subscriber.subscribe(
                Workload.eventSubject, options: .init(group: "w8-bus-\(iterations.next())", start: .new))
            let receipts = Receipts()
            let receiver = Task {
                for try await delivery in subscription {
                    receipts.received()
                    try await delivery.ack()
                }
            }
            let watchdog = startWatchdog(progress: { receipts.count.load(ordering: .relaxed) }, onStall: { receipts.signal.fail() })
            defer {
                watchdog.cancel()
                receiver.cancel()
            }
            benchmark.startMeasurement()
            var recorder = LatencyRecorder(capacity: messages)
            for index in 0..<messages {
                let start = Clocks.monotonicNanos()
                blackHole(try await publisher.publish(benchmarkEvent()))
                guard await receipts.signal.wait() else {
                    benchmark.error("event \(index) did not arrive")
                    return
                }
                recorder.record(nanos: receipts.lastReceivedAt.load(ordering: .acquiring) - start)
            }
            recorder.stop()
            benchmark.stopMeasurement()
            recorder.finish(benchmark)
            await subscription.close()
        } catch {
            benchmark.error("\(error)")
        }
    } setup: {
        let server = try BenchmarkServer.start()
        // Two buses on one stream: the publishing service and the subscribing one, each with its
        // own connection, as the raw and NATS variants have.
        let publisher = try await makeBenchmarkBus(server)
        let subscriber = try await makeBenchmarkBus(server)
        bus.value = (server, publisher, subscriber, IterationCounter())
    } teardown: {
        await bus.value?.publisher.close()
        await bus.value?.subscriber.close()
        bus.value?.server.stop()
        bus.value = nil
    }
}

/// The NATS module's W8: `jetStream().publish` on a connection with the default configuration
/// (cnats's blocking request on the blocking executor) or with SendAsap (the connection's request
/// multiplexer); the subscriber's connection has the default configuration.
private func registerW8NATS(name: String, configuration: Benchmark.Configuration, sendAsap: Bool) {
    let messages = Workload.w8Messages
    let module = SetupBox<(server: BenchmarkServer, publisher: NATSConnection, subscriber: NATSConnection, iterations: IterationCounter)>()
    Benchmark(name, configuration: configuration) { benchmark in
        let (_, publisher, subscriber, iterations) = module.unwrapped
        let iteration = iterations.next()
        let durable = "w8-nats-\(sendAsap ? "asap-" : "")\(iteration)"
        do {
            var consumerConfiguration = NATSConsumerConfiguration(durableName: durable)
            consumerConfiguration.maxAckPending = Workload.maxAckPending
            consumerConfiguration.deliverSubject = "w8.deliver.nats.\(sendAsap ? "asap." : "")\(iteration)"
            consumerConfiguration.deliverPolicy = .new
            consumerConfiguration.flowControl = true
            consumerConfiguration.idleHeartbeat = .seconds(5)
            let consumer = try await subscriber.jetStream().pushConsumer(stream: Workload.streamName, configuration: consumerConfiguration)
            let receipts = Receipts()
            let receiver = Task {
                for try await message in consumer {
                    receipts.received()
                    try message.ack()
                }
            }
            let watchdog = startWatchdog(progress: { receipts.count.load(ordering: .relaxed) }, onStall: { receipts.signal.fail() })
            defer {
                watchdog.cancel()
                receiver.cancel()
            }
            try await subscriber.flush()
            benchmark.startMeasurement()
            let js = publisher.jetStream()
            var recorder = LatencyRecorder(capacity: messages)
            let payload = Workload.payload
            for index in 0..<messages {
                let start = Clocks.monotonicNanos()
                blackHole(try await js.publish(subject: Workload.jetStreamSubject, payload: payload))
                guard await receipts.signal.wait() else {
                    benchmark.error("message \(index) did not arrive")
                    return
                }
                recorder.record(nanos: receipts.lastReceivedAt.load(ordering: .acquiring) - start)
            }
            recorder.stop()
            benchmark.stopMeasurement()
            recorder.finish(benchmark)
            consumer.stop()
            try await subscriber.jetStream().deleteConsumer(stream: Workload.streamName, name: durable)
        } catch {
            benchmark.error("\(error)")
        }
    } setup: {
        let server = try BenchmarkServer.start()
        let admin = try RawJetStream(connection: RawConnection(url: server.url))
        try admin.addStream(name: Workload.streamName, subjects: Workload.streamSubjects)
        module.value = (
            server, try await NATSConnection.connectForBenchmark(server, sendAsap: sendAsap),
            try await NATSConnection.connectForBenchmark(server),
            IterationCounter()
        )
    } teardown: {
        await module.value?.publisher.close()
        await module.value?.subscriber.close()
        module.value?.server.stop()
        module.value = nil
    }

}

import Benchmark
import BenchmarkSupport
import CNATSRaw
import NATS
import Synchronization

// W7: a durable push consumer receives 200,000 preloaded messages of 128 bytes and acknowledges
// each. Messages per second. As in W6, the messages are stored once per process and every
// iteration creates a new durable consumer (unmeasured; flow control and 5 s heartbeats,
// MaxAckPending 1,000) that delivers all of them.
//
// Raw: js_Subscribe bound to the consumer with manual acks; its callback acks and counts (cnats
// answers flow control itself). NATS: NATSPushConsumer, ack() on each message. The EventBus has
// no push consumers (its groups are pull consumers): its figure is "W6 EventBus".

/// What one raw iteration's callback counts into; kept alive by the setup box for the whole
/// process, because a callback may still be running when the iteration unsubscribes.
private final class PushCounter: @unchecked Sendable {
    // @unchecked: `received` is touched only by the subscription's single delivery thread.
    var received = 0
    let target: Int
    let done = RawSignal()

    init(target: Int) { self.target = target }
}

private let rawAckCount: natsMsgHandler = { _, _, message, closure in
    let counter = Unmanaged<PushCounter>.fromOpaque(closure!).takeUnretainedValue()
    natsMsg_Ack(message, nil)
    // The message is ours once handed to the callback.
    natsMsg_Destroy(message)
    counter.received += 1
    if counter.received == counter.target { counter.done.signal() }
}

func registerW7() {
    let configuration = BenchmarkSettings.live(metrics: BenchmarkMetrics.throughputWorkload, scalingFactor: .kilo)
    let messages = Workload.w7Messages

    let raw = SetupBox<(server: BenchmarkServer, js: RawJetStream, subject: RawCString, iterations: IterationCounter, counters: KeepAlive<PushCounter>)>()
    Benchmark("W7 raw", configuration: configuration) { benchmark in
        let (_, js, subject, iterations, counters) = raw.unwrapped
        let iteration = iterations.next()
        let durable = "w7-raw-\(iteration)"
        let counter = PushCounter(target: messages)
        counters.keep(counter)
        do throws(RawFailure) {
            try js.addConsumer(
                stream: Workload.streamName, durable: durable, maxAckPending: Int64(Workload.maxAckPending),
                deliverSubject: "w7.deliver.raw.\(iteration)")
            defer { js.deleteConsumer(stream: Workload.streamName, durable: durable) }
            var options = jsSubOptions()
            try rawCheck(jsSubOptions_Init(&options), "jsSubOptions_Init")
            let streamName = RawCString(Workload.streamName)
            let consumerName = RawCString(durable)
            options.Stream = UnsafePointer(streamName.pointer)
            options.Consumer = UnsafePointer(consumerName.pointer)
            options.ManualAck = true
            benchmark.startMeasurement()
            let meter = ThroughputMeter()
            var subscription: OpaquePointer?
            var errorCode = jsErrCode(0)
            try rawCheck(
                js_Subscribe(
                    &subscription, js.pointer, subject.pointer, rawAckCount, Unmanaged.passUnretained(counter).toOpaque(), nil,
                    &options, &errorCode),
                "js_Subscribe (error code \(errorCode.rawValue))")
            defer {
                natsSubscription_Unsubscribe(subscription)
                // Unsubscribed above; this frees the subscription object.
                natsSubscription_Destroy(subscription)
            }
            guard counter.done.wait(milliseconds: 60_000) else {
                throw RawFailure(description: "received \(counter.received) of \(messages) within 60 s")
            }
            try js.connection.flush()
            meter.finish(benchmark, operations: messages)
            benchmark.stopMeasurement()
            withExtendedLifetime((streamName, consumerName)) {}
        } catch {
            benchmark.error(error.description)
        }
    } setup: {
        let server = try BenchmarkServer.start()
        let js = try RawJetStream(connection: RawConnection(url: server.url))
        try js.addStream(name: Workload.streamName, subjects: Workload.streamSubjects)
        try js.preload(subject: Workload.jetStreamSubject, count: messages, payload: Workload.payload)
        raw.value = (server, js, RawCString(Workload.jetStreamSubject), IterationCounter(), KeepAlive())
    } teardown: {
        raw.value?.server.stop()
        raw.value = nil
    }

    let module = SetupBox<(server: BenchmarkServer, connection: NATSConnection, iterations: IterationCounter)>()
    Benchmark("W7 NATS", configuration: configuration) { benchmark in
        let (_, connection, iterations) = module.unwrapped
        let iteration = iterations.next()
        let durable = "w7-nats-\(iteration)"
        let js = connection.jetStream()
        do {
            var consumerConfiguration = NATSConsumerConfiguration(durableName: durable)
            consumerConfiguration.maxAckPending = Workload.maxAckPending
            consumerConfiguration.deliverSubject = "w7.deliver.nats.\(iteration)"
            consumerConfiguration.flowControl = true
            consumerConfiguration.idleHeartbeat = .seconds(5)
            benchmark.startMeasurement()
            let meter = ThroughputMeter()
            let consumer = try await js.pushConsumer(stream: Workload.streamName, configuration: consumerConfiguration)
            var received = 0
            for try await message in consumer {
                try message.ack()
                received += 1
                if received == messages { break }
            }
            try await connection.flush()
            meter.finish(benchmark, operations: messages)
            benchmark.stopMeasurement()
            consumer.stop()
            try await js.deleteConsumer(stream: Workload.streamName, name: durable)
            if received != messages { benchmark.error("received \(received) of \(messages)") }
        } catch {
            benchmark.error("\(error)")
        }
    } setup: {
        let server = try BenchmarkServer.start()
        let js = try RawJetStream(connection: RawConnection(url: server.url))
        try js.addStream(name: Workload.streamName, subjects: Workload.streamSubjects)
        try js.preload(subject: Workload.jetStreamSubject, count: messages, payload: Workload.payload)
        module.value = (server, try await NATSConnection.connectForBenchmark(server), IterationCounter())
    } teardown: {
        await module.value?.connection.close()
        module.value?.server.stop()
        module.value = nil
    }
}

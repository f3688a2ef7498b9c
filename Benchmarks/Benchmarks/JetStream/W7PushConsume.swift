import Benchmark
import BenchmarkSupport
import CNATSRaw
import EventBus
import EventBusJetStream
import NATS
import Synchronization

// W7: a durable push consumer receives 200,000 preloaded messages of 128 bytes and acknowledges
// each. Messages per second. As in W6, the messages are stored once per process and every
// iteration creates a new durable consumer (unmeasured; flow control and 5 s heartbeats,
// MaxAckPending 1,000) that delivers all of them.
//
// Raw: js_Subscribe bound to the consumer with manual acks; its callback acks and counts (cnats
// answers flow control itself). NATS: NATSPushConsumer, ack() on each message. EventBus: a bus
// whose groups are push consumers (`groupConsumer = .push`; pull is its default, see W6),
// subscribe with a group, ack() on each delivery, on messages as the bus publishes them; "W7
// EventBus consume" is the same bus through `consume` (default subscription options, a handler
// that only counts, `consume` acking each event); "W7 raw events" is raw cnats on the same messages.

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

    registerW7Raw(name: "W7 raw", configuration: configuration, eventHeaders: false)
    registerW7Raw(name: "W7 raw events", configuration: configuration, eventHeaders: true)

    // The module's push consumer, each iteration's on a deliver subject of its own under `prefix`.
    func pushConsumer(deliverSubjectPrefix prefix: String) -> @Sendable (NATSJetStream, String, Int) async throws -> NATSPushConsumer {
        { js, durable, iteration in
            try await js.pushConsumer(
                stream: Workload.streamName, configuration: .workload(durable: durable, deliverSubject: "\(prefix).\(iteration)"))
        }
    }
    registerNATSConsume(
        name: "W7 NATS", configuration: configuration, messages: messages, durablePrefix: "w7-nats", consumerMeasured: true,
        makeConsumer: pushConsumer(deliverSubjectPrefix: "w7.deliver.nats"), stop: { $0.stop() })
    registerNATSConsume(
        name: "W7 NATS on delivery thread", configuration: configuration, messages: messages,
        durablePrefix: "w7-nats-delivery", consumerMeasured: true,
        makeConsumer: pushConsumer(deliverSubjectPrefix: "w7.deliver.nats.delivery"), stop: { $0.stop() },
        executor: { $0.deliveryExecutor })

    registerEventBusConsume(
        name: "W7 EventBus", configuration: configuration, messages: messages, groupPrefix: "w7-bus",
        subscribeMeasured: true
    ) { $0.groupConsumer = .push }

    registerEventBusConsumeHandler(
        name: "W7 EventBus consume", configuration: configuration, messages: messages, groupPrefix: "w7-consume"
    ) { $0.groupConsumer = .push }
}

/// Raw cnats's W7, on plain messages or (`eventHeaders`) on the messages the EventBus stores.
private func registerW7Raw(name: String, configuration: Benchmark.Configuration, eventHeaders: Bool) {
    let messages = Workload.w7Messages
    liveBenchmark(name, configuration: configuration) { benchmark, raw throws(RawFailure) in
        let (js, subject, iterations, counters) = raw
        let iteration = iterations.next()
        let durable = "w7-raw-\(eventHeaders ? "events-" : "")\(iteration)"
        let counter = PushCounter(target: messages)
        counters.keep(counter)
        var binding = try js.addWorkloadConsumer(
            durable: durable, deliverSubject: "w7.deliver.raw.\(iteration)", manualAck: true)
        defer { js.deleteConsumer(stream: Workload.streamName, durable: durable) }
        benchmark.startMeasurement()
        let meter = ThroughputMeter()
        var subscription: OpaquePointer?
        var errorCode = jsErrCode(0)
        try rawCheck(
            js_Subscribe(
                &subscription, js.pointer, subject.pointer, rawAckCount, Unmanaged.passUnretained(counter).toOpaque(), nil,
                &binding.options, &errorCode),
            "js_Subscribe (error code \(errorCode.rawValue))")
        defer { rawUnsubscribe(subscription) }
        guard counter.done.wait(milliseconds: 60_000) else {
            throw RawFailure(description: "received \(counter.received) of \(messages) within 60 s")
        }
        try js.connection.flush()
        meter.finish(benchmark, operations: messages)
        benchmark.stopMeasurement()
        withExtendedLifetime(binding) {}
    } setup: { server in
        (
            js: try RawJetStream.workloadStream(on: server, preloaded: messages, asEvents: eventHeaders),
            subject: RawCString(Workload.jetStreamSubject), iterations: IterationCounter(), counters: KeepAlive<PushCounter>()
        )
    }
}

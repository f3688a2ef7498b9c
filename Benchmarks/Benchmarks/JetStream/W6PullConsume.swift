import Benchmark
import BenchmarkSupport
import CNATSRaw
import EventBus
import EventBusJetStream
import NATS

// W6: a durable pull consumer receives 200,000 preloaded messages of 128 bytes in batches of 500
// and acknowledges each. Messages per second. The messages are stored once per benchmark process
// (setup); every iteration creates a new durable consumer (unmeasured) that starts at the
// beginning of the stream, so each iteration reads the same 200,000.
//
// Raw: js_PullSubscribe bound to the consumer, natsSubscription_Fetch(500) in a loop,
// natsMsg_Ack on each, a flush at the end. NATS: NATSPullConsumer iterated continuously with
// batch 500, ack() on each, a flush at the end. EventBus: subscribe with a group (a durable pull
// consumer, pull batch 500), ack() on each delivery; its messages are events as the bus publishes
// them (128 bytes of data plus the CloudEvents headers), which the bus turns into `Event`s.
// All three consumers allow 1,000 unacknowledged messages (MaxAckPending). "W6 EventBus consume"
// is the EventBus protocol's handler form with the bus's defaults: `consume` with a group (pull
// batch 256, 256 in flight), a handler that only counts, `consume` acking each event. "W6 raw
// events" is raw cnats on the EventBus's messages, the like-for-like ceiling for both; "W6 NATS
// events" is the NATS module's consumer on them, which separates the module's share of the bus's
// cost from the bus's own.

func registerW6() {
    let configuration = BenchmarkSettings.live(metrics: BenchmarkMetrics.throughputWorkload, scalingFactor: .kilo)
    let messages = Workload.w6Messages

    registerW6Raw(name: "W6 raw", configuration: configuration, eventHeaders: false)
    registerW6Raw(name: "W6 raw events", configuration: configuration, eventHeaders: true)

    for asEvents in [false, true] {
        registerNATSConsume(
            name: asEvents ? "W6 NATS events" : "W6 NATS", configuration: configuration, messages: messages,
            durablePrefix: "w6-nats", consumerMeasured: false, asEvents: asEvents,
            makeConsumer: { js, durable, _ in
                try await js.ensureConsumer(stream: Workload.streamName, .workload(durable: durable))
                return try await js.pullConsumer(stream: Workload.streamName, name: durable, options: .init(batch: Workload.w6Batch))
            },
            stop: { $0.stop() })
    }

    registerEventBusConsume(
        name: "W6 EventBus", configuration: configuration, messages: messages, groupPrefix: "w6-bus",
        subscribeMeasured: false
    ) { $0.pullBatch = Workload.w6Batch }

    registerEventBusConsumeHandler(name: "W6 EventBus consume", configuration: configuration, messages: messages, groupPrefix: "w6-consume")
    // The same with metrics and tracing bootstrapped (BenchmarkTelemetry): the cost of observability,
    // as a ratio to the line above (which runs with swift-metrics' and tracing's no-op defaults).
    registerEventBusConsumeHandler(
        name: "W6 EventBus consume instrumented", configuration: configuration, messages: messages,
        groupPrefix: "w6-consume-instrumented", instrumented: true)
}

/// Raw cnats's W6, on plain 128-byte messages or (`eventHeaders`) on the messages the EventBus
/// stores (the same 128 bytes plus the CloudEvents headers): the ceiling for the EventBus, which
/// must read those headers, on the same stream content. Raw never reads the headers.
private func registerW6Raw(name: String, configuration: Benchmark.Configuration, eventHeaders: Bool) {
    let messages = Workload.w6Messages
    liveBenchmark(name, configuration: configuration) { benchmark, raw throws(RawFailure) in
        let (js, subject, iterations) = raw
        let durable = "w6-raw-\(iterations.next())"
        var binding = try js.addWorkloadConsumer(durable: durable)
        defer { js.deleteConsumer(stream: Workload.streamName, durable: durable) }
        var subscription: OpaquePointer?
        var errorCode = jsErrCode(0)
        try rawCheck(
            js_PullSubscribe(&subscription, js.pointer, subject.pointer, binding.consumerName.pointer, nil, &binding.options, &errorCode),
            "js_PullSubscribe (error code \(errorCode.rawValue))")
        // Unbinds (the consumer is deleted above) and frees the subscription.
        defer { rawUnsubscribe(subscription) }
        benchmark.startMeasurement()
        let meter = ThroughputMeter()
        var received = 0
        while received < messages {
            var list = natsMsgList()
            let status = natsSubscription_Fetch(&list, subscription, Int32(Workload.w6Batch), 5_000, &errorCode)
            try rawCheck(status, "natsSubscription_Fetch (error code \(errorCode.rawValue))")
            for index in 0..<Int(list.Count) {
                try rawCheck(natsMsg_Ack(list.Msgs[index], nil), "natsMsg_Ack")
            }
            received += Int(list.Count)
            // Frees the messages and the array.
            natsMsgList_Destroy(&list)
        }
        try js.connection.flush()
        meter.finish(benchmark, operations: messages)
        benchmark.stopMeasurement()
        withExtendedLifetime(binding) {}
    } setup: { server in
        (
            js: try RawJetStream.workloadStream(on: server, preloaded: messages, asEvents: eventHeaders),
            subject: RawCString(Workload.jetStreamSubject), iterations: IterationCounter()
        )
    }
}

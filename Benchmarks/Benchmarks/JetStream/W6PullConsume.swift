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
// All three consumers allow 1,000 unacknowledged messages (MaxAckPending). "W6 raw events" is raw
// cnats on the EventBus's messages, the like-for-like ceiling for "W6 EventBus".

func registerW6() {
    let configuration = BenchmarkSettings.live(metrics: BenchmarkMetrics.throughputWorkload, scalingFactor: .kilo)
    let messages = Workload.w6Messages

    registerW6Raw(name: "W6 raw", configuration: configuration, eventHeaders: false)
    registerW6Raw(name: "W6 raw events", configuration: configuration, eventHeaders: true)

    let module = SetupBox<(server: BenchmarkServer, connection: NATSConnection, iterations: IterationCounter)>()
    Benchmark("W6 NATS", configuration: configuration) { benchmark in
        let (_, connection, iterations) = module.unwrapped
        let durable = "w6-nats-\(iterations.next())"
        let js = connection.jetStream()
        do {
            var consumerConfiguration = NATSConsumerConfiguration(durableName: durable)
            consumerConfiguration.maxAckPending = Workload.maxAckPending
            try await js.ensureConsumer(stream: Workload.streamName, consumerConfiguration)
            let consumer = try await js.pullConsumer(
                stream: Workload.streamName, name: durable, options: .init(batch: Workload.w6Batch))
            benchmark.startMeasurement()
            let meter = ThroughputMeter()
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

    let bus = SetupBox<(server: BenchmarkServer, bus: JetStreamEventBus, iterations: IterationCounter)>()
    Benchmark("W6 EventBus", configuration: configuration) { benchmark in
        let (_, bus, iterations) = bus.unwrapped
        do {
            let subscription = try await bus.subscribe(
                Workload.eventSubject,
                options: .init(group: "w6-bus-\(iterations.next())", start: .all, maxInFlight: Workload.maxAckPending))
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
        let eventBus = try await makeBenchmarkBus(server) { $0.pullBatch = Workload.w6Batch }
        // The bus created its stream; fill it with events as the bus publishes them.
        let js = try RawJetStream(connection: RawConnection(url: server.url))
        try js.preload(subject: Workload.jetStreamSubject, count: messages, payload: Workload.payload, headers: benchmarkEventHeaders)
        bus.value = (server, eventBus, IterationCounter())
    } teardown: {
        await bus.value?.bus.close()
        bus.value?.server.stop()
        bus.value = nil
    }
}

/// Raw cnats's W6, on plain 128-byte messages or (`eventHeaders`) on the messages the EventBus
/// stores (the same 128 bytes plus the CloudEvents headers): the ceiling for the EventBus, which
/// must read those headers, on the same stream content. Raw never reads the headers.
private func registerW6Raw(name: String, configuration: Benchmark.Configuration, eventHeaders: Bool) {
    let messages = Workload.w6Messages
    let headers: (@Sendable (Int) -> [(String, String)])? = eventHeaders ? { @Sendable index in benchmarkEventHeaders(index) } : nil
    let raw = SetupBox<(server: BenchmarkServer, js: RawJetStream, subject: RawCString, iterations: IterationCounter)>()
    Benchmark(name, configuration: configuration) { benchmark in
        let (_, js, subject, iterations) = raw.unwrapped
        let durable = "w6-raw-\(iterations.next())"
        do throws(RawFailure) {
            try js.addConsumer(stream: Workload.streamName, durable: durable, maxAckPending: Int64(Workload.maxAckPending))
            defer { js.deleteConsumer(stream: Workload.streamName, durable: durable) }
            var options = jsSubOptions()
            try rawCheck(jsSubOptions_Init(&options), "jsSubOptions_Init")
            let streamName = RawCString(Workload.streamName)
            let consumerName = RawCString(durable)
            options.Stream = UnsafePointer(streamName.pointer)
            options.Consumer = UnsafePointer(consumerName.pointer)
            var subscription: OpaquePointer?
            var errorCode = jsErrCode(0)
            try rawCheck(
                js_PullSubscribe(&subscription, js.pointer, subject.pointer, consumerName.pointer, nil, &options, &errorCode),
                "js_PullSubscribe (error code \(errorCode.rawValue))")
            defer {
                // Unbinds (the consumer is deleted above) and frees the subscription.
                natsSubscription_Unsubscribe(subscription)
                natsSubscription_Destroy(subscription)
            }
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
            withExtendedLifetime((streamName, consumerName)) {}
        } catch {
            benchmark.error(error.description)
        }
    } setup: {
        let server = try BenchmarkServer.start()
        let js = try RawJetStream(connection: RawConnection(url: server.url))
        try js.addStream(name: Workload.streamName, subjects: Workload.streamSubjects)
        try js.preload(
            subject: Workload.jetStreamSubject, count: messages, payload: Workload.payload,
            headers: headers)
        raw.value = (server, js, RawCString(Workload.jetStreamSubject), IterationCounter())
    } teardown: {
        raw.value?.server.stop()
        raw.value = nil
    }

}

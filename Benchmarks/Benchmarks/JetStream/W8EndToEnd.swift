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
// each delivery; "W8 EventBus consume" receives through `consume` with a group instead (the
// handler takes the time; `consume` acks when it returns). Both buses have default settings.

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

/// A task running `operation`, preferring `executor` if given. Without one it is a plain `Task`,
/// as the baselines were before the preferring variants existed: `Task(executorPreference: nil)`
/// passes a (null) executor to the runtime, and although 1,000,000 actor calls measured the same
/// under it (26.8 ns each), the baselines should not depend on that.
private func task(
    preferring executor: (any TaskExecutor)?, _ operation: @escaping @Sendable () async throws -> Void
) -> Task<Void, any Error> {
    if let executor { return Task(executorPreference: executor, operation: operation) }
    return Task(operation: operation)
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

    /// Fails the publisher's wait when receipts stop coming (so that a lost message ends the
    /// iteration instead of hanging it); cancel it when the iteration ends.
    func watch() -> Task<Void, Never> {
        startWatchdog(progress: { self.count.load(ordering: .relaxed) }, onStall: { self.signal.fail() })
    }

    /// A task that takes the time of each message `consumer` delivers and acks it, preferring
    /// `executor` if given.
    func receive<Consumer: AsyncSequence & Sendable>(
        _ consumer: Consumer, preferring executor: (any TaskExecutor)? = nil
    ) -> Task<Void, any Error>
    where Consumer.Element == NATSJetStreamMessage {
        @Sendable func loop() async throws {
            for try await message in consumer {
                received()
                try message.ack()
            }
        }
        return task(preferring: executor, loop)
    }

    /// The measured part: `messages` publishes one at a time, each timed from its start until
    /// the subscriber took its time, the next only once it did.
    func measure(_ benchmark: Benchmark, messages: Int, publish: () async throws -> Void) async throws {
        benchmark.startMeasurement()
        var recorder = LatencyRecorder(capacity: messages)
        for index in 0..<messages {
            let start = Clocks.monotonicNanos()
            try await publish()
            guard await signal.wait() else {
                benchmark.error("message \(index) did not arrive")
                return
            }
            recorder.record(nanos: lastReceivedAt.load(ordering: .acquiring) - start)
        }
        recorder.stop()
        benchmark.stopMeasurement()
        recorder.finish(benchmark)
    }
}

func registerW8() {
    let configuration = BenchmarkSettings.live(metrics: BenchmarkMetrics.latencyWorkload)

    registerW8Raw(name: "W8 raw", configuration: configuration, eventHeaders: false)
    registerW8Raw(name: "W8 raw events", configuration: configuration, eventHeaders: true)

    registerW8NATS(name: "W8 NATS", configuration: configuration, sendAsap: false)
    registerW8NATS(name: "W8 NATS send-asap", configuration: configuration, sendAsap: true)
    registerW8NATS(name: "W8 NATS handler", configuration: configuration, sendAsap: false, handler: true)
    registerW8NATS(name: "W8 NATS pull", configuration: configuration, sendAsap: false, pull: true)
    registerW8NATS(name: "W8 NATS on delivery thread", configuration: configuration, sendAsap: false, onDeliveryThread: true)
    registerW8EventBusConsume(configuration: configuration)
    // With metrics and tracing bootstrapped (BenchmarkTelemetry); compare with the line above.
    registerW8EventBusConsume(configuration: configuration, instrumented: true)

    registerW8EventBusLoop(name: "W8 EventBus", configuration: configuration, onDeliveryThread: false)
    registerW8EventBusLoop(name: "W8 EventBus on delivery thread", configuration: configuration, onDeliveryThread: true)
}

/// "W8 EventBus": the subscribing bus's subscribe loop with a group that starts with new events,
/// iterated by a task (one preferring the subscription's `deliveryExecutor` with
/// `onDeliveryThread`), acking each delivery.
private func registerW8EventBusLoop(name: String, configuration: Benchmark.Configuration, onDeliveryThread: Bool) {
    let messages = Workload.w8Messages
    liveBenchmark(name, configuration: configuration) { benchmark, fixture in
        let (publisher, subscriber, iterations) = fixture
        let subscription = try await subscriber.subscribe(
            Workload.eventSubject,
            options: .init(group: "w8-bus-\(onDeliveryThread ? "delivery-" : "")\(iterations.next())", start: .new))
        let receipts = Receipts()
        let receiver = task(preferring: onDeliveryThread ? subscription.deliveryExecutor : nil) {
            for try await delivery in subscription {
                receipts.received()
                try await delivery.ack()
            }
        }
        let watchdog = receipts.watch()
        defer {
            watchdog.cancel()
            receiver.cancel()
        }
        try await receipts.measure(benchmark, messages: messages) {
            blackHole(try await publisher.publish(benchmarkEvent()))
        }
        await subscription.close()
    } setup: { server in
        // Two buses on one stream: the publishing service and the subscribing one, each with its
        // own connection, as the raw and NATS variants have.
        (
            publisher: try await makeBenchmarkBus(server), subscriber: try await makeBenchmarkBus(server),
            iterations: IterationCounter()
        )
    } teardown: { fixture in
        await fixture.publisher.close()
        await fixture.subscriber.close()
    }
}

/// "W8 EventBus consume": the subscribing bus runs `consume` with a group that starts with new
/// events, in a task; its handler takes the time. `consume` gives no sign when its consumer
/// exists, so before measuring the publisher sends probe events (another type, which the handler
/// only reports) until one arrives.
private func registerW8EventBusConsume(configuration: Benchmark.Configuration, instrumented: Bool = false) {
    let messages = Workload.w8Messages
    let probeType = "bench.probe"
    let name = instrumented ? "W8 EventBus consume instrumented" : "W8 EventBus consume"
    liveBenchmark(name, configuration: configuration) { benchmark, fixture in
        let (publisher, subscriber, iterations) = fixture
        let options = SubscriptionOptions(group: "w8-consume-\(iterations.next())", start: .new)
        let receipts = Receipts()
        let probes = ProbeCount()
        let receiver = Task {
            try await subscriber.consume(Workload.eventSubject, options: options) { delivery in
                if delivery.event.type == probeType {
                    probes.value.add(1, ordering: .relaxed)
                } else {
                    receipts.received()
                }
            }
        }
        defer { receiver.cancel() }
        // Probes published before the consumer exists are not delivered (it starts with new ones);
        // one probe every 100 ms, for at most 30 s (unmeasured).
        var waited = 0
        while probes.value.load(ordering: .relaxed) == 0 && waited < 3_000 {
            if waited % 10 == 0 {
                blackHole(
                    try await publisher.publish(
                        Event(subject: Workload.eventSubject, type: probeType, source: "/benchmarks", data: Workload.payload)))
            }
            try await Task.sleep(for: .milliseconds(10))
            waited += 1
        }
        let watchdog = receipts.watch()
        defer { watchdog.cancel() }
        guard probes.value.load(ordering: .relaxed) > 0 else {
            benchmark.error("the consume's consumer did not deliver a probe within 30 s")
            return
        }
        try await receipts.measure(benchmark, messages: messages) {
            blackHole(try await publisher.publish(benchmarkEvent()))
        }
    } setup: { server -> (publisher: JetStreamEventBus, subscriber: JetStreamEventBus, iterations: IterationCounter) in
        // Before the buses are made: they read the bootstrapped systems once.
        if instrumented { BenchmarkTelemetry.bootstrap() }
        return (
            publisher: try await makeBenchmarkBus(server), subscriber: try await makeBenchmarkBus(server),
            iterations: IterationCounter()
        )
    } teardown: { fixture in
        await fixture.publisher.close()
        await fixture.subscriber.close()
    }
}

/// Probes the consume's handler has seen.
private final class ProbeCount: Sendable {
    let value = Atomic<Int>(0)
}

/// Raw cnats's W8: js_Publish of the plain payload, or (`eventHeaders`) js_PublishMsg of the
/// message the EventBus sends (the same payload with the CloudEvents headers and an id of its
/// own), the like-for-like ceiling for "W8 EventBus"; a js_Subscribe callback on cnats's delivery
/// thread takes the time and acks.
private func registerW8Raw(name: String, configuration: Benchmark.Configuration, eventHeaders: Bool) {
    let messages = Workload.w8Messages
    let template = eventHeaders ? RawEventHeaders(benchmarkEventHeaders(0)) : nil
    liveBenchmark(name, configuration: configuration) { benchmark, raw throws(RawFailure) in
        let (js, subscriber, subject, iterations, clocks) = raw
        let iteration = iterations.next()
        let variant = eventHeaders ? "events." : ""
        let durable = "w8-raw-\(variant.replacing(".", with: "-"))\(iteration)"
        let clock = ReceiptClock()
        clocks.keep(clock)
        var binding = try subscriber.addWorkloadConsumer(
            durable: durable, deliverSubject: "w8.deliver.raw.\(variant)\(iteration)", deliverNew: true, manualAck: true)
        defer { subscriber.deleteConsumer(stream: Workload.streamName, durable: durable) }
        var subscription: OpaquePointer?
        var errorCode = jsErrCode(0)
        try rawCheck(
            js_Subscribe(
                &subscription, subscriber.pointer, subject.pointer, rawReceive, Unmanaged.passUnretained(clock).toOpaque(),
                nil, &binding.options, &errorCode),
            "js_Subscribe (error code \(errorCode.rawValue))")
        defer { rawUnsubscribe(subscription) }
        try subscriber.connection.flush()
        benchmark.startMeasurement()
        var recorder = LatencyRecorder(capacity: messages)
        let failure: RawFailure? = Workload.payload.withUnsafeBytes { payload in
            for index in 0..<messages {
                let start = Clocks.monotonicNanos()
                // With `template`: a C program publishing CloudEvents, the bus's headers and an
                // id of its own, as long as the bus's.
                let status = rawPublishAndWait(
                    js: js.pointer, subject: subject.pointer, payload: payload, eventHeaders: template, iteration: iteration,
                    index: index, errorCode: &errorCode)
                if status != NATS_OK {
                    return RawFailure(description: "publishing: \(String(cString: natsStatus_GetText(status))) (error code \(errorCode.rawValue))")
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
        withExtendedLifetime(binding) {}
    } setup: { server in
        (
            js: try RawJetStream.workloadStream(on: server), subscriber: try RawJetStream(server),
            subject: RawCString(Workload.jetStreamSubject), iterations: IterationCounter(), clocks: KeepAlive<ReceiptClock>()
        )
    }
}

/// The NATS module's W8: `jetStream().publish` on a connection with the default configuration
/// or with SendAsap (both write the request at once through the connection's request
/// multiplexer); the subscriber's connection has the default configuration and iterates its push
/// consumer in a task (one preferring the consumer's `deliveryExecutor` with `onDeliveryThread`),
/// or (`handler`) takes the time and acks in a handler on cnats's delivery thread, as raw's
/// callback does, or (`pull`) iterates a pull consumer in a task, as the EventBus's groups do
/// (separating what the pull consumer costs from what the bus adds).
private func registerW8NATS(
    name: String, configuration: Benchmark.Configuration, sendAsap: Bool, handler: Bool = false, pull: Bool = false,
    onDeliveryThread: Bool = false
) {
    let messages = Workload.w8Messages
    liveBenchmark(name, configuration: configuration) { benchmark, module in
        let (publisher, subscriber, iterations) = module
        let iteration = iterations.next()
        let variant = sendAsap ? "asap." : handler ? "handler." : pull ? "pull." : onDeliveryThread ? "delivery." : ""
        let durable = "w8-nats-\(variant.replacing(".", with: "-"))\(iteration)"
        let consumerConfiguration = NATSConsumerConfiguration.workload(
            durable: durable, deliverSubject: pull ? nil : "w8.deliver.nats.\(variant)\(iteration)", deliverNew: true)
        let receipts = Receipts()
        let js = subscriber.jetStream()
        let receiver: Task<Void, any Error>?
        let stopSubscriber: () -> Void
        if pull {
            try await js.ensureConsumer(stream: Workload.streamName, consumerConfiguration)
            let consumer = try await js.pullConsumer(stream: Workload.streamName, name: durable)
            receiver = receipts.receive(consumer)
            stopSubscriber = consumer.stop
        } else if handler {
            let subscription = try await js.pushConsumer(stream: Workload.streamName, configuration: consumerConfiguration) {
                message in
                receipts.received()
                try? message.ack()
            }
            receiver = nil
            stopSubscriber = subscription.unsubscribe
        } else {
            let consumer = try await js.pushConsumer(stream: Workload.streamName, configuration: consumerConfiguration)
            receiver = receipts.receive(consumer, preferring: onDeliveryThread ? consumer.deliveryExecutor : nil)
            stopSubscriber = consumer.stop
        }
        let watchdog = receipts.watch()
        defer {
            watchdog.cancel()
            receiver?.cancel()
        }
        try await subscriber.flush()
        let publishing = publisher.jetStream()
        let payload = Workload.payload
        try await receipts.measure(benchmark, messages: messages) {
            blackHole(try await publishing.publish(subject: Workload.jetStreamSubject, payload: payload))
        }
        stopSubscriber()
        try await js.deleteConsumer(stream: Workload.streamName, name: durable)
    } setup: { server -> (publisher: NATSConnection, subscriber: NATSConnection, iterations: IterationCounter) in
        _ = try RawJetStream.workloadStream(on: server)
        return (
            publisher: try await NATSConnection.connectForBenchmark(server, sendAsap: sendAsap),
            subscriber: try await NATSConnection.connectForBenchmark(server),
            iterations: IterationCounter()
        )
    } teardown: { module in
        await module.publisher.close()
        await module.subscriber.close()
    }
}

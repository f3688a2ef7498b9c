import Benchmark
import BenchmarkSupport
import EventBus
import EventBusJetStream
import NATS

/// W6 and W7 through the NATS module: per iteration a new durable consumer that `makeConsumer`
/// creates on the preloaded stream, acking every message, then stopped and deleted. With
/// `consumerMeasured` creating it is part of the measured time, as it is in that workload's raw
/// variant. With `executor` the messages are taken by a task that prefers the executor it gives
/// (the consumer's `deliveryExecutor`), otherwise by the benchmark's own task.
func registerNATSConsume<Consumer: AsyncSequence & Sendable>(
    name: String,
    configuration: Benchmark.Configuration,
    messages: Int,
    durablePrefix: String,
    consumerMeasured: Bool,
    asEvents: Bool = false,
    makeConsumer: @escaping @Sendable (_ js: NATSJetStream, _ durable: String, _ iteration: Int) async throws -> Consumer,
    stop: @escaping @Sendable (Consumer) -> Void,
    executor: (@Sendable (Consumer) -> any TaskExecutor)? = nil
) where Consumer.Element == NATSJetStreamMessage {
    liveBenchmark(name, configuration: configuration) { benchmark, module in
        let (connection, iterations) = module
        let iteration = iterations.next()
        let durable = "\(durablePrefix)-\(iteration)"
        let js = connection.jetStream()
        let createdFirst = consumerMeasured ? nil : try await makeConsumer(js, durable, iteration)
        benchmark.startMeasurement()
        let meter = ThroughputMeter()
        let consumer: Consumer
        if let createdFirst { consumer = createdFirst } else { consumer = try await makeConsumer(js, durable, iteration) }
        let received =
            if let executor {
                try await Task(executorPreference: executor(consumer)) { try await receiveAndAck(consumer, count: messages) }.value
            } else {
                try await receiveAndAck(consumer, count: messages)
            }
        try await connection.flush()
        meter.finish(benchmark, operations: messages)
        benchmark.stopMeasurement()
        stop(consumer)
        try await js.deleteConsumer(stream: Workload.streamName, name: durable)
        if received != messages { benchmark.error("received \(received) of \(messages)") }
    } setup: { server -> (connection: NATSConnection, iterations: IterationCounter) in
        _ = try RawJetStream.workloadStream(on: server, preloaded: messages, asEvents: asEvents)
        return (connection: try await NATSConnection.connectForBenchmark(server), iterations: IterationCounter())
    } teardown: { module in
        await module.connection.close()
    }
}

/// W6 and W7 through the EventBus: a bus configured by `adjust` (how its groups consume), a stream
/// preloaded with `messages` events as the bus publishes them, and per iteration a new group that
/// starts at the beginning and acks every delivery. With `subscribeMeasured` the subscribe is part
/// of the measured time, as creating the consumer is in that workload's raw and NATS variants.
func registerEventBusConsume(
    name: String,
    configuration: Benchmark.Configuration,
    messages: Int,
    groupPrefix: String,
    subscribeMeasured: Bool,
    adjust: @escaping @Sendable (inout JetStreamEventBus.Configuration) -> Void
) {
    liveBenchmark(name, configuration: configuration) { benchmark, fixture in
        let (bus, iterations) = fixture
        func subscribe() async throws -> EventSubscription {
            try await bus.subscribe(
                Workload.eventSubject,
                options: .init(group: "\(groupPrefix)-\(iterations.next())", start: .all, maxInFlight: Workload.maxAckPending))
        }
        let subscribedFirst = subscribeMeasured ? nil : try await subscribe()
        benchmark.startMeasurement()
        let meter = ThroughputMeter()
        let subscription: EventSubscription
        if let subscribedFirst { subscription = subscribedFirst } else { subscription = try await subscribe() }
        let received = try await receiveAndAck(subscription, count: messages)
        meter.finish(benchmark, operations: messages)
        benchmark.stopMeasurement()
        await subscription.close()
        if received != messages { benchmark.error("received \(received) of \(messages)") }
    } setup: { server -> (bus: JetStreamEventBus, iterations: IterationCounter) in
        let eventBus = try await makeBenchmarkBus(server, adjust)
        // The bus created its stream; fill it with events as the bus publishes them.
        try RawJetStream(server).preloadWorkload(messages, asEvents: true)
        return (bus: eventBus, iterations: IterationCounter())
    } teardown: { fixture in
        await fixture.bus.close()
    }
}

/// W6 and W7 through the EventBus protocol's handler form: `consume` with a group (a new one per
/// iteration, starting at the beginning) and otherwise default subscription options, on a bus
/// configured by `adjust` and a stream preloaded with `messages` events as the bus publishes them.
/// The handler only counts; `consume` acks each event when its handler returns. `consume`
/// subscribes itself, so creating the group's consumer is part of the measured time (one request,
/// a few milliseconds of a workload that takes about a second).
func registerEventBusConsumeHandler(
    name: String,
    configuration: Benchmark.Configuration,
    messages: Int,
    groupPrefix: String,
    instrumented: Bool = false,
    adjust: @escaping @Sendable (inout JetStreamEventBus.Configuration) -> Void = { _ in }
) {
    liveBenchmark(name, configuration: configuration) { benchmark, fixture in
        let (bus, iterations) = fixture
        let options = SubscriptionOptions(group: "\(groupPrefix)-\(iterations.next())", start: .all)
        benchmark.startMeasurement()
        let meter = ThroughputMeter()
        let handled = try await consumeAndCount(bus, options: options, count: messages) {
            meter.finish(benchmark, operations: messages)
            benchmark.stopMeasurement()
        }
        if handled != messages { benchmark.error("handled \(handled) of \(messages)") }
    } setup: { server -> (bus: JetStreamEventBus, iterations: IterationCounter) in
        // Before the bus is made: it reads the bootstrapped systems once.
        if instrumented { BenchmarkTelemetry.bootstrap() }
        let eventBus = try await makeBenchmarkBus(server, adjust)
        // The bus created its stream; fill it with events as the bus publishes them.
        try RawJetStream(server).preloadWorkload(messages, asEvents: true)
        return (bus: eventBus, iterations: IterationCounter())
    } teardown: { fixture in
        await fixture.bus.close()
    }
}

import Benchmark
import BenchmarkSupport
import EventBus
import EventBusJetStream

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

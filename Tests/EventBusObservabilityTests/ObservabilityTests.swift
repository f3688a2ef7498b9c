import EventBus
import EventBusJetStream
import Foundation
import Logging
import Metrics
import MetricsTestKit
import NATS
import NATSTestSupport
import Synchronization
import Testing
import Tracing

/// Metrics and traces of both backends. Each test gives its buses a metrics factory and a tracer of its
/// own (``EventBusObservability``): a process-wide bootstrap would reach every other test's buses.
@Suite("Observability")
struct ObservabilityTests {
    enum Backend: String, CaseIterable, Sendable, CustomTestStringConvertible {
        case memory
        case jetstream

        var testDescription: String { rawValue }
    }

    /// A bus under test and what to stop afterwards.
    struct Harness {
        let bus: any EventBus
        let server: NATSServerProcess?
        let metrics: TestMetrics
        let tracer: W3CTestTracer
        let makeClient: @Sendable () async throws -> any EventBus

        func close() async {
            await bus.close()
            await server?.stopped()
        }
    }

    static func make(_ backend: Backend) async throws -> Harness {
        let metrics = TestMetrics()
        let tracer = W3CTestTracer()
        let observability = EventBusObservability(tracer: tracer, metricsFactory: metrics)
        let logger = {
            var logger = Logger(label: "observability.tests")
            logger.logLevel = .warning
            return logger
        }()
        switch backend {
        case .memory:
            let bus = try InMemoryEventBus(logger: logger, observability: observability)
            return Harness(bus: bus, server: nil, metrics: metrics, tracer: tracer, makeClient: { bus.newClient() })
        case .jetstream:
            let server = try await NATSServerProcess.started()
            let url = server.url
            let makeBus: @Sendable () async throws -> any EventBus = {
                let connection = try NATSConnectionConfiguration(servers: [url])
                let bus = JetStreamEventBus(
                    configuration: .init(connection: connection), logger: logger, observability: observability)
                try await bus.start()
                return bus
            }
            return Harness(
                bus: try await makeBus(), server: server, metrics: metrics, tracer: tracer, makeClient: makeBus)
        }
    }

    static func tag() -> String {
        String(UUID().uuidString.prefix(8)).lowercased()
    }

    /// Waits until `condition` holds, up to 20 s.
    static func eventually(_ what: String, _ condition: () -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(20)
        while !condition() {
            if ContinuousClock.now > deadline {
                Issue.record("timed out waiting for: \(what)")
                return
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    // MARK: Metrics

    @Test("counters match the events", arguments: Backend.allCases)
    func countersMatchTheEvents(backend: Backend) async throws {
        let harness = try await Self.make(backend)
        let metrics = harness.metrics
        let bus = harness.bus
        let tag = Self.tag()
        let pattern = "obs.\(tag).>"
        let group = "counting-\(tag)"
        let labels = [("backend", backend.rawValue), ("group", group), ("pattern", pattern)]
        let busLabels = [("backend", backend.rawValue)]
        func count(_ name: String) -> Int64 { metrics.counterTotal(label: name, dimensions: labels) }

        let options = SubscriptionOptions(group: group, ackWait: .seconds(5), maxDeliver: 3, backoff: [.milliseconds(10)])
        let subscription = try await bus.subscribe(pattern, options: options)
        let consumer = Task {
            try await bus.consume(subscription, options: options) { delivery in
                switch delivery.event.type {
                case "ok": return
                case "flaky" where delivery.deliveryCount == 1: throw TestFailure(reason: "first attempt fails")
                case "flaky": return
                default: throw TestFailure(reason: "always fails")
                }
            }
        }
        for type in ["ok", "flaky", "poison"] {
            try await bus.publish(Event(subject: "obs.\(tag).\(type)", type: type, source: "tests"))
        }
        // ok: 1 delivery, ack. flaky: 2 deliveries, nak then ack. poison: 3 deliveries, 2 naks, then
        // dead-lettered on the last attempt.
        try await Self.eventually("settlements") {
            count("eventbus_acks_total") == 2 && count("eventbus_dead_lettered_total") == 1
        }
        #expect(count("eventbus_deliveries_total") == 6)
        #expect(count("eventbus_redeliveries_total") == 3)
        #expect(count("eventbus_acks_total") == 2)
        #expect(count("eventbus_naks_total") == 3)
        #expect(count("eventbus_dead_lettered_total") == 1)
        // The dead letter is the bus's own publish, not the application's.
        #expect(metrics.counterTotal(label: "eventbus_published_total", dimensions: busLabels) == 3)
        let publishTimings = metrics.timers(label: "eventbus_publish_duration_seconds", dimensions: busLabels).first?.values ?? []
        #expect(publishTimings.count == 3)
        #expect(publishTimings.allSatisfy { $0 > 0 })
        let handlerTimings = try metrics.expectTimer("eventbus_handler_duration_seconds", labels).values
        #expect(handlerTimings.count == 6)
        #expect(try metrics.expectMeter("eventbus_in_flight", labels).lastValue == 0)
        // Lag: nothing is left for the group once every event was delivered.
        #expect(try metrics.expectGauge("eventbus_consumer_pending", labels).lastValue == 0)
        if backend == .memory {
            #expect(try metrics.expectMeter("eventbus_buffered", labels).lastValue == 0)
        }
        consumer.cancel()
        try await withDeadline(.seconds(30), "consume() after its task was cancelled", onTimeout: { await bus.close() }) {
            _ = await consumer.result
        }
        await harness.close()
    }

    @Test("the buffered level is reported while a subscriber reads a backlog", arguments: Backend.allCases)
    func bufferedLevel(backend: Backend) async throws {
        let harness = try await Self.make(backend)
        let tag = Self.tag()
        let pattern = "obs.\(tag).>"
        let group = "backlog-\(tag)"
        let count = 300
        let options = SubscriptionOptions(group: group, start: .all)
        let events = (0..<count).map { Event(subject: "obs.\(tag).e", type: "t", source: "tests", data: Array("\($0)".utf8)) }
        _ = try await harness.bus.publish(contentsOf: events)
        let subscription = try await harness.bus.subscribe(pattern, options: options)
        try await withDeadline(.seconds(30), "the backlog of \(count) events") {
            var received = 0
            for try await delivery in subscription {
                try await delivery.ack()
                received += 1
                if received == count { break }
            }
        }
        await subscription.close()
        let meter = try harness.metrics.expectMeter("eventbus_buffered", [("backend", backend.rawValue), ("group", group), ("pattern", pattern)])
        let level = try #require(meter.lastValue, "no buffered level was reported")
        #expect(level >= 0 && level <= Double(count))
        await harness.close()
    }

    @Test("publish failures are counted with their error code", arguments: Backend.allCases)
    func publishFailures(backend: Backend) async throws {
        let harness = try await Self.make(backend)
        let labels = [("backend", backend.rawValue), ("error", "closed")]
        await harness.bus.close()
        await #expect(throws: EventBusError.self) {
            try await harness.bus.publish(Event(subject: "obs.closed", type: "t", source: "tests"))
        }
        // The in-memory bus refuses after the trace context was prepared; JetStream before it starts.
        #expect(harness.metrics.counterTotal(label: "eventbus_publish_failures_total", dimensions: labels) == 1)
        await harness.close()
    }

    // MARK: Trace context

    @Test("only W3C version-00 traceparent values pass the check")
    func traceParentRules() {
        #expect(TraceContextHeaders.isValidTraceParent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"))
        for invalid in [
            "not-a-traceparent",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  // upper case
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  // zero trace id
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  // zero span id
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  // unknown version
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            #expect(!TraceContextHeaders.isValidTraceParent(invalid), "\(invalid)")
        }
        #expect(TraceContextHeaders.isValidTraceState("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"))
        #expect(!TraceContextHeaders.isValidTraceState("no-equals-sign"))
        #expect(!TraceContextHeaders.isValidTraceState(String(repeating: "a=b,", count: 40)))
    }

    @Test("an invalid traceparent is dropped, never passed on", arguments: Backend.allCases)
    func invalidTraceParentIsDropped(backend: Backend) async throws {
        let harness = try await Self.make(backend)
        let bus = harness.bus
        let tag = Self.tag()
        let subscription = try await bus.subscribe("obs.\(tag).>", options: .init())
        let event = Event(
            subject: "obs.\(tag).bad", type: "t", source: "tests", traceParent: "not-a-traceparent", traceState: "a=b")
        try await bus.publish(event)
        let received = try await withDeadline(.seconds(30), "the event with the invalid traceparent") {
            var iterator = subscription.makeAsyncIterator()
            return try await iterator.next()
        }
        let delivery = try #require(received)
        let traceParent = try #require(delivery.event.traceParent)
        // The publish started a new trace of its own rather than passing the bad value on.
        #expect(traceParent != "not-a-traceparent")
        #expect(TraceContextHeaders.isValidTraceParent(traceParent))
        let publishSpan = try #require(harness.tracer.spans.first { $0.attributes.get("messaging.message.id") == .string(event.id) })
        #expect(publishSpan.parentSpanID == nil)
        #expect(traceParent.contains(publishSpan.spanID))
        try await delivery.ack()
        await subscription.close()
        await harness.close()
    }

    @Test("JetStream drops an invalid traceparent it receives from another client")
    func jetStreamDropsInvalidReceivedTraceParent() async throws {
        let harness = try await Self.make(.jetstream)
        let bus = harness.bus
        let tag = Self.tag()
        let subscription = try await bus.subscribe("obs.\(tag).>", options: .init())
        let server = try #require(harness.server)
        let connection = try await NATSConnection.connect(configuration: .init(servers: [server.url]))
        var headers = NATSHeaders()
        headers.add("1.0", for: "ce-specversion")
        headers.add("raw-1", for: "ce-id")
        headers.add("tests", for: "ce-source")
        headers.add("t", for: "ce-type")
        headers.add("not-a-traceparent", for: "traceparent")
        headers.add("a=b", for: "tracestate")
        _ = try await connection.jetStream().publish(subject: "events.obs.\(tag).raw", payload: [], headers: headers)
        let received = try await withDeadline(.seconds(30), "the event another client published") {
            var iterator = subscription.makeAsyncIterator()
            return try await iterator.next()
        }
        let delivery = try #require(received)
        #expect(delivery.event.id == "raw-1")
        #expect(delivery.event.traceParent == nil)
        #expect(delivery.event.traceState == nil)
        try await delivery.ack()
        await connection.close()
        await subscription.close()
        await harness.close()
    }

    @Test("one trace spans publish, consume and the next publish", arguments: Backend.allCases)
    func traceAcrossHops(backend: Backend) async throws {
        let harness = try await Self.make(backend)
        let tracer = harness.tracer
        let tag = Self.tag()
        // Two clients, as two services would be: orders publishes, billing handles and publishes on.
        let orders = harness.bus
        let billing = try await harness.makeClient()
        let billingOptions = SubscriptionOptions(group: "billing-\(tag)")
        let created = try await billing.subscribe("obs.\(tag).order.created", options: billingOptions)
        let billingTask = Task {
            try await billing.consume(created, options: billingOptions) { delivery in
                try await billing.publish(Event(subject: "obs.\(tag).invoice.sent", type: "invoice.sent", source: "billing"))
            }
        }
        let invoices = try await orders.subscribe("obs.\(tag).invoice.sent", options: .init(group: "audit-\(tag)"))
        let auditTask = Task {
            try await orders.consume(invoices, options: .init(group: "audit-\(tag)")) { _ in }
        }
        let rootContext = try await tracer.withSpan("checkout") { span in
            try await orders.publish(Event(subject: "obs.\(tag).order.created", type: "order.created", source: "orders"))
            return span.context
        }
        let root = try #require(W3CTestTracer.spanContext(of: rootContext))
        try await Self.eventually("four spans of the trace") {
            tracer.spans.filter { $0.traceID == root.traceID && $0.name != "checkout" }.count >= 4
        }
        let spans = tracer.spans.filter { $0.traceID == root.traceID }
        func span(_ name: String) throws -> W3CTestTracer.FinishedSpan {
            try #require(spans.first { $0.name == name }, "no span '\(name)' in \(spans.map(\.name))")
        }
        let publishOrder = try span("publish obs.\(tag).order.created")
        let processOrder = try span("process obs.\(tag).order.created")
        let publishInvoice = try span("publish obs.\(tag).invoice.sent")
        let processInvoice = try span("process obs.\(tag).invoice.sent")
        #expect(publishOrder.parentSpanID == root.spanID)
        #expect(publishOrder.kind == .producer)
        #expect(processOrder.parentSpanID == publishOrder.spanID)
        #expect(processOrder.kind == .consumer)
        #expect(publishInvoice.parentSpanID == processOrder.spanID)
        #expect(processInvoice.parentSpanID == publishInvoice.spanID)
        #expect(processOrder.attributes.get("messaging.consumer.group.name") == .string("billing-\(tag)"))
        #expect(processOrder.attributes.get("messaging.destination.name") == .string("obs.\(tag).order.created"))
        #expect(publishOrder.attributes.get("messaging.system") == .string(backend == .memory ? "memory" : "nats"))
        billingTask.cancel()
        auditTask.cancel()
        try await withDeadline(.seconds(30), "both consume() calls after their tasks were cancelled", onTimeout: {
            await billing.close()
            await orders.close()
        }) {
            _ = await billingTask.result
            _ = await auditTask.result
        }
        await billing.close()
        await harness.close()
    }
}

struct TestFailure: Error {
    var reason: String
}

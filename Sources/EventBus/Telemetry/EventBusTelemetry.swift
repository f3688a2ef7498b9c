import Logging
import Metrics
import Tracing

/// The metrics, spans and per-event logs of one bus, shared by both backends so that both report the same
/// names, labels and span shapes (docs/observability.md lists them).
///
/// Made once per bus, from its ``EventBusObservability`` (by default the bootstrapped metrics factory and
/// tracer, read once, here). With neither and the logger above trace level, the bus is *inactive* and its
/// per-event paths skip all of this behind one `nil` check, so an uninstrumented service pays nothing
/// measurable. Bootstrap metrics and tracing before creating buses, as both libraries ask anyway.
///
/// Metric handles are made once per bus and per subscription, never per event: making one goes through the
/// factory and its lock. Labels are few and bounded (`backend`, `group`, `pattern`, an error code); never a
/// subject or an event id.
package final class EventBusTelemetry: Sendable {
    /// The `backend` label and `messaging.system` attribute.
    package enum Backend: String, Sendable {
        case memory
        case jetstream

        /// The OpenTelemetry `messaging.system` value.
        var messagingSystem: String {
            switch self {
            case .memory: "memory"
            case .jetstream: "nats"
            }
        }
    }

    package let backend: Backend
    let logger: Logger
    /// The tracer (which also propagates W3C context), `nil` for none.
    let tracer: (any Tracer)?
    /// The metrics factory, `nil` for none.
    let metricsFactory: (any MetricsFactory)?
    var metricsEnabled: Bool { metricsFactory != nil }
    /// Per-event trace logs are on (the logger's level was `trace` when the bus was made).
    let traceLogging: Bool
    /// Whether any per-event work is needed at all.
    package let isActive: Bool
    /// The stream name, for log metadata.
    let stream: String

    private let published: Counter?
    private let publishDuration: Timer?
    private let failureLabel = "eventbus_publish_failures_total"

    /// Reads `observability` (by default what the application bootstrapped); `stream` is the bus's
    /// stream name, for log metadata.
    package init(backend: Backend, stream: String, logger: Logger, observability: EventBusObservability = .bootstrapped) {
        self.backend = backend
        self.logger = logger
        self.stream = stream
        tracer = observability.tracer
        metricsFactory = observability.metricsFactory
        traceLogging = logger.logLevel <= .trace
        isActive = tracer != nil || metricsFactory != nil || traceLogging
        if let metricsFactory {
            let dimensions = [("backend", backend.rawValue)]
            published = Counter(label: "eventbus_published_total", dimensions: dimensions, factory: metricsFactory)
            publishDuration = Timer(
                label: "eventbus_publish_duration_seconds", dimensions: dimensions, preferredDisplayUnit: .seconds,
                factory: metricsFactory)
        } else {
            published = nil
            publishDuration = nil
        }
    }

    /// The telemetry of one subscription, or `nil` when the bus is inactive (then deliveries carry none).
    package func consumer(group: String?, pattern: SubjectPattern, consumer: String? = nil) -> ConsumerTelemetry? {
        guard isActive else { return nil }
        return ConsumerTelemetry(bus: self, group: group, pattern: pattern.rawValue, consumer: consumer)
    }

    // MARK: Publishing

    /// Readies `event` for the wire: drops trace context that fails the W3C checks (with a debug log; it is
    /// never passed on), and, when the bus is active, starts the producer span, injects its context into the
    /// event and starts the publish timer. Finish the returned scope with the outcome.
    package func preparePublish(_ event: inout Event) -> PublishScope? {
        event = droppingInvalidTraceContext(of: event, "a published event", ["eventID": "\(event.id)"])
        guard isActive else { return nil }
        return startPublish(&event)
    }

    private func startPublish(_ event: inout Event) -> PublishScope {
        var span: (any Span)?
        if let tracer {
            // A publish inside a traced operation (a handler's consumer span, a request's server span)
            // continues it; otherwise the event's own trace context, if it carries one, is the parent.
            var parent: ServiceContext
            if let current = ServiceContext.current {
                parent = current
            } else {
                parent = .topLevel
                if event.traceParent != nil {
                    tracer.extract(event, into: &parent, using: EventTraceContextExtractor())
                }
            }
            let started = tracer.startSpan("publish \(event.subject)", context: parent, ofKind: .producer)
            // One update: each `span.attributes[...] = ` would copy the whole dictionary.
            started.updateAttributes { attributes in
                attributes["messaging.system"] = backend.messagingSystem
                attributes["messaging.operation.type"] = "send"
                attributes["messaging.operation.name"] = "publish"
                attributes["messaging.destination.name"] = event.subject
                attributes["messaging.message.id"] = event.id
                attributes["messaging.message.body.size"] = event.data.count
            }
            span = started
            // The new context replaces whatever the event carried: this hop is the parent now.
            event.traceParent = nil
            event.traceState = nil
            tracer.inject(started.context, into: &event, using: EventTraceContextInjector())
        }
        return PublishScope(telemetry: self, span: span, start: metricsEnabled ? .now : nil)
    }

    /// How one publish ended.
    package struct PublishScope: Sendable {
        let telemetry: EventBusTelemetry
        let span: (any Span)?
        let start: MonotonicInstant?

        /// The backend stored the event.
        package func succeeded(_ event: Event, _ receipt: PublishReceipt) {
            if let start {
                telemetry.published?.increment()
                telemetry.publishDuration?.recordNanoseconds(start.nanosecondsElapsed)
            }
            if let span {
                span.updateAttributes { attributes in
                    attributes["eventbus.stream.sequence"] = Int(truncatingIfNeeded: receipt.sequence)
                    attributes["eventbus.publish.duplicate"] = receipt.duplicate
                }
                span.end()
            }
            if telemetry.traceLogging {
                telemetry.logger.trace(
                    "published",
                    metadata: [
                        "subject": "\(event.subject)", "eventID": "\(event.id)", "stream": "\(receipt.stream)",
                        "sequence": "\(receipt.sequence)", "duplicate": "\(receipt.duplicate)",
                    ])
            }
        }

        /// The publish failed with `error`.
        package func failed(_ event: Event, _ error: any Error) {
            let code = EventBusTelemetry.errorLabel(error)
            if start != nil {
                if let factory = telemetry.metricsFactory {
                    // Made per failure (the error code is a label); failures are rare.
                    Counter(
                        label: telemetry.failureLabel,
                        dimensions: [("backend", telemetry.backend.rawValue), ("error", code)], factory: factory
                    ).increment()
                }
            }
            if let span {
                span.recordError(error)
                span.setStatus(SpanStatus(code: .error, message: code))
                span.end()
            }
            if telemetry.traceLogging {
                telemetry.logger.trace(
                    "publish failed",
                    metadata: ["subject": "\(event.subject)", "eventID": "\(event.id)", "error": "\(error)"])
            }
        }
    }

    /// A bounded label for an error: the ``EventBusError`` code's name, `cancelled`, or `other`.
    static func errorLabel(_ error: any Error) -> String {
        if let error = error as? EventBusError { return error.code.name }
        if error is CancellationError { return "cancelled" }
        return "other"
    }

    /// `event` without trace context that fails the W3C checks (logged at debug); for requests, which are
    /// not instrumented otherwise.
    package func checkedOutgoing(_ event: Event) -> Event {
        droppingInvalidTraceContext(of: event, "a request", ["eventID": "\(event.id)"])
    }

    // MARK: Receiving

    /// `event` as received, without trace context that fails the W3C checks (logged at debug).
    package func checkedReceived(_ event: Event, sequence: UInt64) -> Event {
        droppingInvalidTraceContext(of: event, "a received event", ["sequence": "\(sequence)"])
    }

    /// `event` without its trace context when that fails the W3C checks, logged at debug as the trace
    /// context of `what`. `metadata` is only built when something is dropped.
    private func droppingInvalidTraceContext(
        of event: Event, _ what: String, _ metadata: @autoclosure () -> Logger.Metadata
    ) -> Event {
        guard event.traceParent != nil || event.traceState != nil,
            let (checked, reason) = TraceContextHeaders.droppingInvalid(event)
        else { return event }
        logger.debug(
            "dropped invalid trace context of \(what)",
            metadata: metadata().merging(["subject": "\(event.subject)", "reason": "\(reason)"]) { $1 })
        return checked
    }
}

/// The metrics and spans of one subscription: its deliveries, settlements and handler runs.
///
/// Deliveries made while the bus is active carry it (``Delivery``), so settling (`ack`, `nak`, `term`) is
/// counted however the application does it, and `consume` runs each handler in a consumer span.
package final class ConsumerTelemetry: Sendable {
    let bus: EventBusTelemetry
    let group: String?
    let pattern: String
    let consumer: String?
    let spanName: String
    let metrics: Metrics?

    struct Metrics: Sendable {
        let deliveries: Counter
        let redeliveries: Counter
        let acks: Counter
        let naks: Counter
        let deadLettered: Counter
        let handlerDuration: Timer
        let inFlight: Meter
        let buffered: Meter
        let pending: Gauge
    }

    init(bus: EventBusTelemetry, group: String?, pattern: String, consumer: String?) {
        self.bus = bus
        self.group = group
        self.pattern = pattern
        self.consumer = consumer
        spanName = "process \(pattern)"
        guard let factory = bus.metricsFactory else {
            metrics = nil
            return
        }
        let dimensions = [("backend", bus.backend.rawValue), ("group", group ?? ""), ("pattern", pattern)]
        metrics = Metrics(
            deliveries: Counter(label: "eventbus_deliveries_total", dimensions: dimensions, factory: factory),
            redeliveries: Counter(label: "eventbus_redeliveries_total", dimensions: dimensions, factory: factory),
            acks: Counter(label: "eventbus_acks_total", dimensions: dimensions, factory: factory),
            naks: Counter(label: "eventbus_naks_total", dimensions: dimensions, factory: factory),
            deadLettered: Counter(label: "eventbus_dead_lettered_total", dimensions: dimensions, factory: factory),
            handlerDuration: Timer(
                label: "eventbus_handler_duration_seconds", dimensions: dimensions, preferredDisplayUnit: .seconds, factory: factory),
            inFlight: Meter(label: "eventbus_in_flight", dimensions: dimensions, factory: factory),
            buffered: Meter(label: "eventbus_buffered", dimensions: dimensions, factory: factory),
            pending: Gauge(label: "eventbus_consumer_pending", dimensions: dimensions, factory: factory)
        )
    }

    /// One delivery was handed to the application; `pending` is what the consumer has not delivered yet,
    /// when the backend knows it.
    package func delivered(_ delivery: Delivery, pending: UInt64?) {
        if let metrics {
            metrics.deliveries.increment()
            if delivery.deliveryCount > 1 { metrics.redeliveries.increment() }
            if let pending { metrics.pending.record(pending) }
        }
        if bus.traceLogging { logDelivery(delivery) }
    }

    /// A batch of deliveries was handed over at once (the in-memory bus).
    package func delivered(count: Int, redelivered: Int, pending: Int) {
        guard let metrics else { return }
        metrics.deliveries.increment(by: count)
        if redelivered > 0 { metrics.redeliveries.increment(by: redelivered) }
        metrics.pending.record(pending)
    }

    func logDelivery(_ delivery: Delivery) {
        var metadata: Logger.Metadata = [
            "subject": "\(delivery.subject)", "sequence": "\(delivery.sequence)", "attempt": "\(delivery.deliveryCount)",
            "eventID": "\(delivery.event.id)", "stream": "\(bus.stream)",
        ]
        if let consumer { metadata["consumer"] = "\(consumer)" }
        if let group { metadata["group"] = "\(group)" }
        bus.logger.trace("delivered", metadata: metadata)
    }

    /// Deliveries received and not yet handed to the application: `count` now (a backend that samples its
    /// buffer's level rather than tracking each change).
    package func bufferedLevel(_ count: Int) {
        metrics?.buffered.set(count)
    }

    /// Deliveries received and not yet handed to the application, up or down by `count`.
    package func buffered(_ change: Int) {
        guard let metrics, change != 0 else { return }
        if change > 0 { metrics.buffered.increment(by: Double(change)) } else { metrics.buffered.decrement(by: Double(-change)) }
    }

    package func acked() { metrics?.acks.increment() }
    package func naked() { metrics?.naks.increment() }
    package func deadLettered() { metrics?.deadLettered.increment() }

    /// Runs `handler` on `delivery` in a consumer span whose parent is the producer's context carried by the
    /// event (so one trace crosses processes and hosts), timed and counted as in flight; `settle` then runs
    /// in the same span, told whether (and how) the handler failed.
    package func process(
        _ delivery: Delivery,
        handler: @Sendable (Delivery) async throws -> Void,
        settle: (_ failure: (any Error)?) async throws -> Void
    ) async throws {
        var span: (any Span)?
        if let tracer = bus.tracer {
            var parent = ServiceContext.topLevel
            if delivery.event.traceParent != nil {
                tracer.extract(delivery.event, into: &parent, using: EventTraceContextExtractor())
            }
            let started = tracer.startSpan(spanName, context: parent, ofKind: .consumer)
            started.updateAttributes { attributes in
                attributes["messaging.system"] = bus.backend.messagingSystem
                attributes["messaging.operation.type"] = "process"
                attributes["messaging.operation.name"] = "process"
                attributes["messaging.destination.name"] = delivery.subject
                attributes["messaging.destination.template"] = pattern
                attributes["messaging.message.id"] = delivery.event.id
                attributes["messaging.message.body.size"] = delivery.event.data.count
                if let group { attributes["messaging.consumer.group.name"] = group }
                attributes["eventbus.delivery.attempt"] = delivery.deliveryCount
                attributes["eventbus.stream.sequence"] = Int(truncatingIfNeeded: delivery.sequence)
            }
            span = started
        }
        let start: MonotonicInstant? = metrics != nil ? .now : nil
        metrics?.inFlight.increment()
        var failure: (any Error)?
        do {
            if let span {
                try await ServiceContext.withValue(span.context) { try await handler(delivery) }
            } else {
                try await handler(delivery)
            }
        } catch {
            failure = error
        }
        if let metrics, let start {
            metrics.handlerDuration.recordNanoseconds(start.nanosecondsElapsed)
            metrics.inFlight.decrement()
        }
        if let span, let failure {
            span.recordError(failure)
            span.setStatus(SpanStatus(code: .error))
        }
        defer { span?.end() }
        if let span {
            try await ServiceContext.withValue(span.context) { try await settle(failure) }
        } else {
            try await settle(failure)
        }
    }
}

/// A point in time on `ContinuousClock`, kept as its distance from a fixed origin.
///
/// `ContinuousClock.Instant`'s layout is resilient (the standard library may change it), so an
/// async function that keeps one across a suspension allocates room for it from its task at run
/// time, on every call; a `Duration` has a fixed size and lives in the function's frame. On the
/// path of every publish and every handled delivery.
struct MonotonicInstant: Sendable {
    private static let origin = ContinuousClock.now
    private let sinceOrigin: Duration

    private init(sinceOrigin: Duration) {
        self.sinceOrigin = sinceOrigin
    }

    /// Now.
    static var now: MonotonicInstant { MonotonicInstant(sinceOrigin: ContinuousClock.now - origin) }

    /// The nanoseconds from this instant until now.
    var nanosecondsElapsed: Int64 {
        let (seconds, attoseconds) = ((ContinuousClock.now - Self.origin) - sinceOrigin).components
        return seconds &* 1_000_000_000 &+ attoseconds / 1_000_000_000
    }
}

/// Writes W3C trace context into an event's `traceParent` and `traceState`; other keys have no field to go
/// to and are left out.
struct EventTraceContextInjector: Injector {
    func inject(_ value: String, forKey key: String, into event: inout Event) {
        switch key {
        case "traceparent", "Traceparent", "TraceParent": event.traceParent = value
        case "tracestate", "Tracestate", "TraceState": event.traceState = value
        default:
            switch key.lowercased() {
            case "traceparent": event.traceParent = value
            case "tracestate": event.traceState = value
            default: break
            }
        }
    }
}

/// Reads W3C trace context from an event's `traceParent` and `traceState`.
struct EventTraceContextExtractor: Extractor {
    func extract(key: String, from event: Event) -> String? {
        switch key.lowercased() {
        case "traceparent": event.traceParent
        case "tracestate": event.traceState
        default: nil
        }
    }
}

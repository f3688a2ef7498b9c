public import CoreMetrics
public import Tracing

/// Where a bus sends its metrics and spans.
///
/// By default (``bootstrapped``) a bus uses what the application bootstrapped with
/// `MetricsSystem.bootstrap` and `InstrumentationSystem.bootstrap`, read once when the bus is made.
/// Give a bus its own tracer or metrics factory when one process holds buses that report to
/// different places, or in tests, where a bootstrap would reach every other test in the process.
///
/// ```swift
/// let bus = try InMemoryEventBus(observability: .init(tracer: myTracer, metricsFactory: myFactory))
/// ```
public struct EventBusObservability: Sendable {
    /// The tracer for publish and process spans and for W3C context propagation; `nil` for none.
    public var tracer: (any Tracer)?
    /// The factory of the bus's metrics (docs/observability.md lists them); `nil` for none.
    public var metricsFactory: (any MetricsFactory)?

    /// Uses `tracer` and `metricsFactory` instead of the bootstrapped systems.
    public init(tracer: (any Tracer)? = nil, metricsFactory: (any MetricsFactory)? = nil) {
        self.tracer = tracer
        self.metricsFactory = metricsFactory
    }

    /// What the application bootstrapped, as it is now (no-op defaults count as none).
    public static var bootstrapped: EventBusObservability {
        let tracer = InstrumentationSystem.tracer
        let factory = MetricsSystem.factory
        return EventBusObservability(
            tracer: tracer is NoOpTracer ? nil : tracer,
            metricsFactory: factory is NOOPMetricsHandler ? nil : factory)
    }

    /// Neither metrics nor spans.
    public static var disabled: EventBusObservability { EventBusObservability() }
}

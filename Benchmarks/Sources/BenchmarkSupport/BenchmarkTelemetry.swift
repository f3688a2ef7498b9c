import CoreMetrics
import Synchronization
import Tracing

/// Metrics and tracing backends for the "instrumented" variants of the EventBus workloads: what a
/// production backend costs on the bus's side (an atomic per counter, a bucketed histogram per timer, a
/// span object per operation with its attributes, W3C context injected and extracted), without the export
/// a real one does on other threads. Bootstrapped once per process (each benchmark runs in a process of
/// its own), before its buses are made, as an application would.
public enum BenchmarkTelemetry {
    private static let bootstrapped = Atomic<Bool>(false)

    /// Bootstraps swift-metrics and swift-distributed-tracing; later calls do nothing.
    public static func bootstrap() {
        guard !bootstrapped.exchange(true, ordering: .acquiringAndReleasing) else { return }
        MetricsSystem.bootstrap(AtomicMetricsFactory())
        InstrumentationSystem.bootstrap(CountingTracer())
    }

    /// Spans finished so far in this process.
    public static var finishedSpans: Int { CountingTracer.finished.load(ordering: .relaxed) }
}

/// Counters, meters and gauges as atomics; timers as a fixed set of power-of-two buckets (as a
/// Prometheus histogram keeps them).
final class AtomicMetricsFactory: MetricsFactory, Sendable {
    final class Handler: CounterHandler, FloatingPointCounterHandler, MeterHandler, RecorderHandler, TimerHandler, Sendable {
        final class Bucket: Sendable {
            let count = Atomic<Int64>(0)
        }

        let value = Atomic<Int64>(0)
        let buckets: [Bucket] = (0..<40).map { _ in Bucket() }

        func increment(by amount: Int64) { value.add(amount, ordering: .relaxed) }
        func increment(by amount: Double) { value.add(Int64(amount), ordering: .relaxed) }
        func decrement(by amount: Double) { value.subtract(Int64(amount), ordering: .relaxed) }
        func set(_ value: Int64) { self.value.store(value, ordering: .relaxed) }
        func set(_ value: Double) { self.value.store(Int64(value), ordering: .relaxed) }
        func record(_ value: Int64) { self.value.store(value, ordering: .relaxed) }
        func record(_ value: Double) { self.value.store(Int64(value), ordering: .relaxed) }
        func recordNanoseconds(_ duration: Int64) {
            let bucket = min(buckets.count - 1, max(0, Int64.bitWidth - duration.leadingZeroBitCount))
            buckets[bucket].count.add(1, ordering: .relaxed)
        }
        func reset() { value.store(0, ordering: .relaxed) }
    }

    private let handlers = Mutex<[String: Handler]>([:])

    private func handler(_ label: String, _ dimensions: [(String, String)]) -> Handler {
        let key = label + dimensions.map { "\($0.0)=\($0.1)" }.joined(separator: ",")
        return handlers.withLock { handlers in
            if let existing = handlers[key] { return existing }
            let made = Handler()
            handlers[key] = made
            return made
        }
    }

    func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler { handler(label, dimensions) }
    func makeFloatingPointCounter(label: String, dimensions: [(String, String)]) -> any FloatingPointCounterHandler {
        handler(label, dimensions)
    }
    func makeMeter(label: String, dimensions: [(String, String)]) -> any MeterHandler { handler(label, dimensions) }
    func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        handler(label, dimensions)
    }
    func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler { handler(label, dimensions) }
    func destroyCounter(_ handler: any CounterHandler) {}
    func destroyFloatingPointCounter(_ handler: any FloatingPointCounterHandler) {}
    func destroyMeter(_ handler: any MeterHandler) {}
    func destroyRecorder(_ handler: any RecorderHandler) {}
    func destroyTimer(_ handler: any TimerHandler) {}
}

/// A tracer that makes a real span object per operation (ids, attributes, status) and counts the
/// finished ones instead of exporting them; it propagates W3C `traceparent`.
final class CountingTracer: Tracer, Sendable {
    static let finished = Atomic<Int>(0)

    struct Identity: Sendable {
        var traceID: (UInt64, UInt64)
        var spanID: UInt64
    }

    enum IdentityKey: ServiceContextKey {
        typealias Value = Identity
    }

    final class CountingSpan: Tracing.Span, @unchecked Sendable {
        private let lock = Mutex<(name: String, attributes: SpanAttributes, ended: Bool)>(("", [:], false))
        let context: ServiceContext

        init(name: String, context: ServiceContext) {
            self.context = context
            lock.withLock { $0.name = name }
        }

        var operationName: String {
            get { lock.withLock { $0.name } }
            set { lock.withLock { $0.name = newValue } }
        }
        var attributes: SpanAttributes {
            get { lock.withLock { $0.attributes } }
            set { lock.withLock { $0.attributes = newValue } }
        }
        var isRecording: Bool { lock.withLock { !$0.ended } }
        func setStatus(_ status: SpanStatus) {}
        func addEvent(_ event: SpanEvent) {}
        func recordError<Instant: TracerInstant>(_ error: any Error, attributes: SpanAttributes, at instant: @autoclosure () -> Instant) {}
        func addLink(_ link: SpanLink) {}
        func end<Instant: TracerInstant>(at instant: @autoclosure () -> Instant) {
            let first = lock.withLock { state -> Bool in
                defer { state.ended = true }
                return !state.ended
            }
            if first { CountingTracer.finished.add(1, ordering: .relaxed) }
        }
    }

    func startSpan<Instant: TracerInstant>(
        _ operationName: String, context: @autoclosure () -> ServiceContext, ofKind kind: SpanKind,
        at instant: @autoclosure () -> Instant, function: String, file fileID: String, line: UInt
    ) -> CountingSpan {
        var context = context()
        let parent = context[IdentityKey.self]
        context[IdentityKey.self] = Identity(
            traceID: parent?.traceID ?? (UInt64.random(in: 1...UInt64.max), UInt64.random(in: 1...UInt64.max)),
            spanID: UInt64.random(in: 1...UInt64.max))
        return CountingSpan(name: operationName, context: context)
    }

    func forceFlush() {}

    func inject<Carrier, Inject: Injector>(_ context: ServiceContext, into carrier: inout Carrier, using injector: Inject)
    where Inject.Carrier == Carrier {
        guard let identity = context[IdentityKey.self] else { return }
        let traceID = hex(identity.traceID.0) + hex(identity.traceID.1)
        injector.inject("00-\(traceID)-\(hex(identity.spanID))-01", forKey: "traceparent", into: &carrier)
    }

    func extract<Carrier, Extract: Extractor>(_ carrier: Carrier, into context: inout ServiceContext, using extractor: Extract)
    where Extract.Carrier == Carrier {
        guard let header = extractor.extract(key: "traceparent", from: carrier), header.utf8.count == 55 else { return }
        let parts = header.split(separator: "-")
        guard parts.count == 4, let high = UInt64(parts[1].prefix(16), radix: 16), let low = UInt64(parts[1].suffix(16), radix: 16),
            let span = UInt64(parts[2], radix: 16)
        else { return }
        context[IdentityKey.self] = Identity(traceID: (high, low), spanID: span)
    }

    private func hex(_ value: UInt64) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }
}

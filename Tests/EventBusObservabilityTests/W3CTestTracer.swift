import Foundation
import Synchronization
import Tracing

/// A tracer for tests that keeps every finished span in memory and propagates W3C `traceparent` /
/// `tracestate`, as a production tracer (swift-otel's W3C propagator) does: the bus carries only those two
/// fields, so the library's `InMemoryTracer` (own header names) would not cross it.
final class W3CTestTracer: Tracer, Sendable {
    typealias Span = TestSpan

    /// The identity of a span, kept in its context.
    struct SpanContext: Sendable, Hashable {
        var traceID: String
        var spanID: String
        var traceState: String?
    }

    private enum SpanContextKey: ServiceContextKey {
        typealias Value = SpanContext
    }

    /// A finished span as the tests read it.
    struct FinishedSpan: Sendable {
        var name: String
        var kind: SpanKind
        var traceID: String
        var spanID: String
        var parentSpanID: String?
        var attributes: SpanAttributes
        var isError: Bool
    }

    private let finished = Mutex<[FinishedSpan]>([])

    /// Every span finished so far.
    var spans: [FinishedSpan] { finished.withLock { $0 } }

    static func spanContext(of context: ServiceContext) -> SpanContext? {
        context[SpanContextKey.self]
    }

    static func randomHex(bytes: Int) -> String {
        (0..<bytes).map { _ in String(format: "%02x", UInt8.random(in: 1...255)) }.joined()
    }

    func startSpan<Instant: TracerInstant>(
        _ operationName: String,
        context: @autoclosure () -> ServiceContext,
        ofKind kind: SpanKind,
        at instant: @autoclosure () -> Instant,
        function: String,
        file fileID: String,
        line: UInt
    ) -> TestSpan {
        let parentContext = context()
        let parent = parentContext[SpanContextKey.self]
        let own = SpanContext(
            traceID: parent?.traceID ?? Self.randomHex(bytes: 16), spanID: Self.randomHex(bytes: 8),
            traceState: parent?.traceState)
        var spanContext = parentContext
        spanContext[SpanContextKey.self] = own
        return TestSpan(
            operationName: operationName, kind: kind, context: spanContext, own: own, parentSpanID: parent?.spanID,
            onEnd: { [self] span in self.finished.withLock { $0.append(span) } })
    }

    func forceFlush() {}

    func inject<Carrier, Inject: Injector>(_ context: ServiceContext, into carrier: inout Carrier, using injector: Inject)
    where Inject.Carrier == Carrier {
        guard let span = context[SpanContextKey.self] else { return }
        injector.inject("00-\(span.traceID)-\(span.spanID)-01", forKey: "traceparent", into: &carrier)
        if let state = span.traceState { injector.inject(state, forKey: "tracestate", into: &carrier) }
    }

    func extract<Carrier, Extract: Extractor>(_ carrier: Carrier, into context: inout ServiceContext, using extractor: Extract)
    where Extract.Carrier == Carrier {
        guard let header = extractor.extract(key: "traceparent", from: carrier) else { return }
        let parts = header.split(separator: "-")
        guard parts.count == 4 else { return }
        context[SpanContextKey.self] = SpanContext(
            traceID: String(parts[1]), spanID: String(parts[2]),
            traceState: extractor.extract(key: "tracestate", from: carrier))
    }
}

/// A span of ``W3CTestTracer``.
final class TestSpan: Span, @unchecked Sendable {
    private let lock = NSLock()
    private var _operationName: String
    private var _attributes = SpanAttributes()
    private var isError = false
    private var ended = false
    let kind: SpanKind
    let context: ServiceContext
    let own: W3CTestTracer.SpanContext
    let parentSpanID: String?
    private let onEnd: @Sendable (W3CTestTracer.FinishedSpan) -> Void

    init(
        operationName: String, kind: SpanKind, context: ServiceContext, own: W3CTestTracer.SpanContext,
        parentSpanID: String?, onEnd: @escaping @Sendable (W3CTestTracer.FinishedSpan) -> Void
    ) {
        _operationName = operationName
        self.kind = kind
        self.context = context
        self.own = own
        self.parentSpanID = parentSpanID
        self.onEnd = onEnd
    }

    var operationName: String {
        get { lock.withLock { _operationName } }
        set { lock.withLock { _operationName = newValue } }
    }

    var attributes: SpanAttributes {
        get { lock.withLock { _attributes } }
        set { lock.withLock { _attributes = newValue } }
    }

    var isRecording: Bool { lock.withLock { !ended } }

    func setStatus(_ status: SpanStatus) {
        lock.withLock { if status.code == .error { isError = true } }
    }

    func addEvent(_ event: SpanEvent) {}

    func recordError<Instant: TracerInstant>(_ error: any Error, attributes: SpanAttributes, at instant: @autoclosure () -> Instant) {
        lock.withLock { isError = true }
    }

    func addLink(_ link: SpanLink) {}

    func end<Instant: TracerInstant>(at instant: @autoclosure () -> Instant) {
        let finished: W3CTestTracer.FinishedSpan? = lock.withLock {
            guard !ended else { return nil }
            ended = true
            return W3CTestTracer.FinishedSpan(
                name: _operationName, kind: kind, traceID: own.traceID, spanID: own.spanID, parentSpanID: parentSpanID,
                attributes: _attributes, isError: isError)
        }
        if let finished { onEnd(finished) }
    }
}

import Foundation
import Synchronization
import Tracing

/// `--trace-to-stderr`: a minimal tracer that writes one JSON line per finished span to standard error
/// (`{"trace":…,"span":…,"parent":…,"name":…,"kind":…}`) and propagates W3C `traceparent`, so that the
/// spans of several demo processes can be joined into one trace without a collector. For trying the
/// bus's tracing out; a service would bootstrap swift-otel instead.
final class StderrTracer: Tracer, Sendable {
    private static let bootstrapped = Atomic<Bool>(false)

    /// Bootstraps the tracer once per process, before any bus is made.
    static func bootstrap() {
        guard !bootstrapped.exchange(true, ordering: .acquiringAndReleasing) else { return }
        InstrumentationSystem.bootstrap(StderrTracer())
    }

    struct Identity: Sendable {
        var traceID: String
        var spanID: String
    }

    enum IdentityKey: ServiceContextKey {
        typealias Value = Identity
    }

    static func hex(_ bytes: Int) -> String {
        (0..<bytes).map { _ in String(format: "%02x", UInt8.random(in: 1...255)) }.joined()
    }

    func startSpan<Instant: TracerInstant>(
        _ operationName: String, context: @autoclosure () -> ServiceContext, ofKind kind: SpanKind,
        at instant: @autoclosure () -> Instant, function: String, file fileID: String, line: UInt
    ) -> PrintedSpan {
        var context = context()
        let parent = context[IdentityKey.self]
        let identity = Identity(traceID: parent?.traceID ?? Self.hex(16), spanID: Self.hex(8))
        context[IdentityKey.self] = identity
        return PrintedSpan(name: operationName, kind: kind, identity: identity, parentSpanID: parent?.spanID, context: context)
    }

    func forceFlush() {}

    func inject<Carrier, Inject: Injector>(_ context: ServiceContext, into carrier: inout Carrier, using injector: Inject)
    where Inject.Carrier == Carrier {
        guard let identity = context[IdentityKey.self] else { return }
        injector.inject("00-\(identity.traceID)-\(identity.spanID)-01", forKey: "traceparent", into: &carrier)
    }

    func extract<Carrier, Extract: Extractor>(_ carrier: Carrier, into context: inout ServiceContext, using extractor: Extract)
    where Extract.Carrier == Carrier {
        guard let header = extractor.extract(key: "traceparent", from: carrier) else { return }
        let parts = header.split(separator: "-")
        guard parts.count == 4 else { return }
        context[IdentityKey.self] = Identity(traceID: String(parts[1]), spanID: String(parts[2]))
    }

    /// A span that prints itself when it ends.
    final class PrintedSpan: Tracing.Span, Sendable {
        private let state: Mutex<(name: String, attributes: SpanAttributes, failed: Bool, ended: Bool)>
        let kind: SpanKind
        let identity: Identity
        let parentSpanID: String?
        let context: ServiceContext

        init(name: String, kind: SpanKind, identity: Identity, parentSpanID: String?, context: ServiceContext) {
            state = Mutex((name, [:], false, false))
            self.kind = kind
            self.identity = identity
            self.parentSpanID = parentSpanID
            self.context = context
        }

        var operationName: String {
            get { state.withLock { $0.name } }
            set { state.withLock { $0.name = newValue } }
        }
        var attributes: SpanAttributes {
            get { state.withLock { $0.attributes } }
            set { state.withLock { $0.attributes = newValue } }
        }
        var isRecording: Bool { state.withLock { !$0.ended } }
        func setStatus(_ status: SpanStatus) { if status.code == .error { state.withLock { $0.failed = true } } }
        func addEvent(_ event: SpanEvent) {}
        func recordError<Instant: TracerInstant>(_ error: any Error, attributes: SpanAttributes, at instant: @autoclosure () -> Instant) {
            state.withLock { $0.failed = true }
        }
        func addLink(_ link: SpanLink) {}

        func end<Instant: TracerInstant>(at instant: @autoclosure () -> Instant) {
            let ended: (name: String, failed: Bool)? = state.withLock { state in
                guard !state.ended else { return nil }
                state.ended = true
                return (state.name, state.failed)
            }
            guard let ended else { return }
            let fields: [String: String?] = [
                "trace": identity.traceID, "span": identity.spanID, "parent": parentSpanID, "name": ended.name,
                "kind": "\(kind)", "error": ended.failed ? "true" : nil,
            ]
            let object = fields.compactMapValues { $0 }
            guard var line = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) else { return }
            line.append(UInt8(ascii: "\n"))
            // One write per line, so lines of concurrent spans never interleave.
            FileHandle.standardError.write(line)
        }
    }
}

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import EventBus
import Testing

/// What a check works with: the bus under test, the harness, the size, and a subject namespace of its own.
struct CheckContext: Sendable {
    let bus: any EventBus
    let harness: EventBusConformanceHarness
    let size: EventBusConformance.Size
    /// `<harness prefix>.<random token>`: no two check runs share a subject.
    let prefix: String
    let extraClients = Recorder<any EventBus>()

    static let source = "/eventbus-conformance"

    var timing: ConformanceTiming { harness.timing }

    /// `short` or `long`, by the size the suite runs at.
    func scaled(short: Int, long: Int) -> Int {
        size == .short ? short : long
    }

    func subject(_ tail: String) -> String {
        "\(prefix).\(tail)"
    }

    func pattern(_ tail: String) throws -> SubjectPattern {
        try SubjectPattern(subject(tail))
    }

    /// A small event on `subject(tail)` whose payload names it.
    func event(_ tail: String, _ index: Int = 0, id: String = Event.makeID()) -> Event {
        Event(
            id: id, subject: subject(tail), type: "conformance.\(tail)", source: Self.source,
            data: Array("\(tail)#\(index)".utf8)
        )
    }

    /// Another client of the backend; closed when the check ends.
    func connect() async throws -> any EventBus {
        let client = try await harness.connect(bus)
        extraClients.append(client)
        return client
    }

    /// Closes `subscriptions` and waits (bounded) until `ended` shows that all `expected` iterations ended;
    /// if they did not, records an issue and cancels the group so the check cannot hang.
    func closeAndAwaitEnd(
        _ subscriptions: [EventSubscription],
        ended: Recorder<Bool>,
        expected: Int,
        group: inout ThrowingTaskGroup<Void, any Error>,
        sourceLocation: SourceLocation = #_sourceLocation
    ) async throws {
        for subscription in subscriptions {
            await subscription.close()
        }
        let allEnded = try await waitUntil(timeout: timing.stepTimeout) { ended.count >= expected }
        #expect(
            allEnded, "\(expected - ended.count) of \(expected) subscriptions still iterating \(timing.stepTimeout) after close()",
            sourceLocation: sourceLocation
        )
        if !allEnded {
            group.cancelAll()
        }
    }

    /// Waits (bounded) until `condition` holds; records an issue naming `what` and returns false otherwise.
    @discardableResult
    func expectEventually(
        _ what: @autoclosure () -> String,
        timeout: Duration? = nil,
        sourceLocation: SourceLocation = #_sourceLocation,
        _ condition: () -> Bool
    ) async throws -> Bool {
        let limit = timeout ?? timing.stepTimeout
        let held = try await waitUntil(timeout: limit, condition)
        if !held {
            Issue.record("\(what()) (not within \(limit))", sourceLocation: sourceLocation)
        }
        return held
    }
}

extension CheckContext {
    /// Waits until `condition` holds, failing only when `progress` stops rising for a step's timeout (see
    /// ``waitUntil(stallTimeout:progress:poll:_:)``); records an issue naming `what` and returns false then.
    @discardableResult
    func expectEventually(
        _ what: @autoclosure () -> String,
        progressing progress: () -> Int,
        sourceLocation: SourceLocation = #_sourceLocation,
        _ condition: () -> Bool
    ) async throws -> Bool {
        let held = try await waitUntil(stallTimeout: timing.stepTimeout, progress: progress, condition)
        if !held {
            Issue.record("\(what()) (no progress for \(timing.stepTimeout))", sourceLocation: sourceLocation)
        }
        return held
    }
}

/// Iterates `subscription` in a child task of `group`, handing each delivery to `handle`; appends to `ended`
/// when the iteration ends for any reason.
func iterate(
    _ subscription: EventSubscription,
    in group: inout ThrowingTaskGroup<Void, any Error>,
    ended: Recorder<Bool>,
    handle: @escaping @Sendable (Delivery) async throws -> Void
) {
    group.addTask(operation: {
        defer { ended.append(true) }
        for try await delivery in subscription {
            try await handle(delivery)
        }
    })
}

/// The payload of a conformance event as text.
func payloadText(_ event: Event) -> String {
    String(decoding: event.data, as: UTF8.self)
}

/// `"<count> missing, e.g. [a, b, c]"` for failure messages that must not print thousands of ids.
func describeMissing<Element: Hashable & Comparable>(_ expected: some Sequence<Element>, from actual: some Sequence<Element>) -> String {
    let missing = Set(expected).subtracting(actual)
    return "\(missing.count) missing, e.g. \(missing.sorted().prefix(3))"
}

extension CheckContext {
    /// The payload prefix of probe events, which a handler answers at once and checks otherwise ignore.
    static let probePrefix = "probe#"

    /// Whether `event` is a readiness probe.
    static func isProbe(_ event: Event) -> Bool {
        payloadText(event).hasPrefix(probePrefix)
    }

    /// Publishes probe events on `subject(tail)` until `probesSeen` shows one arrived: a consumer started in
    /// another task is then surely subscribed, so events published next reach it.
    func awaitConsumerReady(_ tail: String, probesSeen: Recorder<Bool>, sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let clock = ContinuousClock()
        let deadline = clock.now + timing.stepTimeout
        var sent = 0
        while probesSeen.count == 0 {
            guard clock.now < deadline else {
                Issue.record("a consumer of '\(subject(tail))' did not start within \(timing.stepTimeout)", sourceLocation: sourceLocation)
                throw EventBusError(.timeout, "consumer did not start")
            }
            var probe = event(tail)
            probe.data = Array("\(Self.probePrefix)\(sent)".utf8)
            try await bus.publish(probe)
            sent += 1
            _ = try await waitUntil(timeout: .milliseconds(50)) { probesSeen.count > 0 }
        }
    }
}

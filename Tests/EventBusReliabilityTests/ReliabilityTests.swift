import EventBusReliabilitySupport
import Foundation
import NATS
import NATSTestSupport
import Testing

/// Fault tests against real nats-server clusters. One parent suite, serialized, so that no two
/// clusters compete for this machine's cores at once (timings are part of what is measured).
///
/// `EVENTBUS_FAULTS=long` runs the long profile (`make reliability`); the default short profile
/// runs in CI with `swift test`.
@Suite("Reliability under faults", .serialized, .tags(.faults))
struct ReliabilityTests {}

extension Tag {
    /// Fault tests: real clusters, processes killed and paused, network namespaces.
    @Tag static var faults: Self
}

/// Checks the stream and consumer against the publish history, records the figures, and fails
/// the test on any violation.
func checkAndRecord(
    _ result: inout ReliabilityResult,
    load: PublishLoad,
    probe: JetStreamProbe,
    stream: String,
    consumer: ConsumerRecorder?,
    began: ContinuousClock.Instant,
    sourceLocation: SourceLocation = #_sourceLocation
) async throws -> ConsistencyReport {
    let published = load.history.all
    let ackedIDs = Set(published.filter(\.outcome.isAcked).map(\.id))
    if let consumer {
        let complete = await consumer.waitUntilReceived(ackedIDs, timeout: .seconds(60))
        #expect(complete, "the consumer did not receive every acked event within 60 s", sourceLocation: sourceLocation)
        // Let late redeliveries and stragglers arrive before the final count.
        try await Task.sleep(for: .milliseconds(500))
        await consumer.stop()
    }
    let stored = try await probe.readStream(stream, timeout: .seconds(120))
    let report = ConsistencyChecker.check(published: published, stored: stored, deliveries: consumer?.deliveries.all)
    result.take(report)
    result.seconds = (ContinuousClock.now - began).seconds
    result.record()
    print("\(result.test): \(report)")
    #expect(report.isValid, "\(report)", sourceLocation: sourceLocation)
    #expect(report.acked > 0, "nothing was acked at all", sourceLocation: sourceLocation)
    return report
}

extension Duration {
    /// The duration in seconds, as a Double.
    var seconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}

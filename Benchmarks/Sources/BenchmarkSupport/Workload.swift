import Benchmark
import Foundation

/// The workloads of docs/DESIGN ("Workloads for benchmarks"): sizes and counts shared by the raw
/// and the NATS variants, so that the two can only differ in the client code.
public enum Workload {
    /// Payload size of every workload.
    public static let payloadSize = 128
    /// The payload: 128 bytes, allocated once.
    public static let payload = [UInt8](repeating: UInt8(ascii: "x"), count: payloadSize)

    /// W1: core publishes per iteration, then one flush.
    public static let w1Messages = 1_000_000
    /// W2: messages published and received in the same process per iteration.
    public static let w2Messages = 1_000_000
    /// W3: sequential request/reply round trips per iteration.
    public static let w3Requests = 20_000

    /// The JetStream workloads' stream: the EventBus's default name and subjects, so that raw
    /// cnats, the NATS module and the EventBus store into the same kind of stream (file storage).
    public static let streamName = "EVENTS"
    /// The subjects the stream captures.
    public static let streamSubjects = ["events.>"]
    /// The subject of every JetStream workload (the EventBus's `bench` under its `events` prefix).
    public static let jetStreamSubject = "events.bench"
    /// The event subject of the EventBus variants (travels as `events.bench`).
    public static let eventSubject = "bench"

    /// W4: JetStream publishes per iteration, each waiting for its ack.
    public static let w4Messages = 20_000
    /// W5: asynchronous JetStream publishes per iteration.
    public static let w5Messages = 200_000
    /// W5: publishes in flight at most (also the EventBus's default publish window).
    public static let w5InFlight = 4_096
    /// W5 through the EventBus's batch API: events per `publish(contentsOf:)` call.
    public static let w5BatchSize = 4_096
    /// W6: messages preloaded and consumed by a durable pull consumer per iteration.
    public static let w6Messages = 200_000
    /// W6: messages per pull request.
    public static let w6Batch = 500
    /// W7: messages preloaded and consumed by a durable push consumer per iteration.
    public static let w7Messages = 200_000
    /// W6, W7: the consumers' MaxAckPending (the server's default for a consumer).
    public static let maxAckPending = 1_000
    /// W8: messages published one at a time, each timed from publish to receipt.
    public static let w8Messages = 10_000

    /// Memory benchmark: the smaller number of stored messages consumed.
    public static let memorySmall = 100_000
    /// Memory benchmark: the larger number; the peak resident memory must be the same for both.
    public static let memoryLarge = 1_000_000
    /// Memory benchmark, publishing through the EventBus: events per `publish(contentsOf:)` call.
    public static let memoryPublishBatch = 1_000

    /// How long a receive or request may take before the iteration fails instead of hanging.
    public static let receiveTimeout: Duration = .seconds(60)
}

/// Run lengths, from the environment so that run.sh can trade time for spread.
public enum BenchmarkSettings {
    /// Measured iterations per live benchmark and process (`NATS_BENCH_ITERATIONS`, default 5).
    /// run.sh runs the whole suite several times and pools the samples, so that the variants
    /// interleave (raw, NATS, raw, NATS, ...) and a slow minute of the shared machine hits both.
    public static var liveIterations: Int { integer("NATS_BENCH_ITERATIONS", default: 5) }

    /// Longest measuring time of one micro benchmark (`NATS_BENCH_MICRO_MS`, default 1000 ms).
    public static var microDuration: Duration { .milliseconds(integer("NATS_BENCH_MICRO_MS", default: 1000)) }

    /// A benchmark against a server: one warmup iteration (connections, caches, the server's
    /// buffers), then `liveIterations`, however long they take.
    public static func live(
        metrics: [BenchmarkMetric],
        scalingFactor: BenchmarkScalingFactor = .one
    ) -> Benchmark.Configuration {
        Benchmark.Configuration(
            metrics: metrics,
            timeUnits: .automatic,
            warmupIterations: 1,
            scalingFactor: scalingFactor,
            maxDuration: .seconds(600),
            maxIterations: liveIterations
        )
    }

    /// A server-free micro benchmark: 1,000 operations per iteration, bounded by time.
    public static func micro(
        metrics: [BenchmarkMetric] = BenchmarkMetrics.micro,
        maxIterations: Int = 100_000
    ) -> Benchmark.Configuration {
        Benchmark.Configuration(
            metrics: metrics,
            warmupIterations: 10,
            scalingFactor: .kilo,
            maxDuration: microDuration,
            maxIterations: maxIterations
        )
    }

    private static func integer(_ name: String, default value: Int) -> Int {
        guard let text = ProcessInfo.processInfo.environment[name], let parsed = Int(text), parsed > 0 else { return value }
        return parsed
    }
}

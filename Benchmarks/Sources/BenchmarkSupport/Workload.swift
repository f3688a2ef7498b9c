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

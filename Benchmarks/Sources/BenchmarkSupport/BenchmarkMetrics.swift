import Benchmark

/// Metrics of this suite. The custom ones are measured by the benchmark code itself, with
/// nanosecond clocks, because package-benchmark's own throughput is whole iterations per second
/// (one iteration here is a million messages) and its `cpuTotal` counts 10 ms scheduler ticks.
public enum BenchmarkMetrics {
    /// Messages (or requests) per second of one iteration.
    public static let messagesPerSecond = BenchmarkMetric.custom(
        "messagesPerSecond", polarity: .prefersLarger, useScalingFactor: false)
    /// Process CPU time (all threads: the client's, cnats's, the Swift pool's) per message, in ns.
    /// The server runs in another process, so this is the client's own cost.
    public static let cpuNanosPerMessage = BenchmarkMetric.custom(
        "cpuNanosPerMessage", polarity: .prefersSmaller, useScalingFactor: false)
    /// Round-trip time of every request, in ns (the tool's histogram of all samples).
    public static let latency = BenchmarkMetric.custom("latencyNanos", polarity: .prefersSmaller, useScalingFactor: false)
    /// The median round trip of one iteration, in ns.
    public static let latencyP50 = BenchmarkMetric.custom("latencyP50Nanos", polarity: .prefersSmaller, useScalingFactor: false)
    /// The 99th percentile round trip of one iteration, in ns.
    public static let latencyP99 = BenchmarkMetric.custom("latencyP99Nanos", polarity: .prefersSmaller, useScalingFactor: false)

    /// Wall-clock time per operation (publish, or publish-receive-ack) of one iteration, in ns.
    public static let nanosPerOperation = BenchmarkMetric.custom(
        "nanosPerOperation", polarity: .prefersSmaller, useScalingFactor: false)

    /// Operations in one iteration, so that a report can divide per-iteration counts (mallocs) by it.
    public static let operations = BenchmarkMetric.custom(
        "operations", polarity: .prefersLarger, useScalingFactor: false)

    /// The standard set the workloads report.
    public static let standard: [BenchmarkMetric] = [
        .throughput, .wallClock, .cpuTotal, .mallocCountTotal, .peakMemoryResident,
    ]

    /// Throughput workloads (W1, W2, W5-W7).
    public static let throughputWorkload: [BenchmarkMetric] = standard + [messagesPerSecond, cpuNanosPerMessage]

    /// Latency workloads (W3, W8). No `.throughput`: an iteration lasts seconds, so the tool's
    /// integer iterations per second says nothing.
    public static let latencyWorkload: [BenchmarkMetric] =
        [.wallClock, .cpuTotal, .mallocCountTotal, .peakMemoryResident]
        + [messagesPerSecond, cpuNanosPerMessage, latency, latencyP50, latencyP99]

    /// In-memory bus benchmarks (M1, M2 and their cost-isolating variants): operations per second, wall
    /// and CPU time per operation, mallocs (divided by the operations per iteration in the report).
    public static let inMemory: [BenchmarkMetric] =
        [.wallClock, .mallocCountTotal, messagesPerSecond, nanosPerOperation, cpuNanosPerMessage, operations]

    /// Resident memory when the consuming part of the memory benchmark started, in bytes.
    public static let residentAtStart = BenchmarkMetric.custom(
        "residentAtStart", polarity: .prefersSmaller, useScalingFactor: false)
    /// Peak resident memory while the memory benchmark consumed, in bytes (sampled every 5 ms).
    public static let residentPeakConsuming = BenchmarkMetric.custom(
        "residentPeakConsuming", polarity: .prefersSmaller, useScalingFactor: false)

    /// Peak resident memory while the memory benchmark published through the EventBus, in bytes
    /// (sampled every 5 ms; only the benchmarks that publish before consuming).
    public static let residentPeakPublishing = BenchmarkMetric.custom(
        "residentPeakPublishing", polarity: .prefersSmaller, useScalingFactor: false)

    /// The memory benchmark: peak resident memory above all, and the rate for context.
    public static let memoryWorkload: [BenchmarkMetric] = [
        .peakMemoryResident, .wallClock, .cpuTotal, .mallocCountTotal, messagesPerSecond, cpuNanosPerMessage,
        residentAtStart, residentPeakConsuming,
    ]

    /// The memory benchmark that publishes through the EventBus before consuming.
    public static let memoryPublishWorkload: [BenchmarkMetric] = memoryWorkload + [residentPeakPublishing]

    /// Micro benchmarks.
    public static let micro: [BenchmarkMetric] = [.throughput, .wallClock, .mallocCountTotal]
}

import Benchmark
import Foundation
import Histogram

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Nanosecond clocks: monotonic wall time and the CPU time of the whole process.
public enum Clocks {
    @inline(__always)
    public static func monotonicNanos() -> UInt64 { read(CLOCK_MONOTONIC) }

    /// CPU time of every thread of this process (user and system).
    @inline(__always)
    public static func processCPUNanos() -> UInt64 { read(CLOCK_PROCESS_CPUTIME_ID) }

    @inline(__always)
    private static func read(_ clock: clockid_t) -> UInt64 {
        var time = timespec()
        clock_gettime(clock, &time)
        return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
    }
}

/// Measures one iteration of a throughput workload and reports it as custom metrics.
///
/// Start it right after `benchmark.startMeasurement()` and finish it when the last message has
/// arrived (or the flush returned), before cleaning up.
public struct ThroughputMeter {
    private let wallStart: UInt64
    private let cpuStart: UInt64

    public init() {
        wallStart = Clocks.monotonicNanos()
        cpuStart = Clocks.processCPUNanos()
    }

    /// Wall and CPU nanoseconds since the start.
    public func elapsed() -> (wall: UInt64, cpu: UInt64) {
        let cpu = Clocks.processCPUNanos() - cpuStart
        return (Clocks.monotonicNanos() - wallStart, cpu)
    }

    /// Records messages per second and CPU nanoseconds per message for `operations` messages.
    public func finish(_ benchmark: Benchmark, operations: Int) {
        Self.report(benchmark, operations: operations, elapsed: elapsed())
    }

    /// Records operations per second, wall nanoseconds per operation and CPU nanoseconds per operation:
    /// for benchmarks whose iterations are short, where the tool's own per-iteration figures are coarse.
    public func finishOperations(_ benchmark: Benchmark, operations: Int) {
        let (wall, cpu) = elapsed()
        Self.report(benchmark, operations: operations, elapsed: (wall, cpu))
        benchmark.measurement(BenchmarkMetrics.nanosPerOperation, Int((Double(wall) / Double(operations)).rounded()))
        benchmark.measurement(BenchmarkMetrics.operations, operations)
    }

    static func report(_ benchmark: Benchmark, operations: Int, elapsed: (wall: UInt64, cpu: UInt64)) {
        let (wall, cpu) = elapsed
        benchmark.measurement(BenchmarkMetrics.messagesPerSecond, Int(Double(operations) * 1e9 / Double(max(wall, 1))))
        benchmark.measurement(BenchmarkMetrics.cpuNanosPerMessage, Int((Double(cpu) / Double(operations)).rounded()))
    }
}

/// Collects the round-trip times of one iteration of a latency workload without allocating while
/// measuring, then reports every sample plus the iteration's p50 and p99.
public struct LatencyRecorder {
    private var samples: [UInt64]
    private let meter: ThroughputMeter
    private var stopped: (wall: UInt64, cpu: UInt64)?

    public init(capacity: Int) {
        samples = []
        samples.reserveCapacity(capacity)
        meter = ThroughputMeter()
    }

    @inline(__always)
    public mutating func record(nanos: UInt64) { samples.append(nanos) }

    /// Ends the timed part (call right after the last request).
    public mutating func stop() { stopped = meter.elapsed() }

    /// Reports the samples. Call after `benchmark.stopMeasurement()` so that building the
    /// histogram is not measured.
    public func finish(_ benchmark: Benchmark) {
        ThroughputMeter.report(benchmark, operations: samples.count, elapsed: stopped ?? meter.elapsed())
        // 1 ns to 60 s at 3 significant digits: exact enough for microsecond round trips.
        var histogram = Histogram<UInt64>(highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .three)
        for sample in samples {
            _ = histogram.record(sample)
            benchmark.measurement(BenchmarkMetrics.latency, Int(sample))
        }
        benchmark.measurement(BenchmarkMetrics.latencyP50, Int(histogram.valueAtPercentile(50)))
        benchmark.measurement(BenchmarkMetrics.latencyP99, Int(histogram.valueAtPercentile(99)))
    }
}

/// Samples the process's resident memory on a thread of its own while a part of a benchmark
/// runs, and reports the resident memory when it started and the peak while it ran.
public final class ResidentMemorySampler: @unchecked Sendable {
    // @unchecked: `peak` and `running` are guarded by `lock`.
    private let lock = NSLock()
    private var peak = 0
    private var running = true
    private let done = DispatchSemaphore(value: 0)
    /// Resident bytes when sampling started.
    public let atStart: Int

    /// Starts sampling every `interval`.
    public init(interval: Duration = .milliseconds(5)) {
        atStart = Self.residentBytes()
        peak = atStart
        let thread = Thread { [self] in
            while lock.withLock({ running }) {
                let now = Self.residentBytes()
                lock.withLock { peak = max(peak, now) }
                Thread.sleep(forTimeInterval: Double(interval.components.attoseconds) / 1e18)
            }
            done.signal()
        }
        thread.start()
    }

    /// Stops sampling; returns the peak resident bytes seen (at least the final one).
    public func stop() -> Int {
        let last = Self.residentBytes()
        lock.withLock {
            running = false
            peak = max(peak, last)
        }
        done.wait()
        return lock.withLock { peak }
    }

    /// The resident set of this process in bytes (Linux: /proc/self/statm; 0 elsewhere).
    public static func residentBytes() -> Int {
        guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
        let fields = text.split(separator: " ")
        guard fields.count > 1, let pages = Int(fields[1]) else { return 0 }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }
}

import CNATS

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The clock of the connection's idle rule (``NativeConnection/publishFollowsIdle()``), which is
/// read on every application publish.
///
/// `clock_gettime(CLOCK_MONOTONIC)` costs about 28 ns through the vDSO on x86-64 (it orders the
/// counter read against the pipeline and converts ticks to nanoseconds): 12% of the client's
/// samples in a burst of core publishes (W1). Reading the time-stamp counter it reads underneath
/// costs about 11 ns. So where the kernel itself keeps time with that counter (its clocksource
/// is `tsc`, which Linux selects only when the counter runs at a constant rate, through sleep
/// states, and in step on every CPU), the rule reads the counter and compares it with the gap
/// converted to ticks once. Everywhere else (another clocksource, such as a hypervisor's clock;
/// another architecture; another kernel) it reads `clock_gettime`.
///
/// The rule only decides whether a publish is written at once or left to cnats's flusher, so an
/// error in the clock costs at most that: a rate a few percent off moves the 20 µs gap by as
/// much, and a counter that went backwards (a virtual machine moved to another host) makes one
/// publish wait up to a millisecond for the flusher. Nothing is lost or reordered either way.
struct NativeIdleClock: Sendable {
    /// Counter ticks per nanosecond; `nil` when the clock is `clock_gettime` in nanoseconds.
    let ticksPerNanosecond: Double?

    /// Whether connections read the time-stamp counter (``now(cycleCounter:)`` with `true`).
    var usesCycleCounter: Bool { ticksPerNanosecond != nil }

    /// The clock every connection of this process uses, measured on first use: called from a
    /// connect (on its blocking executor), as the calibration sleeps 2 ms once.
    static let process = NativeIdleClock.detect()

    /// `clock_gettime(CLOCK_MONOTONIC)`.
    static let monotonic = NativeIdleClock(ticksPerNanosecond: nil)

    /// `nanoseconds` in this clock's units (at least 1).
    func ticks(forNanoseconds nanoseconds: Int64) -> Int64 {
        guard let rate = ticksPerNanosecond else { return max(1, nanoseconds) }
        let ticks = (Double(nanoseconds) * rate).rounded()
        return ticks >= Double(Int64.max) ? Int64.max : max(1, Int64(ticks))
    }

    /// Now, in this clock's units: counter ticks or monotonic nanoseconds. Only differences of two
    /// readings mean anything.
    @inline(__always)
    static func now(cycleCounter: Bool) -> Int64 {
        if cycleCounter { return Int64(bitPattern: cnats_shim_cycle_counter()) }
        return monotonicNanoseconds()
    }

    @inline(__always)
    static func monotonicNanoseconds() -> Int64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return Int64(time.tv_sec) &* 1_000_000_000 &+ Int64(time.tv_nsec)
    }

    /// The counter when the kernel keeps time with it, calibrated against `CLOCK_MONOTONIC` over
    /// 2 ms; `clock_gettime` otherwise, or when the calibration looks wrong.
    static func detect() -> NativeIdleClock {
        #if arch(x86_64)
        guard kernelClocksource() == "tsc" else { return .monotonic }
        return calibrated(over: 2_000_000) ?? .monotonic
        #else
        return .monotonic
        #endif
    }

    /// The counter's rate, from two readings `interval` nanoseconds apart, each bracketed by two
    /// clock readings less than a microsecond apart (a bracket the scheduler interrupted is taken
    /// again). `nil` when no tight bracket was had or the rate is outside 10 MHz-100 GHz.
    static func calibrated(over interval: Int64) -> NativeIdleClock? {
        func sample() -> (ticks: UInt64, nanoseconds: Int64)? {
            for _ in 0..<10 {
                let before = monotonicNanoseconds()
                let ticks = cnats_shim_cycle_counter()
                let after = monotonicNanoseconds()
                if after - before < 1_000 { return (ticks, before + (after - before) / 2) }
            }
            return nil
        }
        guard let first = sample() else { return nil }
        var pause = timespec(tv_sec: Int(interval / 1_000_000_000), tv_nsec: Int(interval % 1_000_000_000))
        var remaining = timespec()
        while nanosleep(&pause, &remaining) != 0 && errno == EINTR { pause = remaining }
        guard let second = sample(), second.nanoseconds > first.nanoseconds, second.ticks > first.ticks else { return nil }
        let rate = Double(second.ticks - first.ticks) / Double(second.nanoseconds - first.nanoseconds)
        guard rate.isFinite, (0.01...100).contains(rate) else { return nil }
        return NativeIdleClock(ticksPerNanosecond: rate)
    }

    /// The kernel's current clocksource (`tsc`, `kvm-clock`, `hpet`, ...), or `nil` where sysfs
    /// does not say (not Linux, or sysfs not mounted).
    static func kernelClocksource() -> String? {
        let descriptor = open("/sys/devices/system/clocksource/clocksource0/current_clocksource", O_RDONLY)
        guard descriptor >= 0 else { return nil }
        defer { close(descriptor) }
        var buffer = [UInt8](repeating: 0, count: 64)
        let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
        guard count > 0 else { return nil }
        // One name, then a newline.
        return String(decoding: buffer[0..<count], as: UTF8.self).split(whereSeparator: \.isWhitespace).first.map(String.init)
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// A point in time inside the in-memory broker: nanoseconds on the continuous clock since the broker's
/// origin (see ``BrokerClock``).
///
/// Why not `ContinuousClock.Instant`: the standard library does not freeze its layout (`_Concurrency` is
/// built with library evolution), so every struct holding one (log entries, pending deliveries, deadlines,
/// waiters, duplicate-window records) had a layout known only at run time, and each copy, store and
/// enum-tag read of those went through value-witness and metadata calls: measured, a large part of a pull
/// and of an ack. An `Int64` keeps them plain data. It spans ±292 years; durations added to it saturate.
struct BrokerInstant: Comparable, Hashable, Sendable {
    var nanoseconds: Int64

    /// A fixed instant for a field that is not in use (a queued delivery's, an empty table slot's).
    static let unused = BrokerInstant(nanoseconds: 0)

    static func < (lhs: BrokerInstant, rhs: BrokerInstant) -> Bool {
        lhs.nanoseconds < rhs.nanoseconds
    }

    static func + (lhs: BrokerInstant, rhs: Duration) -> BrokerInstant {
        let (sum, overflow) = lhs.nanoseconds.addingReportingOverflow(rhs.saturatingNanoseconds)
        return BrokerInstant(nanoseconds: overflow ? (rhs > .zero ? .max : .min) : sum)
    }

    static func - (lhs: BrokerInstant, rhs: Duration) -> BrokerInstant {
        lhs + (Duration.zero - rhs)
    }

    /// The time from this instant to `other` (negative if `other` is earlier).
    func duration(to other: BrokerInstant) -> Duration {
        .nanoseconds(other.nanoseconds &- nanoseconds)
    }
}

/// The broker's clock: `ContinuousClock`, read as ``BrokerInstant``s relative to the moment the broker was
/// made, and converted back for `Task.sleep(until:clock:)`.
///
/// On Linux it reads `CLOCK_BOOTTIME` itself, the clock `ContinuousClock` reads there: going through
/// `ContinuousClock.now` and `Duration.components` (an `Int128` division) cost ~15 ns more per read, and
/// every publish reads the clock once.
struct BrokerClock: Sendable {
    let clock = ContinuousClock()
    private let origin: ContinuousClock.Instant
    #if canImport(Glibc)
    private let originNanoseconds: Int64
    #endif

    init() {
        origin = clock.now
        #if canImport(Glibc)
        originNanoseconds = Self.bootTimeNanoseconds()
        #endif
    }

    var now: BrokerInstant {
        #if canImport(Glibc)
        BrokerInstant(nanoseconds: Self.bootTimeNanoseconds() &- originNanoseconds)
        #else
        BrokerInstant(nanoseconds: origin.duration(to: clock.now).saturatingNanoseconds)
        #endif
    }

    /// The continuous-clock instant of `instant`, for sleeping until it.
    func continuousInstant(_ instant: BrokerInstant) -> ContinuousClock.Instant {
        origin + .nanoseconds(instant.nanoseconds)
    }

    #if canImport(Glibc)
    @inline(__always)
    private static func bootTimeNanoseconds() -> Int64 {
        var time = timespec()
        clock_gettime(CLOCK_BOOTTIME, &time)
        return Int64(time.tv_sec) &* 1_000_000_000 &+ Int64(time.tv_nsec)
    }
    #endif
}

extension Duration {
    /// Whole nanoseconds, clamped to `Int64` (a configured duration may be absurdly long).
    var saturatingNanoseconds: Int64 {
        let (seconds, attoseconds) = components
        let limit = Int64.max / 1_000_000_000
        if seconds >= limit { return .max }
        if seconds <= -limit { return .min }
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}

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
struct BrokerClock: Sendable {
    let clock = ContinuousClock()
    private let origin: ContinuousClock.Instant

    init() {
        origin = clock.now
    }

    var now: BrokerInstant {
        BrokerInstant(nanoseconds: origin.duration(to: clock.now).saturatingNanoseconds)
    }

    /// The continuous-clock instant of `instant`, for sleeping until it.
    func continuousInstant(_ instant: BrokerInstant) -> ContinuousClock.Instant {
        origin + .nanoseconds(instant.nanoseconds)
    }
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

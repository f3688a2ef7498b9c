import Foundation
import Synchronization

/// What a publisher knows about one publish after it gave up or succeeded.
///
/// The three outcomes of a Jepsen-style history: `acked` (the stream confirmed it, so it must be
/// stored), `failed` (it certainly was not stored: every attempt was refused before reaching a
/// stream, for example with "no responders"), `unknown` (an attempt timed out or the connection
/// dropped with it in flight: it may or may not be stored).
public enum PublishOutcome: Sendable, Hashable, Codable {
    /// Stored at `sequence` (0 when the publisher did not report it: sequences start at 1).
    case acked(sequence: UInt64, duplicate: Bool)
    case failed(reason: String)
    case unknown(reason: String)

    /// Whether the stream confirmed it.
    public var isAcked: Bool {
        if case .acked = self { return true }
        return false
    }
}

/// One logical publish (one unique id), however many attempts it took.
public struct PublishRecord: Sendable, Hashable, Codable {
    /// The unique id, sent as `Nats-Msg-Id` on every attempt.
    public var id: String
    /// The final outcome.
    public var outcome: PublishOutcome
    /// Attempts made (1 = no retry).
    public var attempts: Int
    /// Wall-clock seconds since 1970 when the first attempt started.
    public var startedAt: Double
    /// Wall-clock seconds since 1970 when the outcome was known.
    public var completedAt: Double

    /// Creates a record.
    public init(id: String, outcome: PublishOutcome, attempts: Int, startedAt: Double, completedAt: Double) {
        self.id = id
        self.outcome = outcome
        self.attempts = attempts
        self.startedAt = startedAt
        self.completedAt = completedAt
    }
}

/// A message the stream holds, as read back at the end.
public struct StoredMessage: Sendable, Hashable, Codable {
    /// Its `Nats-Msg-Id` (the publish id).
    public var id: String
    /// Its stream sequence.
    public var sequence: UInt64

    /// Creates a record.
    public init(id: String, sequence: UInt64) {
        self.id = id
        self.sequence = sequence
    }
}

/// One delivery of a stored message to a consumer.
public struct DeliveryRecord: Sendable, Hashable, Codable {
    /// The publish id.
    public var id: String
    /// The stream sequence.
    public var sequence: UInt64
    /// The server's delivery count (1 = first delivery).
    public var deliveryCount: Int
    /// Who received it (a worker, host or consumer name).
    public var receiver: String
    /// Wall-clock seconds since 1970 when it was received.
    public var at: Double

    /// Creates a record.
    public init(id: String, sequence: UInt64, deliveryCount: Int, receiver: String, at: Double) {
        self.id = id
        self.sequence = sequence
        self.deliveryCount = deliveryCount
        self.receiver = receiver
        self.at = at
    }
}

/// Wall-clock seconds since 1970: comparable between processes on one machine.
public func wallClock() -> Double { Date().timeIntervalSince1970 }

/// A thread-safe, append-only list, for histories written by many tasks.
public final class HistoryLog<Element: Sendable>: Sendable {
    private let storage = Mutex<[Element]>([])

    /// Creates an empty log.
    public init() {}

    /// Appends one element.
    public func append(_ element: Element) { storage.withLock { $0.append(element) } }

    /// A snapshot.
    public var all: [Element] { storage.withLock { $0 } }

    /// The number of elements.
    public var count: Int { storage.withLock { $0.count } }
}

/// A fault the test injected, with when it happened.
public struct FaultEvent: Sendable, Hashable, Codable {
    /// What was done, for example `SIGKILL leader nats-2`.
    public var what: String
    /// Wall-clock seconds since 1970.
    public var at: Double

    /// Creates a record.
    public init(_ what: String, at: Double = wallClock()) {
        self.what = what
        self.at = at
    }
}

/// When acks arrived, to measure how long writes were unavailable after a fault.
public struct AvailabilityTimeline: Sendable {
    /// Ack times, sorted (wall-clock seconds).
    public let ackTimes: [Double]

    /// Creates a timeline from ack times in any order.
    public init(ackTimes: [Double]) {
        self.ackTimes = ackTimes.sorted()
    }

    /// ``unavailability(after:within:)`` for each fault, looking ahead up to `horizon` but not past
    /// the next fault, so that a hole the next fault caused is not blamed on this one.
    public func unavailability(after faults: [FaultEvent], horizon: Double = 30) -> [Double] {
        let times = faults.map(\.at)
        return times.enumerated().map { index, time in
            let next = index + 1 < times.count ? times[index + 1] : .infinity
            return unavailability(after: time, within: max(0, min(horizon, next - time)))
        }
    }

    /// The longest stretch without any ack between `fault` and `fault + horizon`: the write
    /// unavailability the fault caused (a stray ack just after the fault does not hide the hole
    /// that follows). `.infinity` when no ack came after the fault at all.
    public func unavailability(after fault: Double, within horizon: Double) -> Double {
        var longest = 0.0
        var previous = fault
        for time in ackTimes where time > fault {
            longest = max(longest, min(time, fault + horizon) - previous)
            previous = time
            if time > fault + horizon { break }
        }
        return previous == fault ? .infinity : longest
    }
}

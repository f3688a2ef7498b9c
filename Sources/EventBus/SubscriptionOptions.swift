#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// How a subscription receives events. Every value is checked by ``validate()`` before a backend acts.
///
/// Subscribers that pass the same `group` and pattern share one consumer: they split its events between
/// them, and the consumer keeps its position while no member is subscribed. The consumer's settings
/// (everything but `start`) come from its first subscriber; a later member passing different settings is
/// refused with ``EventBusError/Code/invalidOption``.
public struct SubscriptionOptions: Hashable, Sendable {
    /// Where a new consumer begins.
    public enum StartPosition: Hashable, Sendable {
        /// Only events published after the subscription was made.
        case new
        /// Every event still retained.
        case all
        /// Retained events from this sequence on (sequences start at 1).
        case sequence(UInt64)
        /// Retained events stored at or after this time.
        case time(Date)
    }

    /// The consumer group; `nil` gives this subscriber a consumer of its own that ends with it.
    public var group: String?
    /// Where a new consumer begins; ignored when joining an existing group.
    public var start: StartPosition
    /// How many deliveries may be outstanding (delivered, not yet acknowledged) at once; JetStream's
    /// `MaxAckPending`. With 1, each event is delivered only after the previous one was settled.
    public var maxInFlight: Int
    /// How long a delivery may stay unacknowledged before it is redelivered.
    public var ackWait: Duration
    /// How many times an event is delivered before it moves to the dead-letter subject; `nil` for no limit.
    public var maxDeliver: Int?
    /// Delays before redelivering an event after a failed attempt (a `nak(delay: nil)` or a handler that
    /// threw): attempt *n* waits `backoff[n - 1]`, the last value repeats; empty means redeliver at once.
    public var backoff: [Duration]
    /// Where exhausted and terminated events go; `nil` means `deadletter.<original subject>`.
    public var deadLetterSubject: String?

    /// How many handlers `consume` runs at once; 1 (the default) handles one delivery after the other.
    /// At most ``maxInFlight`` (on JetStream, the consumer's `MaxAckPending`): more handlers than
    /// outstanding deliveries could never all be busy. Only `consume` reads it; members of one group may
    /// differ.
    public var handlerConcurrency: Int
    /// How `consume` keeps a long handler's delivery from being redelivered while it still runs (see
    /// ``AckExtension``); `nil` sends no in-progress, so a handler running past ``ackWait`` sees its event
    /// delivered again. Only `consume` reads it.
    public var ackExtension: AckExtension?
    /// What `consume` does with the delivery of a handler cancelled with its task (see
    /// ``CancellationPolicy``). Only `consume` reads it.
    public var onCancel: CancellationPolicy

    /// The default for ``maxInFlight``.
    public static let defaultMaxInFlight = 256
    /// The largest accepted ``maxInFlight``; it bounds what one consumer holds outstanding.
    public static let maxInFlightLimit = 1_000_000
    /// The default for ``ackWait``.
    public static let defaultAckWait: Duration = .seconds(30)
    /// The default for ``maxDeliver``.
    public static let defaultMaxDeliver = 5

    /// Creates options; every argument has a default.
    public init(
        group: String? = nil,
        start: StartPosition = .new,
        maxInFlight: Int = SubscriptionOptions.defaultMaxInFlight,
        ackWait: Duration = SubscriptionOptions.defaultAckWait,
        maxDeliver: Int? = SubscriptionOptions.defaultMaxDeliver,
        backoff: [Duration] = [],
        deadLetterSubject: String? = nil,
        handlerConcurrency: Int = 1,
        ackExtension: AckExtension? = .default,
        onCancel: CancellationPolicy = .nak(delay: .zero)
    ) {
        self.group = group
        self.start = start
        self.maxInFlight = maxInFlight
        self.ackWait = ackWait
        self.maxDeliver = maxDeliver
        self.backoff = backoff
        self.deadLetterSubject = deadLetterSubject
        self.handlerConcurrency = handlerConcurrency
        self.ackExtension = ackExtension
        self.onCancel = onCancel
    }

    /// Throws ``EventBusError/Code/invalidOption`` (or `invalidSubject` for the dead-letter subject) naming the
    /// first value that breaks its rule.
    public func validate() throws(EventBusError) {
        if let group {
            try SubjectRules.validateGroup(group)
        }
        if case .sequence(let sequence) = start, sequence == 0 {
            throw EventBusError(.invalidOption, "start sequence 0 is invalid; sequences start at 1")
        }
        guard (1...Self.maxInFlightLimit).contains(maxInFlight) else {
            throw EventBusError(.invalidOption, "maxInFlight \(maxInFlight) must be in 1...\(Self.maxInFlightLimit)")
        }
        guard ackWait >= .milliseconds(1) else {
            throw EventBusError(.invalidOption, "ackWait \(ackWait) must be at least 1 millisecond")
        }
        if let maxDeliver, maxDeliver < 1 {
            throw EventBusError(.invalidOption, "maxDeliver \(maxDeliver) must be at least 1 (nil means no limit)")
        }
        if let negative = backoff.first(where: { $0 < .zero }) {
            throw EventBusError(.invalidOption, "backoff delay \(negative) must not be negative")
        }
        if let maxDeliver, backoff.count > maxDeliver {
            throw EventBusError(
                .invalidOption,
                "backoff has \(backoff.count) delays but maxDeliver is \(maxDeliver); at most one per delivery"
            )
        }
        if let deadLetterSubject {
            try SubjectRules.validateLiteral(deadLetterSubject, role: "deadLetterSubject")
        }
        try validateHandling()
    }

    /// The redelivery delay after `attempt` failed: from ``backoff``, or `nil` (at once) when it is empty.
    public func backoffDelay(afterAttempt attempt: Int) -> Duration? {
        guard let last = backoff.last else { return nil }
        let index = attempt - 1
        return index >= 0 && index < backoff.count ? backoff[index] : last
    }

    /// Whether `attempt` was the last one `maxDeliver` allows.
    public func isFinalAttempt(_ attempt: Int) -> Bool {
        guard let maxDeliver else { return false }
        return attempt >= maxDeliver
    }

    /// The dead-letter subject for an event first published on `subject`.
    public func deadLetterSubject(forOriginalSubject subject: String) -> String {
        deadLetterSubject ?? DeadLetter.defaultSubject(for: subject)
    }
}

extension SubscriptionOptions {
    /// How `consume` extends the ack wait of a delivery whose handler is still running.
    ///
    /// Once a handler has run for ``fraction`` of the ack wait, `consume` sends ``Delivery/inProgress()``
    /// (JetStream `+WPI`), which restarts the ack wait, and sends it again each time that fraction has passed
    /// since, until the handler returns or has run for ``maximum``. After that nothing more is sent and the
    /// event is redelivered when the ack wait runs out, as it would be without extension (`consume` logs a
    /// warning).
    ///
    /// Why a maximum at all: a handler that never returns (a deadlock, a call without a timeout) would
    /// otherwise hold its event for ever, invisible to the other members of its group and to `maxDeliver`.
    /// The default, ten ack waits (5 minutes with the default 30 s), lets real work run well past its ack
    /// wait while a stuck handler's event still comes back to be retried and, in the end, dead-lettered.
    ///
    /// One timer per `consume` checks the running handlers (at half of ``fraction`` of the ack wait), so a
    /// handler that returns in time costs nothing beyond noting which delivery runs.
    public struct AckExtension: Hashable, Sendable {
        /// The part of the ack wait after which in-progress is sent, and between two in-progress; in
        /// ``fractionRange``. Default 0.5.
        public var fraction: Double
        /// How long in-progress is sent for, counted from the handler's start; `nil` means ten ack
        /// waits (``defaultMaximumAckWaits``).
        public var maximum: Duration?

        /// The accepted ``fraction`` values: below 0.05 the timer would wake too often for nothing, above
        /// 0.9 an in-progress may arrive after the ack wait ran out.
        public static let fractionRange: ClosedRange<Double> = 0.05...0.9
        /// How many ack waits ``maximum`` is when it is `nil`.
        public static let defaultMaximumAckWaits = 10
        /// In-progress after half the ack wait, for at most ten ack waits.
        public static let `default` = AckExtension()

        /// Creates the policy; see ``fraction`` and ``maximum``.
        public init(fraction: Double = 0.5, maximum: Duration? = nil) {
            self.fraction = fraction
            self.maximum = maximum
        }

        /// The longest a handler's delivery is extended, for a subscription with `ackWait`.
        public func maximum(ackWait: Duration) -> Duration {
            maximum ?? ackWait * Self.defaultMaximumAckWaits
        }
    }

    /// What `consume` does with a delivery whose handler threw `CancellationError` because the task running
    /// `consume` was cancelled (a shutdown, a stopped member).
    ///
    /// Cancellation says nothing about the event, so the default hands it back at once for another member
    /// of the group, and it is never dead-lettered for it: on its last allowed attempt the delivery is left
    /// to its ack wait. A handler that ignores cancellation and returns settles normally.
    public enum CancellationPolicy: Hashable, Sendable {
        /// `nak(delay:)`: the event comes back after `delay` (`.zero`: at once, the default). On the last
        /// attempt `maxDeliver` allows, nothing is sent and the ack wait brings it back, so cancellation
        /// never dead-letters.
        case nak(delay: Duration)
        /// `term(reason:)`: the event moves to the dead-letter subject with the reason "handler cancelled".
        /// For events that must not be retried once started.
        case term
    }

    /// Checks the options only `consume` reads, but not ``handlerConcurrency`` against the consumer's limit:
    /// a backend may put its own default in place of ``maxInFlight`` (see
    /// ``validateConcurrency(maxInFlight:limitName:)``).
    func validateHandling() throws(EventBusError) {
        guard handlerConcurrency >= 1 else {
            throw EventBusError(.invalidOption, "handlerConcurrency \(handlerConcurrency) must be at least 1")
        }
        if let ackExtension {
            guard AckExtension.fractionRange.contains(ackExtension.fraction) else {
                throw EventBusError(
                    .invalidOption,
                    "ackExtension.fraction \(ackExtension.fraction) must be in \(AckExtension.fractionRange)"
                )
            }
            if let maximum = ackExtension.maximum, maximum <= .zero {
                throw EventBusError(.invalidOption, "ackExtension.maximum \(maximum) must be positive")
            }
        }
        if case .nak(let delay) = onCancel, delay < .zero {
            throw EventBusError(.invalidOption, "onCancel nak delay \(delay) must not be negative")
        }
    }

    /// Throws ``EventBusError/Code/invalidOption`` naming both values when ``handlerConcurrency`` exceeds
    /// `maxInFlight`, the consumer's limit of outstanding deliveries in force, called `limitName`.
    package func validateConcurrency(maxInFlight: Int, limitName: String) throws(EventBusError) {
        guard handlerConcurrency <= maxInFlight else {
            throw EventBusError(
                .invalidOption,
                "handlerConcurrency \(handlerConcurrency) exceeds \(limitName) \(maxInFlight); "
                    + "at most \(limitName) deliveries are outstanding at once, so more handlers could never all work"
            )
        }
    }
}

extension InMemoryEventBus {
    /// Limits and windows of an in-memory bus. Every bound is finite, so memory is too.
    public struct Configuration: Sendable, Hashable {
        /// The name in every ``PublishReceipt``.
        public var streamName: String
        /// How many events the retained log holds; past it the oldest are discarded.
        public var maxEvents: Int
        /// How many payload bytes the retained log holds; past it the oldest events are discarded.
        public var maxBytes: Int
        /// How long an event is retained; `nil` for no age limit.
        public var maxAge: Duration?
        /// How long an event id is remembered for duplicate suppression; `.zero` turns suppression off.
        public var duplicateWindow: Duration
        /// How many event ids the duplicate window remembers at most; past it the oldest are forgotten early.
        public var duplicateWindowCapacity: Int
        /// How many requests may wait for one consumer's members before further requests are refused.
        public var requestQueueLimit: Int
        /// How many deliveries one pull hands to an iterator at most.
        public var batchLimit: Int

        /// Creates a configuration; the defaults suit tests and development.
        public init(
            streamName: String = "memory",
            maxEvents: Int = 1_000_000,
            maxBytes: Int = 1 << 30,
            maxAge: Duration? = nil,
            duplicateWindow: Duration = .seconds(120),
            duplicateWindowCapacity: Int = 1_000_000,
            requestQueueLimit: Int = 1024,
            batchLimit: Int = 128
        ) {
            self.streamName = streamName
            self.maxEvents = maxEvents
            self.maxBytes = maxBytes
            self.maxAge = maxAge
            self.duplicateWindow = duplicateWindow
            self.duplicateWindowCapacity = duplicateWindowCapacity
            self.requestQueueLimit = requestQueueLimit
            self.batchLimit = batchLimit
        }

        /// Throws ``EventBusError/Code/invalidOption`` naming the first value out of range.
        public func validate() throws(EventBusError) {
            let positive: [(String, Int)] = [
                ("maxEvents", maxEvents), ("maxBytes", maxBytes), ("requestQueueLimit", requestQueueLimit),
                ("batchLimit", batchLimit),
            ]
            for (name, value) in positive where value < 1 {
                throw EventBusError(.invalidOption, "in-memory bus \(name) \(value) must be at least 1")
            }
            if duplicateWindowCapacity < 0 {
                throw EventBusError(
                    .invalidOption,
                    "in-memory bus duplicateWindowCapacity \(duplicateWindowCapacity) must not be negative"
                )
            }
            if let maxAge, maxAge <= .zero {
                throw EventBusError(.invalidOption, "in-memory bus maxAge \(maxAge) must be positive (nil: no limit)")
            }
            if duplicateWindow < .zero {
                throw EventBusError(
                    .invalidOption,
                    "in-memory bus duplicateWindow \(duplicateWindow) must not be negative (.zero: off)"
                )
            }
            if streamName.isEmpty {
                throw EventBusError(.invalidOption, "in-memory bus streamName must not be empty")
            }
        }
    }

    /// Counters that show what the bus holds and what it had to discard.
    public struct Statistics: Sendable, Hashable {
        /// Events in the retained log.
        public var retainedEvents: Int
        /// Sequence of the oldest retained event.
        public var firstSequence: UInt64
        /// Sequence of the newest stored event (0 if none).
        public var lastSequence: UInt64
        /// Consumers (groups and group-less subscribers).
        public var consumers: Int
        /// Delivered events not yet settled, over all consumers.
        public var pendingDeliveries: Int
        /// Publishes suppressed as duplicates.
        public var duplicatesSuppressed: Int
        /// Events the log discarded before some consumer delivered them (subscribers slower than the limits).
        public var discardedBeforeDelivery: Int
    }
}

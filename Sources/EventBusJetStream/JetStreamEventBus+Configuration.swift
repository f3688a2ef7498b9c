public import NATS

extension JetStreamEventBus {
    /// The JetStream consumer kind behind a group.
    public enum GroupConsumerKind: String, Sendable, CaseIterable {
        /// A durable pull consumer: members fetch batches; natural back pressure. The default.
        case pull
        /// A durable push consumer with a deliver group, flow control and heartbeats.
        ///
        /// The server sends a member up to the group's `maxInFlight` events at once, and counts
        /// each as a delivery attempt. A member that stops hands back what it had not reached:
        /// first deliveries at once, redelivered events after the ack wait, so members that come
        /// and go cost an event at most one attempt per ack wait. Pull members ask for a small
        /// window first and hand back less; prefer `.pull` where members come and go often.
        case push
    }

    /// Everything the JetStream bus needs: the connection, the stream, and subscription defaults.
    ///
    /// Event subjects live under ``subjectPrefix``: the event `order.created` travels as the NATS
    /// subject `events.order.created` and is stored by the stream ``streamName``, which captures
    /// ``streamSubjects`` (by default `events.>`). Requests travel as core NATS messages under
    /// ``requestSubjectPrefix`` (never stored).
    public struct Configuration: Sendable {
        /// The NATS connection.
        public var connection: NATSConnectionConfiguration
        /// The stream that stores the bus's events. Default `EVENTS`.
        public var streamName = "EVENTS"
        /// The first token(s) of every event's NATS subject. Default `events`.
        public var subjectPrefix = "events"
        /// The stream's subjects; `nil` for `<subjectPrefix>.>`.
        public var streamSubjects: [String]?
        /// The prefix of request subjects (core NATS, not stored). Default `eventbus-requests`.
        public var requestSubjectPrefix = "eventbus-requests"
        /// Stream replicas (1 for a single server, 3 for a 3-node cluster) of a stream the bus
        /// creates. Default 1. The bus never lowers the replicas of an existing stream.
        public var replicas = 1
        /// Stream storage. Default file.
        public var storage: NATSStreamConfiguration.Storage = .file
        /// How long events are retained; `.zero` for no limit. Default 7 days.
        public var maxAge: Duration = .seconds(7 * 24 * 3600)
        /// The most events retained; -1 for no limit.
        public var maxMessages: Int64 = -1
        /// The most bytes retained; -1 for no limit.
        public var maxBytes: Int64 = -1
        /// How long event ids are remembered to drop duplicate publishes. Default 2 minutes.
        public var duplicateWindow: Duration = .seconds(120)
        /// Ack wait for subscriptions that keep `SubscriptionOptions`' default. Default 30 s.
        public var ackWait: Duration = .seconds(30)
        /// Max deliver for subscriptions that keep `SubscriptionOptions`' default. Default 5.
        public var maxDeliver = 5
        /// Max in flight (JetStream's MaxAckPending) for subscriptions that keep the default.
        /// Default 1,000, the server's own default: with the pull batch below, a group keeps the
        /// server busy while acks travel back (256 cost a fifth of a consuming group's throughput).
        public var maxAckPending = 1_000
        /// Events a subscriber requests ahead from the server, at most. Default 500. A new
        /// member asks for 16 first and doubles with each top-up, so one that leaves early hands
        /// back (and costs a delivery attempt to) only a few events.
        public var pullBatch = 500
        /// How groups receive events: pull consumers (default: each member asks for batches) or
        /// push consumers with a deliver group (the server spreads events over the members).
        public var groupConsumer: GroupConsumerKind = .pull
        /// How often the server confirms a consumer is alive while it has nothing to send (pull
        /// requests' and push consumers' idle heartbeat). Two missed heartbeats make a pull
        /// subscriber re-issue its requests and report a recovery. Default 5 s; at most 15 s
        /// (half of a pull request's 30 s life).
        public var consumerIdleHeartbeat: Duration = .seconds(5)
        /// Publishes awaiting their ack, at most (back pressure beyond). Default 4,096.
        public var maxPendingPublishes = 4_096
        /// How long a publish waits for the stream's ack. Default 10 s (longer than a JetStream
        /// leader election, which takes 5-8 s).
        public var publishTimeout: Duration = .seconds(10)
        /// How long the server keeps the consumer of a subscriber without group after it went
        /// away. Default 60 s.
        public var ephemeralInactiveThreshold: Duration = .seconds(60)
        /// What the bus does with a stream that already exists: by default (``StreamUpdatePolicy/never``)
        /// it checks that the stream can carry the bus and changes nothing; ``StreamUpdatePolicy/update``
        /// applies this configuration's stream settings, keeping everything else the operator set.
        /// The settings above (``replicas``, ``storage``, ``maxAge``, ...) are always used to create
        /// a missing stream.
        public var streamUpdatePolicy: StreamUpdatePolicy = .never

        /// Creates a configuration for a connection.
        public init(connection: NATSConnectionConfiguration) {
            self.connection = connection
        }

        /// The stream's subjects.
        public var effectiveStreamSubjects: [String] { streamSubjects ?? ["\(subjectPrefix).>"] }

        /// The stream configuration the bus creates at start when the stream is missing.
        public var stream: NATSStreamConfiguration {
            var stream = NATSStreamConfiguration(name: streamName, subjects: effectiveStreamSubjects)
            stream.description = "EventBus events (swift-nats-eventbus)"
            stream.replicas = replicas
            stream.storage = storage
            stream.maxAge = maxAge
            stream.maxMessages = maxMessages
            stream.maxBytes = maxBytes
            // The server refuses a duplicate window longer than the max age.
            stream.duplicateWindow = maxAge > .zero ? min(duplicateWindow, maxAge) : duplicateWindow
            return stream
        }

        /// Checks the values, and that they can work together (see ``init(config:connection:keyPrefix:)``):
        /// the stream's subjects cover `<subjectPrefix>.>`, and the duplicate window is at least the
        /// ack wait and the publish timeout.
        public func validate() throws(NATSError) {
            try connection.validate()
            try stream.validate()
            if let rule = NATSValidation.subjectViolation(subjectPrefix, for: .publish) {
                throw NATSError(.invalidConfiguration, "subject prefix '\(subjectPrefix)': \(rule)")
            }
            if let rule = NATSValidation.subjectViolation(requestSubjectPrefix, for: .publish) {
                throw NATSError(.invalidConfiguration, "request subject prefix '\(requestSubjectPrefix)': \(rule)")
            }
            for (name, value) in [("maxDeliver", maxDeliver), ("maxAckPending", maxAckPending), ("pullBatch", pullBatch), ("maxPendingPublishes", maxPendingPublishes)]
            where value < 1 {
                throw NATSError(.invalidConfiguration, "\(name) \(value) must be at least 1")
            }
            if ackWait <= .zero { throw NATSError(.invalidConfiguration, "ackWait must be positive") }
            if consumerIdleHeartbeat < .milliseconds(100) || consumerIdleHeartbeat > .seconds(15) {
                throw NATSError(
                    .invalidConfiguration,
                    "consumerIdleHeartbeat \(consumerIdleHeartbeat) must be between 100 ms and 15 s (half of a pull request's 30 s)")
            }
            if publishTimeout <= .zero { throw NATSError(.invalidConfiguration, "publishTimeout must be positive") }
            try checkCombinations(naming: { $0.property })
        }
    }
}

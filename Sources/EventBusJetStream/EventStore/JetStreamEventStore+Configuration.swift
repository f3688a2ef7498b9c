import EventBus
import NATS

extension JetStreamEventStore {
    /// Where and how the store keeps its events and snapshots.
    ///
    /// Each aggregate is one subject, `<subjectPrefix>.<category>.<id>`, of one stream. The stream
    /// keeps events until they are deleted (no age limit) and refuses an append past
    /// ``maxEventsPerAggregate`` instead of dropping the oldest event; snapshots live in a key-value
    /// bucket.
    ///
    /// The store may share the bus's stream: put `subjectPrefix` inside the bus's subjects (for
    /// example `events.store` under `events.>`) and name the bus's stream. Bus subscribers on `>` then
    /// receive every stored event too, with its aggregate subject; keep them apart (the default) when
    /// that is not wanted.
    public struct Configuration: Sendable, Hashable {
        /// The stream's name. Default `EVENTSTORE`.
        public var streamName = "EVENTSTORE"
        /// The first token(s) of every aggregate subject. Default `store`.
        public var subjectPrefix = "store"
        /// The key-value bucket for snapshots. Default `EVENTSTORE_SNAPSHOTS`.
        public var snapshotBucket = "EVENTSTORE_SNAPSHOTS"
        /// How many servers keep a copy (1, 3 or 5 on a cluster). Default 1.
        public var replicas = 1
        /// File (survives restarts) or memory. Default file.
        public var storage: NATSStreamConfiguration.Storage = .file
        /// The most events one aggregate may hold; an append past it fails with `limitReached` and
        /// stores nothing. `nil` (the default): no limit but the stream's.
        public var maxEventsPerAggregate: Int64?
        /// How long the server remembers event ids to drop a repeated append. Default 2 minutes.
        public var duplicateWindow: Duration = .seconds(120)
        /// How long each server round trip may take. Default 5 s.
        public var timeout: Duration = .seconds(5)
        /// Create the stream and bucket when missing; on an existing stream (an operator's, or the
        /// bus's when shared), check that its subjects cover the store's and add `allow_atomic`,
        /// changing nothing else (limits apply when the store creates the stream). When false, both
        /// must exist. Default true.
        public var provision = true

        /// The defaults.
        public init() {}

        func validate() throws(EventStoreError) {
            do {
                try NATSJetStream.validateName(streamName, what: "event store stream name")
                try NATSJetStream.validateName(snapshotBucket, what: "event store snapshot bucket")
            } catch {
                throw EventStoreError(.invalidArgument, error.message)
            }
            if subjectPrefix.isEmpty || subjectPrefix.hasPrefix(".") || subjectPrefix.hasSuffix(".")
                || subjectPrefix.contains("..") || subjectPrefix.contains(where: { $0 == "*" || $0 == ">" || $0 == " " })
            {
                throw EventStoreError(
                    .invalidArgument,
                    "event store subject prefix '\(subjectPrefix)' must be one or more literal subject tokens (no empty token, wildcard or space)")
            }
            if let limit = maxEventsPerAggregate, limit < 1 {
                throw EventStoreError(.invalidArgument, "maxEventsPerAggregate \(limit) must be at least 1 (nil for no limit)")
            }
            if ![1, 3, 5].contains(replicas) {
                throw EventStoreError(.invalidArgument, "event store replicas \(replicas) must be 1, 3 or 5")
            }
            if timeout <= .zero {
                throw EventStoreError(.invalidArgument, "event store timeout \(timeout) must be positive")
            }
        }

        var streamConfiguration: NATSStreamConfiguration {
            var stream = NATSStreamConfiguration(name: streamName, subjects: ["\(subjectPrefix).>"])
            stream.description = "Event store: one subject per aggregate"
            stream.storage = storage
            stream.replicas = replicas
            stream.maxAge = .zero
            stream.duplicateWindow = duplicateWindow
            stream.additionalFields["allow_atomic"] = .bool(true)
            stream.additionalFields["allow_direct"] = .bool(true)
            if let limit = maxEventsPerAggregate {
                // Refuse the append instead of dropping the aggregate's oldest event.
                stream.maxMessagesPerSubject = limit
                stream.discard = .new
                stream.additionalFields["discard_new_per_subject"] = .bool(true)
            }
            return stream
        }
    }
}

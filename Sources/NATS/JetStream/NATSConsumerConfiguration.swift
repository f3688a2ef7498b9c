#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The configuration of a JetStream consumer.
///
/// A consumer with a ``durableName`` is durable: the server keeps its position across client and
/// server restarts. Without one it is ephemeral and removed after ``inactiveThreshold`` without
/// a subscriber. Setting ``deliverSubject`` makes a push consumer; otherwise it is a pull
/// consumer.
public struct NATSConsumerConfiguration: Sendable, Hashable {
    /// Where a new consumer starts.
    public enum DeliverPolicy: Sendable, Hashable {
        /// From the first message in the stream.
        case all
        /// From the last message.
        case last
        /// Only messages published after the consumer was created.
        case new
        /// From this stream sequence.
        case byStartSequence(UInt64)
        /// From the first message at or after this time.
        case byStartTime(Date)
        /// The last message of each subject.
        case lastPerSubject
    }

    /// How messages must be acknowledged.
    public enum AckPolicy: String, Sendable, Hashable, CaseIterable {
        /// Each message individually.
        case explicit
        /// Acknowledging a message acknowledges every earlier one.
        case all
        /// No acknowledgement: delivered means done.
        case none
    }

    /// How fast messages are replayed.
    public enum ReplayPolicy: String, Sendable, Hashable, CaseIterable {
        /// As fast as possible.
        case instant
        /// At the pace they were published.
        case original
    }

    /// The durable name (no `.`, `*`, `>`, whitespace); `nil` for an ephemeral consumer.
    public var durableName: String?
    /// A description shown in consumer info.
    public var description: String?
    /// Only messages on these subjects (wildcards allowed); empty for all of the stream's.
    public var filterSubjects: [String] = []
    /// Where a new consumer starts. Cannot change on a live consumer.
    public var deliverPolicy: DeliverPolicy = .all
    /// How messages must be acknowledged. Cannot change on a live consumer.
    public var ackPolicy: AckPolicy = .explicit
    /// How long the server waits for an ack before redelivering.
    public var ackWait: Duration = .seconds(30)
    /// Deliveries of one message before the server gives up on it; -1 for no limit.
    public var maxDeliver = -1
    /// Redelivery delays, one per attempt (the last repeats); overrides `ackWait` for redelivery.
    public var backoff: [Duration] = []
    /// Messages delivered but not yet acknowledged, at most (the consumer's flow of work).
    public var maxAckPending = 1_000
    /// Pull requests the server holds at once, at most (pull consumers).
    public var maxWaiting = 512
    /// How fast messages are replayed.
    public var replayPolicy: ReplayPolicy = .instant
    /// How long an unused ephemeral (or, on servers 2.10+, durable) consumer is kept; `nil` for
    /// the server's default.
    public var inactiveThreshold: Duration?
    /// Idle heartbeats the server sends to a push subscriber; `nil` for none.
    public var idleHeartbeat: Duration?
    /// Whether the server waits for the push subscriber to keep up (flow control).
    public var flowControl = false
    /// The subject a push consumer delivers to; `nil` for a pull consumer.
    public var deliverSubject: String?
    /// The queue group push subscribers share (a deliver group).
    public var deliverGroup: String?
    /// Consumer replicas; 0 for the stream's.
    public var replicas = 0
    /// Whether the consumer's state is kept in memory only.
    public var memoryStorage = false

    /// Creates a configuration.
    public init(durableName: String? = nil) {
        self.durableName = durableName
    }

    /// Checks the values before anything is sent.
    public func validate() throws(NATSError) {
        let label = durableName.map { "consumer '\($0)'" } ?? "ephemeral consumer"
        if let durableName { try NATSJetStream.validateName(durableName, what: "durable consumer name") }
        for subject in filterSubjects {
            if let rule = NATSValidation.subjectViolation(subject, for: .subscribe) {
                throw NATSError(.invalidSubject, "\(label) filter subject '\(NATSValidation.printable(subject))': \(rule)")
            }
        }
        if ackWait <= .zero { throw NATSError(.invalidConfiguration, "\(label) ackWait must be positive, got \(ackWait)") }
        if maxDeliver == 0 || maxDeliver < -1 {
            throw NATSError(.invalidConfiguration, "\(label) maxDeliver \(maxDeliver) must be -1 (no limit) or positive")
        }
        if !backoff.isEmpty {
            if backoff.contains(where: { $0 <= .zero }) {
                throw NATSError(.invalidConfiguration, "\(label) backoff durations must be positive")
            }
            if maxDeliver != -1 && maxDeliver <= backoff.count {
                throw NATSError(
                    .invalidConfiguration,
                    "\(label) maxDeliver (\(maxDeliver)) must be greater than the number of backoff steps (\(backoff.count))")
            }
        }
        if maxAckPending < -1 || maxAckPending == 0 {
            throw NATSError(.invalidConfiguration, "\(label) maxAckPending \(maxAckPending) must be -1 (no limit) or positive")
        }
        if let deliverSubject, let rule = NATSValidation.subjectViolation(deliverSubject, for: .publish) {
            throw NATSError(.invalidSubject, "\(label) deliverSubject '\(deliverSubject)': \(rule)")
        }
        if let deliverGroup {
            try NATSValidation.validateQueueGroup(deliverGroup)
            if deliverSubject == nil {
                throw NATSError(.invalidConfiguration, "\(label) has a deliverGroup but no deliverSubject (only push consumers have groups)")
            }
        }
        if flowControl && idleHeartbeat == nil {
            throw NATSError(.invalidConfiguration, "\(label) flow control needs an idleHeartbeat")
        }
        if (flowControl || idleHeartbeat != nil) && deliverSubject == nil {
            throw NATSError(.invalidConfiguration, "\(label) flowControl and idleHeartbeat are for push consumers (set deliverSubject)")
        }
    }

    /// The names of the fields that differ from `other` (for example the server's view), the
    /// same names ``NATSJetStream`` uses in its update errors.
    public func differences(from other: NATSConsumerConfiguration) -> [String] {
        var fields: [String] = []
        if (description ?? "") != (other.description ?? "") { fields.append("description") }
        if Set(filterSubjects) != Set(other.filterSubjects) { fields.append("filterSubjects") }
        if deliverPolicy != other.deliverPolicy { fields.append("deliverPolicy") }
        if ackPolicy != other.ackPolicy { fields.append("ackPolicy") }
        if ackWait != other.ackWait { fields.append("ackWait") }
        if maxDeliver != other.maxDeliver { fields.append("maxDeliver") }
        if backoff != other.backoff { fields.append("backoff") }
        if maxAckPending != other.maxAckPending { fields.append("maxAckPending") }
        if deliverSubject == nil && maxWaiting != other.maxWaiting { fields.append("maxWaiting") }
        if replayPolicy != other.replayPolicy { fields.append("replayPolicy") }
        if let inactiveThreshold, inactiveThreshold != other.inactiveThreshold { fields.append("inactiveThreshold") }
        if idleHeartbeat != other.idleHeartbeat { fields.append("idleHeartbeat") }
        if flowControl != other.flowControl { fields.append("flowControl") }
        if deliverSubject != other.deliverSubject { fields.append("deliverSubject") }
        if deliverGroup != other.deliverGroup { fields.append("deliverGroup") }
        if replicas != 0 && replicas != other.replicas { fields.append("replicas") }
        if memoryStorage != other.memoryStorage { fields.append("memoryStorage") }
        return fields
    }

    /// Fields the server does not let a live consumer change.
    static let immutableFields: Set<String> = ["deliverPolicy", "ackPolicy", "replayPolicy", "memoryStorage"]
}

extension NATSConsumerConfiguration.DeliverPolicy {
    /// The same policy with the start time as it survives a round trip through the server (the
    /// client sends it as RFC 3339 text), so that comparing a configuration with the server's
    /// view does not see a difference that is only precision.
    var normalized: Self {
        if case .byStartTime(let date) = self, let roundTripped = JetStreamTime.parse(JetStreamTime.format(date)) {
            return .byStartTime(roundTripped)
        }
        return self
    }
}

extension NATSConsumerConfiguration: Codable {
    enum CodingKeys: String, CodingKey {
        case durableName = "durable_name"
        case name
        case description
        case filterSubject = "filter_subject"
        case filterSubjects = "filter_subjects"
        case deliverPolicy = "deliver_policy"
        case optStartSequence = "opt_start_seq"
        case optStartTime = "opt_start_time"
        case ackPolicy = "ack_policy"
        case ackWait = "ack_wait"
        case maxDeliver = "max_deliver"
        case backoff
        case maxAckPending = "max_ack_pending"
        case maxWaiting = "max_waiting"
        case replayPolicy = "replay_policy"
        case inactiveThreshold = "inactive_threshold"
        case idleHeartbeat = "idle_heartbeat"
        case flowControl = "flow_control"
        case deliverSubject = "deliver_subject"
        case deliverGroup = "deliver_group"
        case replicas = "num_replicas"
        case memoryStorage = "mem_storage"
    }

    /// Decodes the server's JSON.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        durableName = try container.decodeIfPresent(String.self, forKey: .durableName)
        description = try container.decodeIfPresent(String.self, forKey: .description)
        if let many = try container.decodeIfPresent([String].self, forKey: .filterSubjects), !many.isEmpty {
            filterSubjects = many
        } else if let one = try container.decodeIfPresent(String.self, forKey: .filterSubject), !one.isEmpty {
            filterSubjects = [one]
        }
        switch try container.decodeIfPresent(String.self, forKey: .deliverPolicy) ?? "all" {
        case "last": deliverPolicy = .last
        case "new": deliverPolicy = .new
        case "by_start_sequence":
            deliverPolicy = .byStartSequence(try container.decodeIfPresent(UInt64.self, forKey: .optStartSequence) ?? 0)
        case "by_start_time":
            let text = try container.decodeIfPresent(String.self, forKey: .optStartTime) ?? ""
            deliverPolicy = .byStartTime(JetStreamTime.parse(text) ?? Date(timeIntervalSince1970: 0))
        case "last_per_subject": deliverPolicy = .lastPerSubject
        default: deliverPolicy = .all
        }
        ackPolicy = AckPolicy(rawValue: try container.decodeIfPresent(String.self, forKey: .ackPolicy) ?? "explicit") ?? .explicit
        ackWait = .nanoseconds(try container.decodeIfPresent(Int64.self, forKey: .ackWait) ?? 30_000_000_000)
        maxDeliver = try container.decodeIfPresent(Int.self, forKey: .maxDeliver) ?? -1
        backoff = (try container.decodeIfPresent([Int64].self, forKey: .backoff) ?? []).map { .nanoseconds($0) }
        maxAckPending = try container.decodeIfPresent(Int.self, forKey: .maxAckPending) ?? 1_000
        maxWaiting = try container.decodeIfPresent(Int.self, forKey: .maxWaiting) ?? 512
        replayPolicy = ReplayPolicy(rawValue: try container.decodeIfPresent(String.self, forKey: .replayPolicy) ?? "instant") ?? .instant
        inactiveThreshold = try container.decodeIfPresent(Int64.self, forKey: .inactiveThreshold).map { .nanoseconds($0) }
        idleHeartbeat = try container.decodeIfPresent(Int64.self, forKey: .idleHeartbeat).flatMap { $0 > 0 ? .nanoseconds($0) : nil }
        flowControl = try container.decodeIfPresent(Bool.self, forKey: .flowControl) ?? false
        deliverSubject = try container.decodeIfPresent(String.self, forKey: .deliverSubject)
        deliverGroup = try container.decodeIfPresent(String.self, forKey: .deliverGroup)
        replicas = try container.decodeIfPresent(Int.self, forKey: .replicas) ?? 0
        memoryStorage = try container.decodeIfPresent(Bool.self, forKey: .memoryStorage) ?? false
    }

    /// Encodes the server's JSON.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encodeIfPresent(durableName, forKey: .durableName)
        try container.encodeIfPresent(durableName, forKey: .name)
        try container.encodeIfPresent(description, forKey: .description)
        if filterSubjects.count == 1 {
            try container.encode(filterSubjects[0], forKey: .filterSubject)
        } else if filterSubjects.count > 1 {
            try container.encode(filterSubjects, forKey: .filterSubjects)
        }
        switch deliverPolicy {
        case .all: try container.encode("all", forKey: .deliverPolicy)
        case .last: try container.encode("last", forKey: .deliverPolicy)
        case .new: try container.encode("new", forKey: .deliverPolicy)
        case .lastPerSubject: try container.encode("last_per_subject", forKey: .deliverPolicy)
        case .byStartSequence(let sequence):
            try container.encode("by_start_sequence", forKey: .deliverPolicy)
            try container.encode(sequence, forKey: .optStartSequence)
        case .byStartTime(let date):
            try container.encode("by_start_time", forKey: .deliverPolicy)
            try container.encode(JetStreamTime.format(date), forKey: .optStartTime)
        }
        try container.encode(ackPolicy.rawValue, forKey: .ackPolicy)
        try container.encode(ackWait.nanosecondsClamped, forKey: .ackWait)
        try container.encode(maxDeliver, forKey: .maxDeliver)
        if !backoff.isEmpty { try container.encode(backoff.map(\.nanosecondsClamped), forKey: .backoff) }
        try container.encode(maxAckPending, forKey: .maxAckPending)
        if deliverSubject == nil { try container.encode(maxWaiting, forKey: .maxWaiting) }
        try container.encode(replayPolicy.rawValue, forKey: .replayPolicy)
        try container.encodeIfPresent(inactiveThreshold?.nanosecondsClamped, forKey: .inactiveThreshold)
        try container.encodeIfPresent(idleHeartbeat?.nanosecondsClamped, forKey: .idleHeartbeat)
        if flowControl { try container.encode(true, forKey: .flowControl) }
        try container.encodeIfPresent(deliverSubject, forKey: .deliverSubject)
        try container.encodeIfPresent(deliverGroup, forKey: .deliverGroup)
        if replicas > 0 { try container.encode(replicas, forKey: .replicas) }
        if memoryStorage { try container.encode(true, forKey: .memoryStorage) }
    }
}

/// What the server says about a consumer.
public struct NATSConsumerInfo: Sendable, Decodable {
    /// The stream the consumer reads.
    public var stream: String
    /// The consumer's name.
    public var name: String
    /// The configuration as the server holds it.
    public var configuration: NATSConsumerConfiguration
    /// Messages delivered and not yet acknowledged.
    public var ackPendingCount: Int
    /// Messages redelivered and not yet acknowledged.
    public var redeliveredCount: Int
    /// Pull requests waiting on the server.
    public var waitingCount: Int
    /// Messages in the stream that this consumer has not delivered yet.
    public var pendingCount: UInt64
    /// Sequences of the last message delivered.
    public var delivered: SequencePair
    /// Sequences up to which everything is acknowledged.
    public var ackFloor: SequencePair

    /// A consumer sequence and the stream sequence it stands for.
    public struct SequencePair: Sendable, Decodable, Hashable {
        /// The consumer's own sequence.
        public var consumerSequence: UInt64
        /// The stream's sequence.
        public var streamSequence: UInt64

        enum CodingKeys: String, CodingKey {
            case consumerSequence = "consumer_seq"
            case streamSequence = "stream_seq"
        }
    }

    enum CodingKeys: String, CodingKey {
        case stream = "stream_name"
        case name
        case configuration = "config"
        case ackPendingCount = "num_ack_pending"
        case redeliveredCount = "num_redelivered"
        case waitingCount = "num_waiting"
        case pendingCount = "num_pending"
        case delivered
        case ackFloor = "ack_floor"
    }
}

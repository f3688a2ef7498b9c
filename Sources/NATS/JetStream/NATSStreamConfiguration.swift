/// The configuration of a JetStream stream, as ``NATSJetStream/ensureStream(_:)`` wants it to be.
///
/// Defaults match the server's: unlimited messages, bytes and age, file storage, one replica,
/// limits retention, discard old, a two-minute duplicate window.
///
/// A configuration decoded from the server also keeps every field this type does not model in
/// ``additionalFields`` and encodes them back, so that a configuration read from the server,
/// changed and sent as an update does not strip what an operator set (metadata, compression,
/// `allow_direct`, `deny_delete`, subject transforms, ...).
public struct NATSStreamConfiguration: Sendable, Hashable {
    /// How messages leave the stream.
    public enum Retention: String, Sendable, Hashable, CaseIterable {
        /// Kept until a limit (count, bytes, age) removes them.
        case limits
        /// Kept while a consumer with interest has not acknowledged them.
        case interest
        /// Removed when acknowledged by a consumer (each subject has at most one consumer).
        case workQueue = "workqueue"
    }

    /// Where messages are stored.
    public enum Storage: String, Sendable, Hashable, CaseIterable {
        /// On disk; survives server restarts.
        case file
        /// In memory.
        case memory
    }

    /// What happens when a limit is reached.
    public enum DiscardPolicy: String, Sendable, Hashable, CaseIterable {
        /// The oldest messages are removed.
        case old
        /// New messages are refused.
        case new
    }

    /// The stream name: no `.`, `*`, `>`, whitespace or path separators.
    public var name: String
    /// The subjects the stream stores (wildcards allowed).
    public var subjects: [String]
    /// A description shown in stream info.
    public var description: String?
    /// How messages leave the stream. Cannot change on a live stream.
    public var retention: Retention = .limits
    /// Where messages are stored. Cannot change on a live stream.
    public var storage: Storage = .file
    /// Copies kept in a cluster (1...5).
    public var replicas = 1
    /// The longest a message is kept; `.zero` for no limit.
    public var maxAge: Duration = .zero
    /// The most messages kept; -1 for no limit.
    public var maxMessages: Int64 = -1
    /// The most bytes kept; -1 for no limit.
    public var maxBytes: Int64 = -1
    /// The most messages kept per subject; -1 for no limit.
    public var maxMessagesPerSubject: Int64 = -1
    /// The largest message accepted; -1 for no limit (the server's `max_payload` still applies).
    public var maxMessageSize: Int32 = -1
    /// What happens when a limit is reached.
    public var discard: DiscardPolicy = .old
    /// How long message ids (`Nats-Msg-Id`) are remembered to drop duplicates. The server caps it
    /// at `maxAge` when that is shorter.
    public var duplicateWindow: Duration = .seconds(120)
    /// The server's fields this type does not model, by JSON name, as the server sent them (for
    /// example `metadata`, `compression`, `allow_direct`, `deny_delete`, `sealed`, `mirror`).
    /// Encoded back as they are; a key that names a modelled field is ignored when encoding (the
    /// modelled property wins). Set one to create or update a stream with a server feature this
    /// type does not model.
    public var additionalFields: [String: NATSJSONValue] = [:]

    /// Creates a configuration.
    public init(name: String, subjects: [String]) {
        self.name = name
        self.subjects = subjects
    }

    /// Checks the values before anything is sent.
    public func validate() throws(NATSError) {
        try NATSJetStream.validateName(name, what: "stream name")
        if subjects.isEmpty {
            throw NATSError(.invalidConfiguration, "stream '\(name)' needs at least one subject")
        }
        for subject in subjects {
            if let rule = NATSValidation.subjectViolation(subject, for: .subscribe) {
                throw NATSError(.invalidSubject, "stream '\(name)' subject '\(NATSValidation.printable(subject))': \(rule)")
            }
        }
        if !(1...5).contains(replicas) {
            throw NATSError(.invalidConfiguration, "stream '\(name)' replicas \(replicas) is out of range (1...5)")
        }
        if maxAge < .zero { throw NATSError(.invalidConfiguration, "stream '\(name)' maxAge must not be negative") }
        if duplicateWindow < .zero {
            throw NATSError(.invalidConfiguration, "stream '\(name)' duplicateWindow must not be negative")
        }
        for (field, value) in [("maxMessages", maxMessages), ("maxBytes", maxBytes), ("maxMessagesPerSubject", maxMessagesPerSubject), ("maxMessageSize", Int64(maxMessageSize))]
        where value < -1 || value == 0 {
            throw NATSError(.invalidConfiguration, "stream '\(name)' \(field) \(value) must be -1 (no limit) or positive")
        }
    }

    /// The duplicate window the server will actually use.
    var effectiveDuplicateWindow: Duration {
        if maxAge > .zero && duplicateWindow > maxAge { return maxAge }
        return duplicateWindow
    }

    /// The names of the fields that differ from `other` (for example the server's view), the
    /// same names ``NATSJetStream`` uses in its update errors.
    public func differences(from other: NATSStreamConfiguration) -> [String] {
        var fields: [String] = []
        if Set(subjects) != Set(other.subjects) { fields.append("subjects") }
        if (description ?? "") != (other.description ?? "") { fields.append("description") }
        if retention != other.retention { fields.append("retention") }
        if storage != other.storage { fields.append("storage") }
        if replicas != other.replicas { fields.append("replicas") }
        if maxAge != other.maxAge { fields.append("maxAge") }
        if maxMessages != other.maxMessages { fields.append("maxMessages") }
        if maxBytes != other.maxBytes { fields.append("maxBytes") }
        if maxMessagesPerSubject != other.maxMessagesPerSubject { fields.append("maxMessagesPerSubject") }
        if maxMessageSize != other.maxMessageSize { fields.append("maxMessageSize") }
        if discard != other.discard { fields.append("discard") }
        if effectiveDuplicateWindow != other.effectiveDuplicateWindow { fields.append("duplicateWindow") }
        // Only the additional fields this configuration sets: the server adds many of its own
        // (and its defaults) that a configuration built in code does not mention.
        for (key, value) in additionalFields.sorted(by: { $0.key < $1.key }) where other.additionalFields[key] != value {
            fields.append(key)
        }
        return fields
    }

    /// This configuration's modelled fields over `live`'s additional ones: what an update sends
    /// so that it changes what this configuration says and keeps what only the server knows.
    /// This configuration's own ``additionalFields`` win over `live`'s.
    public func merged(over live: NATSStreamConfiguration) -> NATSStreamConfiguration {
        var merged = self
        merged.additionalFields = live.additionalFields.merging(additionalFields) { _, own in own }
        return merged
    }

    /// Fields the server does not let a live stream change.
    static let immutableFields: Set<String> = ["storage", "retention"]
}

extension NATSStreamConfiguration: Codable {
    enum CodingKeys: String, CodingKey {
        case name, subjects, description, retention, storage
        case replicas = "num_replicas"
        case maxAge = "max_age"
        case maxMessages = "max_msgs"
        case maxBytes = "max_bytes"
        case maxMessagesPerSubject = "max_msgs_per_subject"
        case maxMessageSize = "max_msg_size"
        case discard
        case duplicateWindow = "duplicate_window"
    }

    /// The JSON names of the modelled fields.
    static let modelledKeys: Set<String> = [
        "name", "subjects", "description", "retention", "storage", "num_replicas", "max_age", "max_msgs", "max_bytes",
        "max_msgs_per_subject", "max_msg_size", "discard", "duplicate_window",
    ]

    /// Decodes the server's JSON; fields not modelled go to ``additionalFields``.
    public init(from decoder: any Decoder) throws {
        let others = try decoder.container(keyedBy: AnyCodingKey.self)
        for key in others.allKeys where !Self.modelledKeys.contains(key.stringValue) {
            additionalFields[key.stringValue] = try others.decode(NATSJSONValue.self, forKey: key)
        }
        let container = try decoder.container(keyedBy: CodingKeys.self)
        name = try container.decode(String.self, forKey: .name)
        subjects = try container.decodeIfPresent([String].self, forKey: .subjects) ?? []
        description = try container.decodeIfPresent(String.self, forKey: .description)
        retention = Retention(rawValue: try container.decodeIfPresent(String.self, forKey: .retention) ?? "limits") ?? .limits
        storage = Storage(rawValue: try container.decodeIfPresent(String.self, forKey: .storage) ?? "file") ?? .file
        replicas = try container.decodeIfPresent(Int.self, forKey: .replicas) ?? 1
        maxAge = .nanoseconds(try container.decodeIfPresent(Int64.self, forKey: .maxAge) ?? 0)
        maxMessages = try container.decodeIfPresent(Int64.self, forKey: .maxMessages) ?? -1
        maxBytes = try container.decodeIfPresent(Int64.self, forKey: .maxBytes) ?? -1
        maxMessagesPerSubject = try container.decodeIfPresent(Int64.self, forKey: .maxMessagesPerSubject) ?? -1
        maxMessageSize = try container.decodeIfPresent(Int32.self, forKey: .maxMessageSize) ?? -1
        discard = DiscardPolicy(rawValue: try container.decodeIfPresent(String.self, forKey: .discard) ?? "old") ?? .old
        duplicateWindow = .nanoseconds(try container.decodeIfPresent(Int64.self, forKey: .duplicateWindow) ?? 0)
    }

    /// Encodes the server's JSON, ``additionalFields`` included.
    public func encode(to encoder: any Encoder) throws {
        var others = encoder.container(keyedBy: AnyCodingKey.self)
        for (key, value) in additionalFields where !Self.modelledKeys.contains(key) {
            try others.encode(value, forKey: AnyCodingKey(key))
        }
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(name, forKey: .name)
        try container.encode(subjects, forKey: .subjects)
        try container.encodeIfPresent(description, forKey: .description)
        try container.encode(retention.rawValue, forKey: .retention)
        try container.encode(storage.rawValue, forKey: .storage)
        try container.encode(replicas, forKey: .replicas)
        try container.encode(maxAge.nanosecondsClamped, forKey: .maxAge)
        try container.encode(maxMessages, forKey: .maxMessages)
        try container.encode(maxBytes, forKey: .maxBytes)
        try container.encode(maxMessagesPerSubject, forKey: .maxMessagesPerSubject)
        try container.encode(maxMessageSize, forKey: .maxMessageSize)
        try container.encode(discard.rawValue, forKey: .discard)
        try container.encode(duplicateWindow.nanosecondsClamped, forKey: .duplicateWindow)
    }
}

/// What the server says about a stream.
public struct NATSStreamInfo: Sendable, Decodable {
    /// The stream's configuration as the server holds it.
    public var configuration: NATSStreamConfiguration
    /// The stream's counters.
    public var state: State

    /// Counters of a stream.
    public struct State: Sendable, Decodable, Hashable {
        /// Messages stored.
        public var messages: UInt64
        /// Bytes stored.
        public var bytes: UInt64
        /// Sequence of the first stored message.
        public var firstSequence: UInt64
        /// Sequence of the last stored message.
        public var lastSequence: UInt64
        /// Consumers of the stream.
        public var consumerCount: Int

        enum CodingKeys: String, CodingKey {
            case messages, bytes
            case firstSequence = "first_seq"
            case lastSequence = "last_seq"
            case consumerCount = "consumer_count"
        }
    }

    enum CodingKeys: String, CodingKey {
        case configuration = "config"
        case state
    }
}

/// The configuration of a JetStream key-value bucket, as ``NATSJetStream/ensureKeyValue(_:)``
/// wants it to be.
///
/// A bucket is the stream `KV_<bucket>` storing the subjects `$KV.<bucket>.>`; each key keeps
/// its last ``history`` values. Defaults: one value per key, no limit on value size, total size
/// or age, file storage, one replica.
public struct NATSKeyValueConfiguration: Sendable, Hashable {
    /// The most values a key can keep (the server's and cnats's limit).
    public static let maxHistory = 64

    /// The bucket name: ASCII letters, digits, `_` and `-`.
    public var bucket: String
    /// A description shown in the bucket's stream info (at most 4,096 bytes).
    public var description: String?
    /// How many values each key keeps, the latest included (1...64).
    public var history: Int
    /// The largest value the bucket accepts, in bytes; `nil` for no limit beyond the server's
    /// `max_payload`.
    public var maxValueSize: Int?
    /// The most bytes the whole bucket stores; `nil` for no limit. When full, puts are refused.
    public var maxBytes: Int64?
    /// How long a value is kept after it was put; `nil` to keep values until they are replaced
    /// (at least 100 ms when set, the server's minimum).
    public var ttl: Duration?
    /// Where values are stored.
    public var storage: NATSStreamConfiguration.Storage
    /// How many servers of a cluster keep the bucket (1...5).
    public var replicas: Int

    /// Creates a configuration.
    ///
    /// - Parameters:
    ///   - bucket: The bucket name: ASCII letters, digits, `_` and `-`.
    ///   - description: A description shown in the bucket's stream info.
    ///   - history: How many values each key keeps (1...64). Default 1.
    ///   - maxValueSize: The largest value in bytes, or `nil` for no limit.
    ///   - maxBytes: The most bytes the bucket stores, or `nil` for no limit.
    ///   - ttl: How long a value is kept, or `nil` to keep it until replaced.
    ///   - storage: File (default) or memory.
    ///   - replicas: How many servers keep the bucket (1...5). Default 1.
    public init(
        bucket: String,
        description: String? = nil,
        history: Int = 1,
        maxValueSize: Int? = nil,
        maxBytes: Int64? = nil,
        ttl: Duration? = nil,
        storage: NATSStreamConfiguration.Storage = .file,
        replicas: Int = 1
    ) {
        self.bucket = bucket
        self.description = description
        self.history = history
        self.maxValueSize = maxValueSize
        self.maxBytes = maxBytes
        self.ttl = ttl
        self.storage = storage
        self.replicas = replicas
    }

    /// The name of the stream that holds the bucket.
    public var streamName: String { "KV_\(bucket)" }

    /// Checks every field and throws ``NATSError/Code/invalidName`` or
    /// ``NATSError/Code/invalidConfiguration`` naming the value and the rule.
    public func validate() throws(NATSError) {
        try NATSKeyValueConfiguration.validateBucketName(bucket)
        if let description {
            if description.utf8.count > 4_096 {
                throw NATSError(
                    .invalidConfiguration,
                    "bucket '\(bucket)' description is \(description.utf8.count) bytes; the server accepts at most 4096")
            }
            if description.utf8.contains(0) {
                throw NATSError(.invalidConfiguration, "bucket '\(bucket)' description must not contain NUL characters")
            }
        }
        if !(1...NATSKeyValueConfiguration.maxHistory).contains(history) {
            throw NATSError(
                .invalidConfiguration,
                "bucket '\(bucket)' history \(history) is out of range (1...\(NATSKeyValueConfiguration.maxHistory))")
        }
        if let maxValueSize, !(1...Int(Int32.max)).contains(maxValueSize) {
            throw NATSError(
                .invalidConfiguration,
                "bucket '\(bucket)' maxValueSize \(maxValueSize) is out of range (1...\(Int32.max), or nil for no limit)")
        }
        if let maxBytes, maxBytes < 1 {
            throw NATSError(
                .invalidConfiguration, "bucket '\(bucket)' maxBytes \(maxBytes) must be positive (or nil for no limit)")
        }
        if let ttl, ttl < .milliseconds(100) {
            throw NATSError(
                .invalidConfiguration,
                "bucket '\(bucket)' ttl \(ttl) is below the server's minimum of 100 ms (nil keeps values until they are replaced)")
        }
        if !(1...5).contains(replicas) {
            throw NATSError(.invalidConfiguration, "bucket '\(bucket)' replicas \(replicas) is out of range (1...5)")
        }
    }

    /// Checks a bucket name: not empty, only ASCII letters, digits, `_` and `-`, and short enough
    /// that its stream name `KV_<bucket>` has at most 255 bytes.
    ///
    /// - Parameter bucket: The bucket name to check.
    /// - Throws: ``NATSError/Code/invalidName`` naming the name and the rule.
    public static func validateBucketName(_ bucket: String) throws(NATSError) {
        if bucket.isEmpty { throw NATSError(.invalidName, "a key-value bucket name must not be empty") }
        if bucket.utf8.count > 252 {
            throw NATSError(
                .invalidName,
                "key-value bucket name '\(bucket.prefix(40))…' is \(bucket.utf8.count) bytes; at most 252 (its stream name KV_<bucket> has at most 255)")
        }
        for byte in bucket.utf8 where !byte.isKeyValueBucketCharacter {
            throw NATSError(
                .invalidName,
                "invalid key-value bucket name '\(NATSValidation.printable(bucket))': only ASCII letters, digits, '_' and '-' are allowed")
        }
    }

    /// What differs between this configuration and a bucket's live stream, as `field live →
    /// wanted`, in the words of this type.
    func differences(from stream: NATSStreamConfiguration) -> [String] {
        var fields: [String] = []
        if (description ?? "") != (stream.description ?? "") {
            fields.append("description '\(stream.description ?? "")' → '\(description ?? "")'")
        }
        if Int64(history) != stream.maxMessagesPerSubject {
            fields.append("history \(stream.maxMessagesPerSubject) → \(history)")
        }
        let liveValueSize = stream.maxMessageSize < 0 ? nil : Int(stream.maxMessageSize)
        if maxValueSize != liveValueSize {
            fields.append("maxValueSize \(liveValueSize.map(String.init) ?? "nil") → \(maxValueSize.map(String.init) ?? "nil")")
        }
        let liveBytes = stream.maxBytes < 0 ? nil : stream.maxBytes
        if maxBytes != liveBytes {
            fields.append("maxBytes \(liveBytes.map(String.init) ?? "nil") → \(maxBytes.map(String.init) ?? "nil")")
        }
        let liveTTL = stream.maxAge == .zero ? nil : stream.maxAge
        if ttl != liveTTL {
            fields.append("ttl \(liveTTL.map { "\($0)" } ?? "nil") → \(ttl.map { "\($0)" } ?? "nil")")
        }
        if storage != stream.storage { fields.append("storage \(stream.storage.rawValue) → \(storage.rawValue)") }
        if replicas != stream.replicas { fields.append("replicas \(stream.replicas) → \(replicas)") }
        return fields
    }

    /// The fields as cnats takes them (call after ``validate()``).
    var native: NativeKeyValue.Configuration {
        NativeKeyValue.Configuration(
            bucket: bucket, description: description, history: UInt8(history),
            maxValueSize: maxValueSize.map { Int32($0) } ?? 0, maxBytes: maxBytes ?? 0,
            ttlNanoseconds: ttl?.nanosecondsClamped ?? 0, memoryStorage: storage == .memory, replicas: Int32(replicas))
    }
}

extension UInt8 {
    /// ASCII letters, digits, `_` and `-`: what a bucket name may contain.
    var isKeyValueBucketCharacter: Bool {
        switch self {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"), UInt8(ascii: "-"):
            true
        default:
            false
        }
    }
}

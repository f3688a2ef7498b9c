/// JetStream on one connection: stream and consumer management, publishing with
/// acknowledgements, and consumers.
///
/// Obtain one with ``NATSConnection/jetStream(apiPrefix:timeout:)``. Everything here is
/// asynchronous and nothing blocks Swift's concurrency pool: management calls are JetStream API
/// requests over core NATS, consumers are built on core subscriptions.
public struct NATSJetStream: Sendable {
    /// The connection this context uses.
    public let connection: NATSConnection
    /// How long a JetStream API call or a publish waits for the server.
    public let timeout: Duration
    let api: JetStreamAPI

    init(connection: NATSConnection, apiPrefix: String, timeout: Duration) {
        self.connection = connection
        self.timeout = timeout
        api = JetStreamAPI(connection: connection, prefix: apiPrefix, timeout: timeout)
    }

    /// Checks a stream or consumer name: not empty, at most 255 characters, no `.`, `*`, `>`,
    /// whitespace, control characters or path separators.
    public static func validateName(_ name: String, what: String) throws(NATSError) {
        if name.isEmpty { throw NATSError(.invalidName, "a \(what) must not be empty") }
        if name.utf8.count > 255 {
            throw NATSError(.invalidName, "\(what) '\(name.prefix(40))…' is longer than 255 bytes")
        }
        for byte in name.utf8 {
            switch byte {
            case UInt8(ascii: "."), UInt8(ascii: "*"), UInt8(ascii: ">"), UInt8(ascii: "/"), UInt8(ascii: "\\"):
                throw NATSError(
                    .invalidName,
                    "invalid \(what) '\(NATSValidation.printable(name))': it must not contain '.', '*', '>', '/' or '\\'")
            case 0...0x20, 0x7F:
                throw NATSError(
                    .invalidName,
                    "invalid \(what) '\(NATSValidation.printable(name))': it must not contain whitespace or control characters")
            default:
                continue
            }
        }
    }

    // MARK: Streams

    /// Creates the stream, or updates it to match `configuration`; does nothing when it matches.
    ///
    /// An update changes the fields ``NATSStreamConfiguration`` models to what `configuration`
    /// says (replicas included, up or down) and keeps every other field of the live stream as the
    /// server holds it (metadata, compression, `allow_direct`, `deny_delete`, subject transforms,
    /// ...): see ``NATSStreamConfiguration/merged(over:)``. To check a stream without changing it,
    /// compare ``streamInfo(_:)`` with ``NATSStreamConfiguration/differences(from:)``.
    ///
    /// - Throws: ``NATSError/Code/invalidConfiguration`` naming the field when the change is one
    ///   the server cannot make on a live stream (storage, retention); the server's error (with its
    ///   JetStream code) when it refuses the update for another reason.
    @discardableResult
    public func ensureStream(_ configuration: NATSStreamConfiguration) async throws(NATSError) -> NATSStreamInfo {
        try configuration.validate()
        let existing: NATSStreamInfo
        do {
            existing = try await streamInfo(configuration.name)
        } catch where error.jetStreamErrorCode == NATSJetStreamErrorCode.streamNotFound {
            return try await api.request(
                "STREAM.CREATE.\(configuration.name)", body: configuration, as: NATSStreamInfo.self,
                what: "creating stream '\(configuration.name)'")
        }
        let differences = configuration.differences(from: existing.configuration)
        if differences.isEmpty { return existing }
        let immutable = differences.filter { NATSStreamConfiguration.immutableFields.contains($0) }
        if !immutable.isEmpty {
            let details = immutable.map { field -> String in
                switch field {
                case "storage": "storage \(existing.configuration.storage.rawValue) → \(configuration.storage.rawValue)"
                default: "retention \(existing.configuration.retention.rawValue) → \(configuration.retention.rawValue)"
                }
            }
            throw NATSError(
                .invalidConfiguration,
                "stream '\(configuration.name)' cannot be updated: \(details.joined(separator: ", ")) cannot change on an existing stream (delete and recreate it, or choose another name)"
            )
        }
        // The live configuration's unmodelled fields travel back: an update replaces the whole
        // configuration, and sending only the modelled fields reset the rest to the defaults.
        return try await api.request(
            "STREAM.UPDATE.\(configuration.name)", body: configuration.merged(over: existing.configuration),
            as: NATSStreamInfo.self,
            what: "updating stream '\(configuration.name)' (\(differences.joined(separator: ", ")))")
    }

    /// Sends `configuration` as the stream's new configuration, exactly as it is.
    ///
    /// The server replaces the whole configuration: start from the live one
    /// (``streamInfo(_:)``'s ``NATSStreamInfo/configuration``, which keeps the fields this client
    /// does not model in ``NATSStreamConfiguration/additionalFields``) and change only what you
    /// mean to change.
    ///
    /// - Throws: the validation error before anything is sent; the server's error (with its
    ///   JetStream code) when it refuses the update.
    @discardableResult
    public func updateStream(_ configuration: NATSStreamConfiguration) async throws(NATSError) -> NATSStreamInfo {
        try configuration.validate()
        return try await api.request(
            "STREAM.UPDATE.\(configuration.name)", body: configuration, as: NATSStreamInfo.self,
            what: "updating stream '\(configuration.name)'")
    }

    /// Creates a stream; fails with the server's error (JetStream code
    /// ``NATSJetStreamErrorCode/streamNameInUse``) when one with that name but another
    /// configuration exists. Creating it again with the same configuration succeeds.
    @discardableResult
    public func createStream(_ configuration: NATSStreamConfiguration) async throws(NATSError) -> NATSStreamInfo {
        try configuration.validate()
        return try await api.request(
            "STREAM.CREATE.\(configuration.name)", body: configuration, as: NATSStreamInfo.self,
            what: "creating stream '\(configuration.name)'")
    }

    /// The stream's configuration and counters.
    public func streamInfo(_ name: String) async throws(NATSError) -> NATSStreamInfo {
        try NATSJetStream.validateName(name, what: "stream name")
        return try await api.request(
            "STREAM.INFO.\(name)", body: Optional<EmptyRequest>.none, as: NATSStreamInfo.self,
            what: "reading stream '\(name)'")
    }

    /// Deletes a stream and all its messages and consumers.
    public func deleteStream(_ name: String) async throws(NATSError) {
        try NATSJetStream.validateName(name, what: "stream name")
        _ = try await api.request(
            "STREAM.DELETE.\(name)", body: Optional<EmptyRequest>.none, as: SuccessResponse.self,
            what: "deleting stream '\(name)'")
    }

    /// Removes messages from a stream: all of them, or those on one subject (wildcards allowed).
    /// Returns how many were removed.
    @discardableResult
    public func purgeStream(_ name: String, subject: String? = nil) async throws(NATSError) -> UInt64 {
        try NATSJetStream.validateName(name, what: "stream name")
        if let subject { try NATSValidation.validateSubject(subject, for: .subscribe) }
        let response = try await api.request(
            "STREAM.PURGE.\(name)", body: PurgeRequest(filter: subject), as: PurgeResponse.self,
            what: "purging stream '\(name)'")
        return response.purged
    }

    // MARK: Consumers

    /// Creates the consumer on `stream`, or updates it to match; does nothing when it matches.
    /// Without a durable name it creates an ephemeral consumer (a new one each call).
    ///
    /// - Throws: ``NATSError/Code/invalidConfiguration`` naming the field when the change is one
    ///   the server cannot make on a live consumer (deliver policy, ack policy, replay policy,
    ///   memory storage).
    @discardableResult
    public func ensureConsumer(stream: String, _ configuration: NATSConsumerConfiguration) async throws(NATSError)
        -> NATSConsumerInfo
    {
        try NATSJetStream.validateName(stream, what: "stream name")
        try configuration.validate()
        guard let durable = configuration.durableName else {
            return try await api.request(
                "CONSUMER.CREATE.\(stream)", body: CreateConsumerRequest(stream: stream, config: configuration, action: nil),
                as: NATSConsumerInfo.self, what: "creating an ephemeral consumer on stream '\(stream)'")
        }
        let existing: NATSConsumerInfo
        do {
            existing = try await consumerInfo(stream: stream, name: durable)
        } catch where error.jetStreamErrorCode == NATSJetStreamErrorCode.consumerNotFound {
            return try await api.request(
                "CONSUMER.CREATE.\(stream).\(durable)",
                body: CreateConsumerRequest(stream: stream, config: configuration, action: "create"),
                as: NATSConsumerInfo.self, what: "creating consumer '\(durable)' on stream '\(stream)'")
        }
        var desired = configuration
        desired.deliverPolicy = desired.deliverPolicy.normalized
        var current = existing.configuration
        current.deliverPolicy = current.deliverPolicy.normalized
        let differences = desired.differences(from: current)
        if differences.isEmpty { return existing }
        let immutable = differences.filter { NATSConsumerConfiguration.immutableFields.contains($0) }
        if !immutable.isEmpty {
            throw NATSError(
                .invalidConfiguration,
                "consumer '\(durable)' on stream '\(stream)' cannot be updated: \(immutable.joined(separator: ", ")) cannot change on an existing consumer (delete it first)"
            )
        }
        return try await api.request(
            "CONSUMER.CREATE.\(stream).\(durable)",
            body: CreateConsumerRequest(stream: stream, config: configuration, action: "update"),
            as: NATSConsumerInfo.self,
            what: "updating consumer '\(durable)' on stream '\(stream)' (\(differences.joined(separator: ", ")))")
    }

    /// The consumer's configuration and counters.
    public func consumerInfo(stream: String, name: String) async throws(NATSError) -> NATSConsumerInfo {
        try NATSJetStream.validateName(stream, what: "stream name")
        try NATSJetStream.validateName(name, what: "consumer name")
        return try await api.request(
            "CONSUMER.INFO.\(stream).\(name)", body: Optional<EmptyRequest>.none, as: NATSConsumerInfo.self,
            what: "reading consumer '\(name)' on stream '\(stream)'")
    }

    /// The names of the stream's consumers, sorted (every page of the server's answer).
    public func consumerNames(stream: String) async throws(NATSError) -> [String] {
        try NATSJetStream.validateName(stream, what: "stream name")
        struct Page: Decodable {
            var total: Int?
            var consumers: [String]?
        }
        struct PageRequest: Encodable { var offset: Int }
        var names: [String] = []
        while true {
            let page = try await api.request(
                "CONSUMER.NAMES.\(stream)", body: PageRequest(offset: names.count), as: Page.self,
                what: "listing the consumers of stream '\(stream)'")
            let received = page.consumers ?? []
            names += received
            // An empty page ends it too: the total may shrink while paging.
            if received.isEmpty || names.count >= (page.total ?? 0) { break }
        }
        return names.sorted()
    }

    /// Deletes a consumer.
    public func deleteConsumer(stream: String, name: String) async throws(NATSError) {
        try NATSJetStream.validateName(stream, what: "stream name")
        try NATSJetStream.validateName(name, what: "consumer name")
        _ = try await api.request(
            "CONSUMER.DELETE.\(stream).\(name)", body: Optional<EmptyRequest>.none, as: SuccessResponse.self,
            what: "deleting consumer '\(name)' on stream '\(stream)'")
    }

    /// Asks the server to delete a consumer without waiting for its answer (the server acts on an
    /// API request that has no reply subject): for clean-up where nobody can wait, such as a
    /// `deinit`. Whether the consumer existed, or was deleted, is not known to the caller.
    package func requestConsumerDeletion(stream: String, name: String) throws(NATSError) {
        try NATSJetStream.validateName(stream, what: "stream name")
        try NATSJetStream.validateName(name, what: "consumer name")
        try connection.publish(subject: "\(api.prefix).CONSUMER.DELETE.\(stream).\(name)", payload: [UInt8]())
    }

    // MARK: Publishing

    /// Publishes a message and waits until a stream stored it.
    ///
    /// - Throws: ``NATSError/Code/noResponders`` (retriable) when no stream listens on the
    ///   subject or a stream leader is being elected; ``NATSError/Code/timeout`` (retriable: the
    ///   message may or may not be stored, so retry with the same ``NATSPublishOptions/messageID``);
    ///   ``NATSError/Code/disconnected`` (retriable, the same rule) at once when the connection drops
    ///   while the ack is awaited;
    ///   ``NATSError/Code/jetStream`` with the JetStream error code when an expectation failed.
    public func publish(
        subject: String,
        payload: some Sequence<UInt8> = [UInt8](),
        headers: NATSHeaders = NATSHeaders(),
        options: NATSPublishOptions = NATSPublishOptions(),
        timeout: Duration? = nil
    ) async throws(NATSError) -> NATSPublishAck {
        var headers = headers
        options.apply(to: &headers)
        let reply: NATSMessage
        do {
            reply = try await connection.request(subject: subject, payload: payload, headers: headers, timeout: timeout ?? self.timeout)
        } catch where error.code == .noResponders {
            throw NATSError(
                .noResponders,
                "publish to '\(subject)': no stream answered (no stream stores this subject, JetStream is disabled, or a stream leader is being elected); retry with the same message id",
                isRetriable: true, nativeStatus: error.nativeStatus)
        } catch where error.code == .disconnected {
            // The id the message carries: set by `options` or already in `headers`.
            throw NATSError.unacknowledgedPublish(
                .disconnected, subject: subject, messageID: headers[NATSPublishOptions.Header.messageID])
        }
        return try NATSPublishAck.parse(reply.payload, subject: subject)
    }

    /// Creates an asynchronous publisher with a bounded window of publishes awaiting their acks.
    public func makePublisher(
        configuration: NATSJetStreamPublisher.Configuration = .init()
    ) async throws(NATSError) -> NATSJetStreamPublisher {
        try await NATSJetStreamPublisher.make(connection: connection, configuration: configuration)
    }
}

extension NATSConnection {
    /// JetStream on this connection.
    ///
    /// - Parameters:
    ///   - apiPrefix: The JetStream API prefix (`$JS.API`, or `$JS.<domain>.API` for a domain).
    ///   - timeout: How long API calls and publishes wait for the server. Default 5 s.
    public func jetStream(apiPrefix: String = "$JS.API", timeout: Duration = .seconds(5)) -> NATSJetStream {
        NATSJetStream(connection: self, apiPrefix: apiPrefix, timeout: timeout)
    }
}

struct SuccessResponse: Decodable {
    var success: Bool?
}

struct PurgeRequest: Encodable {
    var filter: String?
}

struct PurgeResponse: Decodable {
    var success: Bool
    var purged: UInt64
}

struct CreateConsumerRequest: Encodable {
    var stream: String
    var config: NATSConsumerConfiguration
    var action: String?

    enum CodingKeys: String, CodingKey {
        case stream = "stream_name"
        case config
        case action
    }
}

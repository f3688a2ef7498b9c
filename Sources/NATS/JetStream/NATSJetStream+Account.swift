/// What JetStream holds for an account and what it may hold: the answer to `$JS.API.INFO`.
public struct NATSAccountInfo: Sendable, Decodable, Hashable {
    /// Bytes of memory storage in use.
    public var memory: UInt64
    /// Bytes of file storage in use.
    public var storage: UInt64
    /// Streams in the account.
    public var streams: Int
    /// Consumers in the account.
    public var consumers: Int
    /// The JetStream domain, when the server has one.
    public var domain: String?
    /// The account's limits; -1 means unlimited.
    public var limits: Limits

    /// An account's JetStream limits; -1 means unlimited.
    public struct Limits: Sendable, Decodable, Hashable {
        /// Bytes of memory storage the account may use.
        public var maxMemory: Int64
        /// Bytes of file storage the account may use.
        public var maxStorage: Int64
        /// Streams the account may have.
        public var maxStreams: Int
        /// Consumers the account may have.
        public var maxConsumers: Int

        enum CodingKeys: String, CodingKey {
            case maxMemory = "max_memory"
            case maxStorage = "max_storage"
            case maxStreams = "max_streams"
            case maxConsumers = "max_consumers"
        }

        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            // A server leaves out what it does not limit.
            maxMemory = try container.decodeIfPresent(Int64.self, forKey: .maxMemory) ?? -1
            maxStorage = try container.decodeIfPresent(Int64.self, forKey: .maxStorage) ?? -1
            maxStreams = try container.decodeIfPresent(Int.self, forKey: .maxStreams) ?? -1
            maxConsumers = try container.decodeIfPresent(Int.self, forKey: .maxConsumers) ?? -1
        }
    }

    enum CodingKeys: String, CodingKey {
        case memory, storage, streams, consumers, domain, limits
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        memory = try container.decodeIfPresent(UInt64.self, forKey: .memory) ?? 0
        storage = try container.decodeIfPresent(UInt64.self, forKey: .storage) ?? 0
        streams = try container.decodeIfPresent(Int.self, forKey: .streams) ?? 0
        consumers = try container.decodeIfPresent(Int.self, forKey: .consumers) ?? 0
        domain = try container.decodeIfPresent(String.self, forKey: .domain)
        limits = try container.decodeIfPresent(Limits.self, forKey: .limits)
            ?? Limits(maxMemory: -1, maxStorage: -1, maxStreams: -1, maxConsumers: -1)
    }
}

extension NATSAccountInfo.Limits {
    init(maxMemory: Int64, maxStorage: Int64, maxStreams: Int, maxConsumers: Int) {
        self.maxMemory = maxMemory
        self.maxStorage = maxStorage
        self.maxStreams = maxStreams
        self.maxConsumers = maxConsumers
    }
}

extension NATSJetStream {
    /// The account's JetStream usage and limits. Reads only: a way to check that JetStream
    /// answers for this account without creating or storing anything.
    ///
    /// - Throws: ``NATSError/Code/jetStreamNotEnabled`` when JetStream is off on the server or
    ///   for the account.
    public func accountInfo() async throws(NATSError) -> NATSAccountInfo {
        try await api.request("INFO", body: Optional<EmptyRequest>.none, as: NATSAccountInfo.self, what: "reading the JetStream account")
    }

    /// The names of the account's streams, sorted (every page of the server's answer); with
    /// `subject`, only the streams whose subjects overlap it (wildcards allowed).
    public func streamNames(subject: String? = nil) async throws(NATSError) -> [String] {
        if let subject { try NATSValidation.validateSubject(subject, for: .subscribe) }
        struct Page: Decodable {
            var total: Int?
            var streams: [String]?
        }
        struct PageRequest: Encodable {
            var offset: Int
            var subject: String?
        }
        var names: [String] = []
        while true {
            let page = try await api.request(
                "STREAM.NAMES", body: PageRequest(offset: names.count, subject: subject), as: Page.self,
                what: "listing the streams")
            let received = page.streams ?? []
            names += received
            // An empty page ends it too: the total may shrink while paging.
            if received.isEmpty || names.count >= (page.total ?? 0) { break }
        }
        return names.sorted()
    }
}

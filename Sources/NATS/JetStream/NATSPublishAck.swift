#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The server's confirmation that a stream stored a message.
public struct NATSPublishAck: Sendable, Hashable {
    /// The stream that stored the message.
    public var stream: String
    /// The message's sequence in the stream.
    public var sequence: UInt64
    /// Whether the stream already had a message with this `Nats-Msg-Id` inside its duplicate
    /// window and stored nothing new.
    public var duplicate: Bool
    /// The JetStream domain, if the server runs in one.
    public var domain: String?

    /// Creates an acknowledgement.
    public init(stream: String, sequence: UInt64, duplicate: Bool = false, domain: String? = nil) {
        self.stream = stream
        self.sequence = sequence
        self.duplicate = duplicate
        self.domain = domain
    }

    /// Parses a publish acknowledgement (`{"stream":"S","seq":1,"duplicate":true}` or
    /// `{"error":{...}}`) without Foundation: it is on the per-message path of every JetStream
    /// publish.
    static func parse(_ payload: NATSPayload, subject: String) throws(NATSError) -> NATSPublishAck {
        let result = payload.withUnsafeBytes { bytes -> Result<NATSPublishAck, NATSError> in
            let scanner = JSONFieldScanner(bytes: bytes)
            if scanner.has(key: "error") {
                let code = scanner.integer(for: "err_code")
                let status = scanner.integer(for: "code")
                let description = scanner.string(for: "description") ?? "publish failed"
                return .failure(
                    NATSError(
                        .jetStream, "publish to '\(subject)' rejected: \(description)",
                        isRetriable: status == 503, jetStreamErrorCode: code.map(Int.init)))
            }
            // A sequence is never negative: `"seq":-1` is not an acknowledgement (and must not
            // trap in the conversion below).
            guard let stream = scanner.string(for: "stream"), let sequence = scanner.integer(for: "seq"), sequence >= 0
            else {
                return .failure(
                    NATSError(
                        .serverError,
                        "publish to '\(subject)': not a JetStream acknowledgement: \(String(decoding: bytes.prefix(200), as: UTF8.self))"
                    ))
            }
            return .success(
                NATSPublishAck(
                    stream: stream, sequence: UInt64(sequence), duplicate: scanner.bool(for: "duplicate") ?? false,
                    domain: scanner.string(for: "domain")))
        }
        return try result.get()
    }
}

/// Expectations and identity for one JetStream publish. Each becomes a header the server checks;
/// a failed expectation stores nothing and fails the publish with a JetStream error code.
public struct NATSPublishOptions: Sendable, Hashable {
    /// `Nats-Msg-Id`: the stream stores a message with this id once within its duplicate window.
    public var messageID: String?
    /// `Nats-Expected-Stream`: the subject must be stored by this stream.
    public var expectedStream: String?
    /// `Nats-Expected-Last-Sequence`: the stream's last sequence must be this.
    public var expectedLastSequence: UInt64?
    /// `Nats-Expected-Last-Subject-Sequence`: the last sequence on this subject must be this.
    public var expectedLastSubjectSequence: UInt64?
    /// `Nats-Expected-Last-Msg-Id`: the stream's last message id must be this.
    public var expectedLastMessageID: String?

    /// Creates options.
    public init(
        messageID: String? = nil,
        expectedStream: String? = nil,
        expectedLastSequence: UInt64? = nil,
        expectedLastSubjectSequence: UInt64? = nil,
        expectedLastMessageID: String? = nil
    ) {
        self.messageID = messageID
        self.expectedStream = expectedStream
        self.expectedLastSequence = expectedLastSequence
        self.expectedLastSubjectSequence = expectedLastSubjectSequence
        self.expectedLastMessageID = expectedLastMessageID
    }

    /// The header names the server reads.
    public enum Header {
        /// `Nats-Msg-Id`.
        public static let messageID = "Nats-Msg-Id"
        /// `Nats-Expected-Stream`.
        public static let expectedStream = "Nats-Expected-Stream"
        /// `Nats-Expected-Last-Sequence`.
        public static let expectedLastSequence = "Nats-Expected-Last-Sequence"
        /// `Nats-Expected-Last-Subject-Sequence`.
        public static let expectedLastSubjectSequence = "Nats-Expected-Last-Subject-Sequence"
        /// `Nats-Expected-Last-Msg-Id`.
        public static let expectedLastMessageID = "Nats-Expected-Last-Msg-Id"
    }

    /// Adds the option headers to `headers`.
    func apply(to headers: inout NATSHeaders) {
        if let messageID { headers.set(messageID, for: Header.messageID) }
        if let expectedStream { headers.set(expectedStream, for: Header.expectedStream) }
        if let expectedLastSequence { headers.set(String(expectedLastSequence), for: Header.expectedLastSequence) }
        if let expectedLastSubjectSequence {
            headers.set(String(expectedLastSubjectSequence), for: Header.expectedLastSubjectSequence)
        }
        if let expectedLastMessageID { headers.set(expectedLastMessageID, for: Header.expectedLastMessageID) }
    }
}

/// Finds top-level or nested `"key": value` pairs in a small JSON object by scanning bytes.
/// Enough for the server's fixed-shape publish acknowledgements; not a general JSON parser.
struct JSONFieldScanner {
    let bytes: UnsafeRawBufferPointer

    init(bytes: UnsafeRawBufferPointer) {
        self.bytes = bytes
    }

    /// The index just after `"key":` (and spaces), or nil.
    ///
    /// Jumps from quote to quote and compares the key in place: every JetStream publish parses an
    /// acknowledgement, and building the quoted pattern as an array per key cost an allocation
    /// each (five per acknowledgement).
    private func valueStart(for key: StaticString) -> Int? {
        guard let base = bytes.baseAddress else { return nil }
        let keyCount = key.utf8CodeUnitCount
        let count = bytes.count
        var index = 0
        while index + keyCount + 2 <= count,
            let quote = memchr(base + index, Int32(UInt8(ascii: "\"")), count - index)
        {
            let open = base.distance(to: UnsafeRawPointer(quote))
            let close = open + 1 + keyCount
            guard close < count else { return nil }
            if bytes[close] == UInt8(ascii: "\""), memcmp(base + open + 1, key.utf8Start, keyCount) == 0 {
                var cursor = close + 1
                while cursor < count && bytes[cursor] == UInt8(ascii: " ") { cursor += 1 }
                if cursor < count && bytes[cursor] == UInt8(ascii: ":") {
                    cursor += 1
                    while cursor < count && bytes[cursor] == UInt8(ascii: " ") { cursor += 1 }
                    return cursor
                }
            }
            index = open + 1
        }
        return nil
    }

    func has(key: StaticString) -> Bool { valueStart(for: key) != nil }

    func integer(for key: StaticString) -> Int64? {
        guard var cursor = valueStart(for: key) else { return nil }
        var value: Int64 = 0
        var digits = 0
        var negative = false
        if cursor < bytes.count && bytes[cursor] == UInt8(ascii: "-") {
            negative = true
            cursor += 1
        }
        while cursor < bytes.count, bytes[cursor] >= UInt8(ascii: "0"), bytes[cursor] <= UInt8(ascii: "9") {
            // A number that does not fit is no number (it used to wrap around to another one).
            let (times10, overflow1) = value.multipliedReportingOverflow(by: 10)
            let (sum, overflow2) = times10.addingReportingOverflow(Int64(bytes[cursor] - UInt8(ascii: "0")))
            guard !overflow1, !overflow2 else { return nil }
            value = sum
            digits += 1
            cursor += 1
        }
        return digits > 0 ? (negative ? -value : value) : nil
    }

    func bool(for key: StaticString) -> Bool? {
        guard let cursor = valueStart(for: key), cursor < bytes.count else { return nil }
        if bytes[cursor] == UInt8(ascii: "t") { return true }
        if bytes[cursor] == UInt8(ascii: "f") { return false }
        return nil
    }

    func string(for key: StaticString) -> String? {
        guard let start = valueStart(for: key), start < bytes.count, bytes[start] == UInt8(ascii: "\"") else { return nil }
        var cursor = start + 1
        // Without escapes (stream names never have any) the value is one slice of the bytes.
        var end = cursor
        while end < bytes.count, bytes[end] != UInt8(ascii: "\""), bytes[end] != UInt8(ascii: "\\") { end += 1 }
        if end < bytes.count, bytes[end] == UInt8(ascii: "\"") {
            return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[cursor..<end]), as: UTF8.self)
        }
        var result: [UInt8] = []
        while cursor < bytes.count, bytes[cursor] != UInt8(ascii: "\"") {
            if bytes[cursor] == UInt8(ascii: "\\"), cursor + 1 < bytes.count {
                cursor += 1
            }
            result.append(bytes[cursor])
            cursor += 1
        }
        return String(decoding: result, as: UTF8.self)
    }
}

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A message as a stream stores it, read by sequence.
public struct NATSStoredMessage: Sendable, Hashable {
    /// The subject it was published to.
    public var subject: String
    /// Its sequence in the stream.
    public var sequence: UInt64
    /// Its headers.
    public var headers: NATSHeaders
    /// Its payload.
    public var payload: NATSPayload
    /// When the stream stored it.
    public var time: Date?
}

extension NATSJetStream {
    /// Reads the message with `sequence` from a stream.
    ///
    /// - Throws: ``NATSError/Code/jetStream`` with `err_code` 10037 when there is no such message.
    public func message(stream: String, sequence: UInt64) async throws(NATSError) -> NATSStoredMessage {
        try NATSJetStream.validateName(stream, what: "stream name")
        struct Request: Encodable { var seq: UInt64 }
        struct Response: Decodable {
            struct Message: Decodable {
                var subject: String
                var seq: UInt64
                var hdrs: String?
                var data: String?
                var time: String?
            }
            var message: Message
        }
        let response = try await api.request(
            "STREAM.MSG.GET.\(stream)", body: Request(seq: sequence), as: Response.self,
            what: "reading message \(sequence) of stream '\(stream)'")
        let payload = response.message.data.flatMap { Data(base64Encoded: $0) }.map { NATSPayload(Array($0)) } ?? NATSPayload()
        let headerBytes = response.message.hdrs.flatMap { Data(base64Encoded: $0) }.map { Array($0) } ?? []
        return NATSStoredMessage(
            subject: response.message.subject, sequence: response.message.seq,
            headers: NATSHeaders(wireFormat: headerBytes), payload: payload,
            time: response.message.time.flatMap(JetStreamTime.parse))
    }
}

extension NATSHeaders {
    /// Parses a header block as it travels (`NATS/1.0[ status]\r\nName: value\r\n...\r\n\r\n`);
    /// malformed lines are skipped.
    init(wireFormat bytes: [UInt8]) {
        self.init()
        let text = String(decoding: bytes, as: UTF8.self)
        for (index, line) in text.split(separator: "\r\n", omittingEmptySubsequences: true).enumerated() {
            if index == 0 && line.hasPrefix("NATS/") { continue }
            guard let colon = line.firstIndex(of: ":") else { continue }
            let name = String(line[..<colon])
            let value = line[line.index(after: colon)...].trimmingSpaces
            add(value, for: name)
        }
    }
}

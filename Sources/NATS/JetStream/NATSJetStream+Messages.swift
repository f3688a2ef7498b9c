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
        return try await getMessage(
            stream: stream, request: MessageGetRequest(seq: sequence, next_by_subj: nil),
            what: "reading message \(sequence) of stream '\(stream)'")
    }

    /// Reads the first message of a stream at or after `sequence` whose subject matches `subject`
    /// (wildcards allowed), or `nil` when there is none: a scan of one subject's messages, one
    /// round trip per message, without a consumer. The server skips the other subjects.
    ///
    /// - Throws: ``NATSError/Code/invalidArgument`` for sequence 0, ``NATSError/Code/invalidSubject``
    ///   for a subject that is not a valid filter, before anything is sent.
    public func message(stream: String, firstAtOrAfter sequence: UInt64, subject: String) async throws(NATSError)
        -> NATSStoredMessage?
    {
        try NATSJetStream.validateName(stream, what: "stream name")
        try NATSValidation.validateSubject(subject, for: .subscribe)
        guard sequence > 0 else {
            throw NATSError(.invalidArgument, "stream sequence 0 is invalid; sequences start at 1")
        }
        do {
            return try await getMessage(
                stream: stream, request: MessageGetRequest(seq: sequence, next_by_subj: subject),
                what: "reading the next message on '\(subject)' from sequence \(sequence) of stream '\(stream)'")
        } catch where error.jetStreamErrorCode == NATSJetStreamErrorCode.noMessageFound {
            return nil
        }
    }

    /// Removes the message with `sequence` from a stream; returns `false` when it is already gone
    /// (deleted or purged). A sequence past the stream's last fails with the server's error
    /// (JetStream code 10057, "stream store EOF").
    ///
    /// The message is marked deleted, not overwritten (`no_erase`): erasing rewrites the block on
    /// disk and is for data that must not be recoverable.
    @discardableResult
    public func deleteMessage(stream: String, sequence: UInt64) async throws(NATSError) -> Bool {
        try NATSJetStream.validateName(stream, what: "stream name")
        guard sequence > 0 else {
            throw NATSError(.invalidArgument, "stream sequence 0 is invalid; sequences start at 1")
        }
        struct Request: Encodable {
            var seq: UInt64
            var no_erase: Bool
        }
        do {
            _ = try await api.request(
                "STREAM.MSG.DELETE.\(stream)", body: Request(seq: sequence, no_erase: true), as: SuccessResponse.self,
                what: "deleting message \(sequence) of stream '\(stream)'")
            return true
        } catch where error.jetStreamErrorCode == NATSJetStreamErrorCode.noMessageFound
            || error.jetStreamErrorCode == NATSJetStreamErrorCode.sequenceNotFound
        {
            return false
        }
    }

    /// Reads the last message of a stream whose subject matches `subject` (wildcards allowed), or
    /// `nil` when there is none: one round trip, without a consumer. This is how a key's or an
    /// aggregate's latest state is read.
    ///
    /// - Throws: ``NATSError/Code/invalidSubject`` for a subject that is not a valid filter, before
    ///   anything is sent.
    public func lastMessage(stream: String, subject: String) async throws(NATSError) -> NATSStoredMessage? {
        try NATSJetStream.validateName(stream, what: "stream name")
        try NATSValidation.validateSubject(subject, for: .subscribe)
        do {
            return try await getMessage(
                stream: stream, request: MessageGetRequest(last_by_subj: subject),
                what: "reading the last message on '\(subject)' of stream '\(stream)'")
        } catch where error.jetStreamErrorCode == NATSJetStreamErrorCode.noMessageFound {
            return nil
        }
    }

    private struct MessageGetRequest: Encodable {
        var seq: UInt64?
        var next_by_subj: String?
        var last_by_subj: String?

        init(seq: UInt64? = nil, next_by_subj: String? = nil, last_by_subj: String? = nil) {
            self.seq = seq
            self.next_by_subj = next_by_subj
            self.last_by_subj = last_by_subj
        }
    }

    private func getMessage(stream: String, request: MessageGetRequest, what: String) async throws(NATSError)
        -> NATSStoredMessage
    {
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
        let response = try await api.request("STREAM.MSG.GET.\(stream)", body: request, as: Response.self, what: what)
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

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A message delivered by a JetStream consumer, with the means to acknowledge it.
///
/// Acknowledge every message once with ``ack()``, ``ackSync(timeout:)``, ``nak(delay:)`` or
/// ``term(reason:)`` (unless the consumer's ack policy is `none`); ``inProgress()`` may be
/// called any number of times before that to extend the ack wait. A second final action throws
/// ``NATSError/Code/alreadyAcknowledged`` instead of sending a second, confusing reply to the
/// server.
public struct NATSJetStreamMessage: Sendable {
    /// The subject the message was published to.
    public var subject: String { received.subject }
    /// The headers.
    public var headers: NATSHeaders { received.headers }
    /// The payload.
    public var payload: NATSPayload { received.payload }
    /// The ack subject (`$JS.ACK.…`) this message is acknowledged on (a new string on each call).
    public var replyTo: String? { acknowledgement?.subject }

    /// The underlying core message, with its reply subject (built on each call).
    public var message: NATSMessage {
        var message = received
        message.replyTo = replyTo
        return message
    }

    /// The message as received, without its reply subject: `acknowledgement` holds that, in the
    /// payload's slab, so that receiving a message allocates nothing of its own.
    let received: NATSMessage
    /// Shared by every copy of this value, so a second final action on a copy fails too.
    let acknowledgement: MessageAcknowledgement?
    /// The consumer's connection, the same for every message (a reference, not an allocation).
    let connection: NATSConnection

    /// Takes the delivery's parts over (moved, not copied: each copy would retain the payload
    /// slab that cnats's delivery thread is retaining for newer messages).
    init(_ delivery: consuming ConsumerDelivery, connection: NATSConnection) {
        let (message, reply) = delivery.intoParts()
        received = message
        acknowledgement = reply
        self.connection = connection
    }

    /// Where the message sits in its stream and consumer, parsed from its ack subject; `nil` when
    /// the message has no JetStream ack subject.
    public var metadata: Metadata? {
        acknowledgement?.withSubjectBytes { Metadata.parse($0) }
    }

    /// The stream sequence, delivery count and the consumer's pending count from the ack subject,
    /// without building the stream and consumer names (for per-message bookkeeping such as the
    /// EventBus's).
    package var deliveryPosition: (streamSequence: UInt64, deliveryCount: UInt64, pending: UInt64)? {
        acknowledgement?.withSubjectBytes { Metadata.parse($0, names: false) }
            .map { ($0.streamSequence, $0.deliveryCount, $0.pending) }
    }

    /// Delivery facts the server encodes in the ack subject.
    public struct Metadata: Sendable, Hashable {
        /// The stream name.
        public var stream: String
        /// The consumer name.
        public var consumer: String
        /// The JetStream domain, if any.
        public var domain: String?
        /// The message's sequence in the stream.
        public var streamSequence: UInt64
        /// The delivery's sequence in the consumer.
        public var consumerSequence: UInt64
        /// How many times the message has been delivered, this delivery included.
        public var deliveryCount: UInt64
        /// Messages still pending for the consumer after this one.
        public var pending: UInt64
        /// When the message was stored.
        public var timestamp: Date

        /// Parses `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ns>.<pending>` and the
        /// newer form with domain and account hash in front and a random token at the end.
        /// One pass over the UTF-8 bytes; only the stream and consumer names become strings.
        public init?(ackSubject: String) {
            var subject = ackSubject
            guard let parsed = subject.withUTF8({ Self.parse($0) }) else { return nil }
            self = parsed
        }

        private init(
            stream: String, consumer: String, domain: String?, streamSequence: UInt64, consumerSequence: UInt64,
            deliveryCount: UInt64, pending: UInt64, timestamp: Date
        ) {
            self.stream = stream
            self.consumer = consumer
            self.domain = domain
            self.streamSequence = streamSequence
            self.consumerSequence = consumerSequence
            self.deliveryCount = deliveryCount
            self.pending = pending
            self.timestamp = timestamp
        }

        /// Parses an ack subject's bytes. Without `names`, the stream, consumer and domain are left
        /// empty (no strings built), for callers that only need the numbers.
        static func parse(_ bytes: UnsafeBufferPointer<UInt8>, names: Bool = true) -> Metadata? {
            // Where each of the first 12 tokens ends (the next starts one byte later).
            withUnsafeTemporaryAllocation(of: Int.self, capacity: 12) { ends in
                // Dots found with memchr: an ack subject is about 80 bytes in 9 or 12 tokens.
                var count = 0
                var start = 0
                if let base = UnsafeRawPointer(bytes.baseAddress) {
                    while start < bytes.count, let dot = memchr(base + start, Int32(UInt8(ascii: ".")), bytes.count - start) {
                        let index = base.distance(to: UnsafeRawPointer(dot))
                        if count < 12 { ends[count] = index }
                        count += 1
                        start = index + 1
                    }
                }
                if count < 12 { ends[count] = bytes.count }
                count += 1
                return parse(bytes, tokenEnds: ends, count: count, names: names)
            }
        }

        private static func parse(
            _ bytes: UnsafeBufferPointer<UInt8>, tokenEnds ends: UnsafeMutableBufferPointer<Int>, count: Int, names: Bool
        ) -> Metadata? {
            func range(_ token: Int) -> Range<Int> { (token == 0 ? 0 : ends[token - 1] + 1)..<ends[token] }
            func text(_ token: Int) -> String {
                names ? String(decoding: UnsafeBufferPointer(rebasing: bytes[range(token)]), as: UTF8.self) : ""
            }
            func number(_ token: Int) -> UInt64? {
                let digits = range(token)
                guard !digits.isEmpty, digits.count <= 20 else { return nil }
                var value: UInt64 = 0
                if digits.count < 20 {
                    // Nineteen digits cannot overflow a UInt64: no checks per digit.
                    for index in digits {
                        let digit = bytes[index] &- UInt8(ascii: "0")
                        guard digit < 10 else { return nil }
                        value = value &* 10 &+ UInt64(digit)
                    }
                    return value
                }
                for index in digits {
                    let digit = bytes[index] &- UInt8(ascii: "0")
                    guard digit < 10 else { return nil }
                    let (times10, overflow1) = value.multipliedReportingOverflow(by: 10)
                    let (sum, overflow2) = times10.addingReportingOverflow(UInt64(digit))
                    guard !overflow1, !overflow2 else { return nil }
                    value = sum
                }
                return value
            }
            guard count >= 9, range(0).count == 3, range(1).count == 3,
                bytes[range(0).lowerBound] == UInt8(ascii: "$"), bytes[range(0).lowerBound + 1] == UInt8(ascii: "J"),
                bytes[range(0).lowerBound + 2] == UInt8(ascii: "S"), bytes[range(1).lowerBound] == UInt8(ascii: "A"),
                bytes[range(1).lowerBound + 1] == UInt8(ascii: "C"), bytes[range(1).lowerBound + 2] == UInt8(ascii: "K")
            else { return nil }
            let first: Int
            let domain: String?
            if count == 9 {
                domain = nil
                first = 2
            } else if count >= 11 {
                let domainRange = range(2)
                domain = domainRange.count == 1 && bytes[domainRange.lowerBound] == UInt8(ascii: "_") ? nil : text(2)
                first = 4
            } else {
                return nil
            }
            guard let delivered = number(first + 2), let streamSequence = number(first + 3),
                let consumerSequence = number(first + 4), let nanoseconds = number(first + 5),
                nanoseconds <= UInt64(Int64.max), let pending = number(first + 6)
            else { return nil }
            return Metadata(
                stream: text(first), consumer: text(first + 1), domain: domain, streamSequence: streamSequence,
                consumerSequence: consumerSequence, deliveryCount: delivered, pending: pending,
                timestamp: Date(timeIntervalSince1970: Double(Int64(nanoseconds)) / 1_000_000_000))
        }
    }

    /// Whether a final action (ack, nak or term) was already taken on this message.
    public var isAcknowledged: Bool { acknowledgement?.isDone ?? false }

    /// Acknowledges the message (sent without waiting for the server).
    public func ack() throws(NATSError) {
        try act(.ack, body: "+ACK")
    }

    /// Acknowledges the message and waits until the server confirms it recorded the ack, so the
    /// message will not be redelivered.
    public func ackSync(timeout: Duration = .seconds(5)) async throws(NATSError) {
        let acknowledgement = try claim(.ack)
        do {
            _ = try await connection.request(
                subject: acknowledgement.subject, payload: Array("+ACK".utf8), timeout: timeout)
        } catch {
            // Not confirmed: allow another attempt.
            acknowledgement.release()
            throw error
        }
    }

    /// Tells the server to redeliver the message, after `delay` if given.
    public func nak(delay: Duration? = nil) throws(NATSError) {
        try act(.nak, body: Self.nakBody(delay: delay))
    }

    /// Tells the server that work on the message is still going on: its ack wait starts again.
    public func inProgress() throws(NATSError) {
        try connection.publishToServerSubject(try Self.unsettled(acknowledgement) { self }, body: "+WPI")
    }

    /// Tells the server never to redeliver the message. The reason, if given, shows in the
    /// server's advisories.
    public func term(reason: String? = nil) throws(NATSError) {
        try act(.term, body: Self.termBody(reason: reason))
    }

    private static func nakBody(delay: Duration?) -> String {
        if let delay, delay > .zero { "-NAK {\"delay\":\(delay.nanosecondsClamped)}" } else { "-NAK" }
    }

    private static func termBody(reason: String?) -> String {
        guard let reason, !reason.isEmpty else { return "+TERM" }
        return "+TERM \(reason.replacing("\r", with: " ").replacing("\n", with: " "))"
    }

    private var describe: String {
        if let metadata { return "'\(subject)' (stream \(metadata.stream) sequence \(metadata.streamSequence))" }
        return "'\(subject)'"
    }

    private func claim(_ action: MessageAcknowledgement.Action) throws(NATSError) -> MessageAcknowledgement {
        try Self.claim(action, on: acknowledgement) { self }
    }

    /// Claims `acknowledgement` (the record of `message`, read only for an error) for a final
    /// action.
    private static func claim(
        _ action: MessageAcknowledgement.Action, on acknowledgement: MessageAcknowledgement?,
        of message: () -> NATSJetStreamMessage
    ) throws(NATSError) -> MessageAcknowledgement {
        guard let acknowledgement else { throw MessageAcknowledgement.noReply(subject: message().subject) }
        if let previous = acknowledgement.claim(action) {
            throw NATSError(
                .alreadyAcknowledged,
                "message \(message().describe) was already acknowledged with \(previous); \(action) is not sent")
        }
        return acknowledgement
    }

    /// `acknowledgement` (the record of `message`, read only for an error) while no final action
    /// was taken, for ``inProgress()``.
    private static func unsettled(
        _ acknowledgement: MessageAcknowledgement?, of message: () -> NATSJetStreamMessage
    ) throws(NATSError) -> MessageAcknowledgement {
        guard let acknowledgement else { throw MessageAcknowledgement.noReply(subject: message().subject) }
        if acknowledgement.isDone {
            throw NATSError(.alreadyAcknowledged, "message \(message().describe) was already acknowledged; inProgress has no effect")
        }
        return acknowledgement
    }

    private func act(_ action: MessageAcknowledgement.Action, body: String) throws(NATSError) {
        try Self.send(body, claimed: try claim(action), on: connection)
    }

    /// Sends a claimed settlement; the claim is given back if it could not be sent.
    private static func send(
        _ body: String, claimed acknowledgement: MessageAcknowledgement, on connection: NATSConnection
    ) throws(NATSError) {
        do {
            // The ack subject came from the server: sent from the record's bytes, not validated again.
            try connection.publishToServerSubject(acknowledgement, body: body)
        } catch {
            acknowledgement.release()
            throw error
        }
    }
}

/// Settling a message that stays where its owner keeps it (package API: the EventBus keeps its
/// deliveries' messages in chunks of slots).
///
/// A method called on a message read from such memory works on a copy of it, which costs a
/// retain and a release of each of its references (the payload slab, shared with newer messages,
/// among them) on every settlement; these read only the two references a settlement needs.
/// Each behaves as the method of the same name.
extension NATSJetStreamMessage {
    package static func ack(at message: UnsafePointer<NATSJetStreamMessage>) throws(NATSError) {
        try act(.ack, body: "+ACK", at: message)
    }

    package static func nak(at message: UnsafePointer<NATSJetStreamMessage>, delay: Duration?) throws(NATSError) {
        try act(.nak, body: nakBody(delay: delay), at: message)
    }

    package static func term(at message: UnsafePointer<NATSJetStreamMessage>, reason: String?) throws(NATSError) {
        try act(.term, body: termBody(reason: reason), at: message)
    }

    package static func inProgress(at message: UnsafePointer<NATSJetStreamMessage>) throws(NATSError) {
        let acknowledgement = try unsettled(message.pointee.acknowledgement) { message.pointee }
        try message.pointee.connection.publishToServerSubject(acknowledgement, body: "+WPI")
    }

    private static func act(
        _ action: MessageAcknowledgement.Action, body: String, at message: UnsafePointer<NATSJetStreamMessage>
    ) throws(NATSError) {
        let acknowledgement = try claim(action, on: message.pointee.acknowledgement) { message.pointee }
        try send(body, claimed: acknowledgement, on: message.pointee.connection)
    }
}

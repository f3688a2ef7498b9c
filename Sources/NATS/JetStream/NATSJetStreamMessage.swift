import Synchronization

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
    public var subject: String { message.subject }
    /// The headers.
    public var headers: NATSHeaders { message.headers }
    /// The payload.
    public var payload: NATSPayload { message.payload }
    /// The ack subject (`$JS.ACK.…`) this message is acknowledged on.
    public var replyTo: String? { message.replyTo }

    /// The underlying core message.
    public let message: NATSMessage
    let acknowledgement: MessageAcknowledgement?

    init(message: NATSMessage, connection: NATSConnection) {
        self.message = message
        acknowledgement = message.replyTo.map { MessageAcknowledgement(connection: connection, replyTo: $0) }
    }

    /// Where the message sits in its stream and consumer, parsed from its ack subject; `nil` when
    /// the message has no JetStream ack subject.
    public var metadata: Metadata? {
        message.replyTo.flatMap(Metadata.init(ackSubject:))
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

        private static func parse(_ bytes: UnsafeBufferPointer<UInt8>) -> Metadata? {
            // Where each of the first 12 tokens ends (the next starts one byte later).
            withUnsafeTemporaryAllocation(of: Int.self, capacity: 12) { ends in
                var count = 0
                for index in 0...bytes.count where index == bytes.count || bytes[index] == UInt8(ascii: ".") {
                    if count < 12 { ends[count] = index }
                    count += 1
                }
                return parse(bytes, tokenEnds: ends, count: count)
            }
        }

        private static func parse(_ bytes: UnsafeBufferPointer<UInt8>, tokenEnds ends: UnsafeMutableBufferPointer<Int>, count: Int) -> Metadata? {
            func range(_ token: Int) -> Range<Int> { (token == 0 ? 0 : ends[token - 1] + 1)..<ends[token] }
            func text(_ token: Int) -> String { String(decoding: UnsafeBufferPointer(rebasing: bytes[range(token)]), as: UTF8.self) }
            func number(_ token: Int) -> UInt64? {
                let digits = range(token)
                guard !digits.isEmpty, digits.count <= 20 else { return nil }
                var value: UInt64 = 0
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
            _ = try await acknowledgement.connection.request(
                subject: acknowledgement.replyTo, payload: Array("+ACK".utf8), timeout: timeout)
        } catch {
            // Not confirmed: allow another attempt.
            acknowledgement.release()
            throw error
        }
    }

    /// Tells the server to redeliver the message, after `delay` if given.
    public func nak(delay: Duration? = nil) throws(NATSError) {
        if let delay, delay > .zero {
            try act(.nak, body: "-NAK {\"delay\":\(delay.nanosecondsClamped)}")
        } else {
            try act(.nak, body: "-NAK")
        }
    }

    /// Tells the server that work on the message is still going on: its ack wait starts again.
    public func inProgress() throws(NATSError) {
        guard let acknowledgement else { throw MessageAcknowledgement.noReply(subject: subject) }
        if acknowledgement.isDone {
            throw NATSError(.alreadyAcknowledged, "message \(describe) was already acknowledged; inProgress has no effect")
        }
        try acknowledgement.send("+WPI")
    }

    /// Tells the server never to redeliver the message. The reason, if given, shows in the
    /// server's advisories.
    public func term(reason: String? = nil) throws(NATSError) {
        if let reason, !reason.isEmpty {
            let cleaned = reason.replacing("\r", with: " ").replacing("\n", with: " ")
            try act(.term, body: "+TERM \(cleaned)")
        } else {
            try act(.term, body: "+TERM")
        }
    }

    private var describe: String {
        if let metadata { return "'\(subject)' (stream \(metadata.stream) sequence \(metadata.streamSequence))" }
        return "'\(subject)'"
    }

    private func claim(_ action: MessageAcknowledgement.Action) throws(NATSError) -> MessageAcknowledgement {
        guard let acknowledgement else { throw MessageAcknowledgement.noReply(subject: subject) }
        if let previous = acknowledgement.claim(action) {
            throw NATSError(
                .alreadyAcknowledged,
                "message \(describe) was already acknowledged with \(previous); \(action) is not sent")
        }
        return acknowledgement
    }

    private func act(_ action: MessageAcknowledgement.Action, body: String) throws(NATSError) {
        let acknowledgement = try claim(action)
        do {
            try acknowledgement.send(body)
        } catch {
            acknowledgement.release()
            throw error
        }
    }
}

/// The ack subject of one message and whether a final action was taken.
final class MessageAcknowledgement: Sendable {
    enum Action: UInt8, CustomStringConvertible {
        case ack = 1
        case nak = 2
        case term = 3

        var description: String {
            switch self {
            case .ack: "ack"
            case .nak: "nak"
            case .term: "term"
            }
        }
    }

    let connection: NATSConnection
    let replyTo: String
    private let state = Atomic<UInt8>(0)

    init(connection: NATSConnection, replyTo: String) {
        self.connection = connection
        self.replyTo = replyTo
    }

    var isDone: Bool { state.load(ordering: .relaxed) != 0 }

    /// Marks the final action; returns the earlier one if there was one.
    func claim(_ action: Action) -> Action? {
        let (exchanged, original) = state.compareExchange(expected: 0, desired: action.rawValue, ordering: .acquiringAndReleasing)
        return exchanged ? nil : Action(rawValue: original)
    }

    /// Undoes a claim whose message could not be sent.
    func release() {
        state.store(0, ordering: .releasing)
    }

    func send(_ body: String) throws(NATSError) {
        // The ack subject came from the server: no need to validate it again per message.
        try connection.publishToServerSubject(replyTo, body: body)
    }

    static func noReply(subject: String) -> NATSError {
        NATSError(.invalidArgument, "message on '\(subject)' has no ack subject (its consumer does not use acks)")
    }
}

import FuzzSupport
@testable import NATS

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The two things JetStream sends that the client parses on every message: the metadata in a
/// `$JS.ACK.` reply subject and the publish acknowledgement's JSON. The input is read as both.
///
/// Invariants: the ack-subject parser agrees with a reference that splits the subject on `.`,
/// with and without building names, and from a `String`; a publish ack that parses renders to
/// JSON that parses to the same value; a rejected ack is a `jetStream` or `serverError` error.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzJetStreamAck(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = inputBytes(data, size)
    checkMetadata(bytes)
    checkPublishAck(bytes)
    return 0
}

typealias Metadata = NATSJetStreamMessage.Metadata

func checkMetadata(_ bytes: UnsafeBufferPointer<UInt8>) {
    let metadata = Metadata.parse(bytes)
    let numbersOnly = Metadata.parse(bytes, names: false)
    let expected = referenceMetadata(Array(bytes))
    invariant((metadata == nil) == (expected == nil), "parse \(String(describing: metadata)) vs reference \(String(describing: expected))")
    invariant((numbersOnly == nil) == (metadata == nil), "names: false disagrees on validity")
    guard let metadata, let numbersOnly, let expected else { return }
    invariant(metadata.stream == expected.stream && metadata.consumer == expected.consumer && metadata.domain == expected.domain,
        "names \(metadata) vs reference \(expected)")
    invariant(metadata.deliveryCount == expected.delivered && metadata.streamSequence == expected.streamSequence
        && metadata.consumerSequence == expected.consumerSequence && metadata.pending == expected.pending,
        "numbers \(metadata) vs reference \(expected)")
    invariant(metadata.timestamp == Date(timeIntervalSince1970: Double(Int64(expected.nanoseconds)) / 1_000_000_000), "timestamp")
    invariant(numbersOnly.streamSequence == metadata.streamSequence && numbersOnly.deliveryCount == metadata.deliveryCount
        && numbersOnly.consumerSequence == metadata.consumerSequence && numbersOnly.pending == metadata.pending,
        "names: false reads other numbers")
    if let text = String(validating: bytes, as: UTF8.self) {
        invariant(Metadata(ackSubject: text) == metadata, "init(ackSubject:) differs from parse")
    }
}

/// The ack subject read the plain way: split on `.`, 9 tokens or 11 and more (domain, account
/// hash, then the 7 fields, then anything), numbers 1 to 20 decimal digits that fit a UInt64.
func referenceMetadata(_ bytes: [UInt8])
    -> (stream: String, consumer: String, domain: String?, delivered: UInt64, streamSequence: UInt64,
        consumerSequence: UInt64, nanoseconds: UInt64, pending: UInt64)?
{
    let tokens = bytes.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
    guard tokens.count == 9 || tokens.count >= 11, tokens[0].elementsEqual("$JS".utf8), tokens[1].elementsEqual("ACK".utf8)
    else { return nil }
    let first = tokens.count == 9 ? 2 : 4
    let domain: String? =
        tokens.count == 9 || tokens[2].elementsEqual("_".utf8) ? nil : String(decoding: tokens[2], as: UTF8.self)
    func number(_ index: Int) -> UInt64? {
        let token = tokens[index]
        // At most 20 digits (UInt64.max has 20): the server writes no leading zeros.
        guard !token.isEmpty, token.count <= 20, token.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }) else { return nil }
        return UInt64(String(decoding: token, as: UTF8.self))
    }
    guard let delivered = number(first + 2), let streamSequence = number(first + 3),
        let consumerSequence = number(first + 4), let nanoseconds = number(first + 5), nanoseconds <= UInt64(Int64.max),
        let pending = number(first + 6)
    else { return nil }
    return (
        String(decoding: tokens[first], as: UTF8.self), String(decoding: tokens[first + 1], as: UTF8.self), domain,
        delivered, streamSequence, consumerSequence, nanoseconds, pending
    )
}

func checkPublishAck(_ bytes: UnsafeBufferPointer<UInt8>) {
    let payload = NATSPayload(copying: UnsafeRawBufferPointer(bytes))
    do {
        let ack = try NATSPublishAck.parse(payload, subject: "orders.created")
        // The same acknowledgement, as the server would write it, reads back the same.
        let rendered = render(ack)
        let again = try? NATSPublishAck.parse(NATSPayload(Array(rendered.utf8)), subject: "orders.created")
        invariant(again == ack, "\(ack) renders as \(rendered), which parses as \(String(describing: again)); "
            + "stream \(Array(ack.stream.utf8)) domain \(ack.domain.map { Array($0.utf8) } ?? []), "
            + "again \(again.map { Array($0.stream.utf8) } ?? []) \(again?.domain.map { Array($0.utf8) } ?? [])")
        // A sequence is what the server wrote, not a wrapped-around number.
        invariant(ack.sequence <= UInt64(Int64.max), "sequence \(ack.sequence)")
    } catch {
        invariant(error.code == .jetStream || error.code == .serverError, "code \(error.code)")
    }
}

func render(_ ack: NATSPublishAck) -> String {
    // Escaped scalar by scalar: a backslash followed by a combining mark is one Character, which
    // a Character-wise replacement would miss.
    func quoted(_ text: String) -> String {
        var escaped = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            if scalar == "\\" || scalar == "\"" { escaped.append("\\") }
            escaped.append(scalar)
        }
        return "\"" + String(escaped) + "\""
    }
    var json = "{\"stream\":\(quoted(ack.stream)), \"seq\": \(ack.sequence)"
    if ack.duplicate { json += ",\"duplicate\":true" }
    if let domain = ack.domain { json += ",\"domain\":\(quoted(domain))" }
    return json + "}"
}

@main
enum Main {
    static func main() { runLibFuzzer(fuzzJetStreamAck) }
}

import EventBus
@testable import EventBusJetStream
import FuzzSupport
@testable import NATS

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Reading an `Event` from a NATS message's headers and payload (CloudEvents NATS binding).
///
/// The input is a header block up to its first empty line, then the payload; when that is not
/// a header block, each line `name:value` is one header. Invariants: the event keeps the subject,
/// and the payload as its data unless the payload is a structured-mode event; writing it as headers
/// (binary mode) with its data as the payload and reading them back gives the same event, also
/// through the wire block when every header may be sent; percent-decoding undoes percent-encoding
/// and encoding leaves only printable ASCII without `"` or space.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzCloudEvents(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = Array(inputBytes(data, size))
    let (headers, payload) = message(bytes)
    let subject = "orders.created"

    let event = CloudEventsNATSBinding.event(subject: subject, headers: headers, payload: payload)
    invariant(event.subject == subject, "subject changed")
    invariant(
        event.data == payload || CloudEventsNATSBinding.structuredEvent(subject: subject, headers: headers, payload: payload) != nil,
        "the payload of a message that holds no structured event is not the data")

    let written = CloudEventsNATSBinding.headers(for: event)
    let again = CloudEventsNATSBinding.event(subject: subject, headers: written, payload: event.data)
    invariant(again == event, "read \(dump(event)), wrote \(Array(written)), read back \(dump(again))")
    invariant(CloudEventsNATSBinding.subjectAttribute(in: written) == subject, "ce-subject")

    // Through the wire block, when the client would send these headers and the verbatim ones
    // (content type, trace context) have no blanks at their ends for the reader to trim.
    let verbatim = [event.dataContentType, event.traceParent, event.traceState].compactMap { $0 }
    if (try? NATSValidation.validateHeaders(written)) != nil, verbatim.allSatisfy({ isTrimmed($0) }) {
        let block = [UInt8](unsafeUninitializedCapacity: written.encodedSize) { buffer, count in
            count = written.encode(into: UnsafeMutableRawBufferPointer(buffer))
        }
        let received = block.withUnsafeBytes { NATSHeaders(wireBlock: $0) }
        invariant(received != nil, "written headers do not parse: \(block)")
        let fromWire = CloudEventsNATSBinding.event(subject: subject, headers: received!, payload: event.data)
        invariant(fromWire == event, "through the wire: \(dump(event)) became \(dump(fromWire))")
    }

    var texts = headers.map(\.value)
    texts.append(String(decoding: bytes, as: UTF8.self))
    for text in texts { checkPercentEncoding(text) }
    return 0
}

func checkPercentEncoding(_ text: String) {
    let encoded = CloudEventsNATSBinding.percentEncoded(text)
    invariant(
        encoded.utf8.allSatisfy { (0x21...0x7E).contains($0) && $0 != UInt8(ascii: "\"") },
        "percentEncoded(\(Array(text.utf8))) = \(Array(encoded.utf8)) has a byte that must be encoded")
    let decoded = CloudEventsNATSBinding.percentDecoded(encoded)
    invariant(decoded == text, "percentDecoded(percentEncoded(\(Array(text.utf8)))) = \(Array(decoded.utf8))")
    if !text.utf8.contains(UInt8(ascii: "%")) && !text.utf8.contains(UInt8(ascii: "\"")) {
        invariant(CloudEventsNATSBinding.percentDecoded(text) == text, "decoding changed a value without % or quotes")
    }
}

/// The input as a message: a header block and the payload after it, or one header per line.
func message(_ bytes: [UInt8]) -> (NATSHeaders, [UInt8]) {
    let end: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A]
    if let range = bytes.firstRange(of: end) {
        let block = Array(bytes[..<range.upperBound])
        if let headers = block.withUnsafeBytes({ NATSHeaders(wireBlock: $0) }) {
            return (headers, Array(bytes[range.upperBound...]))
        }
    }
    var fields: [(String, String)] = []
    for line in bytes.split(separator: 0x0A) {
        guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else { continue }
        fields.append((String(decoding: line[..<colon], as: UTF8.self), String(decoding: line[(colon + 1)...], as: UTF8.self)))
    }
    return (NATSHeaders(fields), [])
}

func isTrimmed(_ text: String) -> Bool {
    let blanks: Set<UInt8> = [0x20, 0x09, 0x0D, 0x0A]
    return !(text.utf8.first.map(blanks.contains) ?? false) && !(text.utf8.last.map(blanks.contains) ?? false)
}

/// Every attribute of an event on one line, for a failure message.
func dump(_ event: Event) -> String {
    "id \(event.id) type \(event.type) source \(event.source) time \(event.time.map { "\($0.timeIntervalSince1970)" } ?? "nil") "
        + "contentType \(event.dataContentType ?? "nil") correlation \(event.correlationID ?? "nil") "
        + "causation \(event.causationID ?? "nil") traceparent \(event.traceParent ?? "nil") "
        + "tracestate \(event.traceState ?? "nil") extensions \(event.extensions.sorted { $0.key < $1.key })"
}

@main
enum Main {
    static func main() { runLibFuzzer(fuzzCloudEvents) }
}

import EventBus
import Foundation
import Testing

@testable import EventBusJetStream
@testable import NATS

/// Header values are percent-encoded as section 3.1.3.2 of the CloudEvents NATS binding says, on both
/// header forms a reader meets: headers built in Swift and the received wire block read in place.
@Suite("CloudEvents header value encoding")
struct CloudEventsEncodingTests {
    /// The headers as a consumer receives them: the encoded block, kept unparsed.
    private static func received(_ headers: NATSHeaders) -> NATSHeaders {
        let block = wire(headers)
        #expect(block.withUnsafeBytes { SimpleBlock.isSimple($0) })
        return NATSHeaders(simpleBlock: NATSPayload(block))
    }

    /// The header block's bytes as they go on the wire.
    private static func wire(_ headers: NATSHeaders) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: headers.encodedSize) { buffer, count in
            count = headers.encode(into: UnsafeMutableRawBufferPointer(buffer))
        }
    }

    private static func event(from headers: NATSHeaders, wireForm: Bool) -> Event {
        CloudEventsNATSBinding.event(subject: "orders", headers: wireForm ? received(headers) : headers, payload: [])
    }

    @Test func encodesExactlyWhatTheBindingLists() {
        // The bus's own source: space and a non-ASCII letter (two UTF-8 bytes).
        #expect(CloudEventsNATSBinding.percentEncoded("/shop eu/zürich") == "/shop%20eu/z%C3%BCrich")
        // The binding's own example.
        #expect(CloudEventsNATSBinding.percentEncoded("Euro \u{20AC} \u{1F600}") == "Euro%20%E2%82%AC%20%F0%9F%98%80")
        #expect(CloudEventsNATSBinding.percentEncoded("100% \"done\"") == "100%25%20%22done%22")
        #expect(CloudEventsNATSBinding.percentEncoded("tab\there\u{7F}\u{1}") == "tab%09here%7F%01")
        #expect(CloudEventsNATSBinding.percentEncoded("\u{80}\u{9F}") == "%C2%80%C2%9F")
        // Printable ASCII other than `"` and `%` stays: URI reserved characters are not the binding's concern.
        let printable = "/a-b_c.d~e:f;g=h?i#j&k+l,m!n*o'p(q)r[s]t@u$v<w>x{y}z|\\^`"
        #expect(CloudEventsNATSBinding.percentEncoded(printable) == printable)
        #expect(CloudEventsNATSBinding.percentEncoded("") == "")
        // Long values take the eight-bytes-at-a-time scan: a byte to encode at every position is found.
        for position in 0..<20 {
            var bytes = Array(repeating: UInt8(ascii: "a"), count: 20)
            bytes[position] = UInt8(ascii: " ")
            let value = String(decoding: bytes, as: UTF8.self)
            #expect(CloudEventsNATSBinding.percentEncoded(value).utf8.count == 22, "space at \(position)")
        }
    }

    @Test(arguments: [false, true])
    func writesTheBusSourceEncodedOnTheWire(wireForm: Bool) throws {
        let event = Event(id: "e-1", subject: "orders.created", type: "order.created", source: "/shop eu/zürich")
        let headers = CloudEventsNATSBinding.headers(for: event)
        #expect(headers["ce-source"] == "/shop%20eu/z%C3%BCrich")
        let block = String(decoding: Self.wire(headers), as: UTF8.self)
        #expect(block.contains("\r\nce-source: /shop%20eu/z%C3%BCrich\r\n"), "\(block)")
        #expect(Self.event(from: headers, wireForm: wireForm).source == "/shop eu/zürich")
    }

    @Test(arguments: [false, true])
    func decodesAnotherClientsEncodedValues(wireForm: Bool) throws {
        var headers = NATSHeaders()
        headers.add("/interop/nats-py%20%C3%A4", for: "ce-source")
        headers.add("com.example.%c3%a4", for: "ce-type")  // lower-case hex must be accepted
        headers.add("%41%42C", for: "ce-id")  // needlessly encoded must be accepted
        headers.add("caf%C3%A9%20%E2%82%AC%25", for: "ce-tenant")
        headers.add("\"quoted \\\"value\\\" %C3%A4\"", for: "ce-quoted")  // an older sender's quoted string
        headers.add("c%201", for: "CE-CORRELATIONID")  // matched ignoring case, decoded too
        headers.add("2026-11-23T17%3A35%3A21Z", for: "ce-time")
        let event = Self.event(from: headers, wireForm: wireForm)
        #expect(event.source == "/interop/nats-py ä")
        #expect(event.type == "com.example.ä")
        #expect(event.id == "ABC")
        #expect(event.extensions["tenant"] == "café €%")
        #expect(event.extensions["quoted"] == "quoted \"value\" ä")
        #expect(event.correlationID == "c 1")
        #expect(event.time == Date(timeIntervalSince1970: 1_795_455_321))
    }

    /// A value that does not decode is kept exactly as received, never crashes, never half-decoded.
    @Test(arguments: [false, true])
    func keepsMalformedValuesRaw(wireForm: Bool) {
        let malformed = [
            "bad%zz", "truncated%4", "ends%", "100% done", "half%C3", "overlong%C0%A0", "notutf8%FF", "%20ok%zz",
            "\"unterminated", "\"trailing backslash\\",
        ]
        var headers = NATSHeaders()
        for (index, value) in malformed.enumerated() { headers.add(value, for: "ce-x\(index)") }
        headers.add("%zz", for: "ce-source")
        let event = Self.event(from: headers, wireForm: wireForm)
        for (index, value) in malformed.enumerated() {
            #expect(event.extensions["x\(index)"] == value)
        }
        #expect(event.source == "%zz")
        #expect(CloudEventsNATSBinding.percentDecoded("truncated%4") == "truncated%4")
        #expect(CloudEventsNATSBinding.percentDecoded("%E2%82%AC") == "€")
    }

    /// Every `ce-*` value crosses both header forms unchanged, however unusual; the headers with formats
    /// of their own (content type, trace context, `Nats-Msg-Id`) travel verbatim.
    @Test(arguments: [false, true])
    func roundTripsNonASCIISpacesPercentAndReservedCharacters(wireForm: Bool) throws {
        let original = Event(
            id: "id mit ü %41", subject: "orders.zürich.%41\"x", type: "com.example.größe \"quoted\"",
            source: "/shop eu/zürich?q=a b&r=100%#frag", time: Date(timeIntervalSince1970: 1_700_000_000.25),
            dataContentType: "text/plain; charset=\"utf-8\"", data: Array("x".utf8),
            extensions: [
                "tenant": "café €%20 😀", "path": "/a/b c/d%2Fe", "deadletter-error": "boom on attempt 3: unknown customer 42",
                "tabbed": "a\tb\u{7F}c",
            ],
            correlationID: "corr 1 ß", causationID: "\"cause\"",
            traceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", traceState: "vendor=a b")
        let sent = CloudEventsNATSBinding.headers(for: original)
        for (name, value) in sent where name.hasPrefix("ce-") {
            #expect(value.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "\"") }, "\(name): \(value)")
        }
        #expect(sent["ce-deadletter-error"] == "boom%20on%20attempt%203:%20unknown%20customer%2042")
        #expect(sent["ce-subject"] == "orders.z%C3%BCrich.%2541%22x")
        #expect(sent["content-type"] == "text/plain; charset=\"utf-8\"")
        #expect(sent["tracestate"] == "vendor=a b")
        #expect(sent["Nats-Msg-Id"] == "id mit ü %41", "JetStream compares the message id byte for byte")
        #expect(CloudEventsNATSBinding.subjectAttribute(in: wireForm ? Self.received(sent) : sent) == original.subject)

        let decoded = CloudEventsNATSBinding.event(
            subject: original.subject, headers: wireForm ? Self.received(sent) : sent, payload: original.data)
        #expect(decoded == original)
    }

    /// `content-type` and trace context are never decoded: a `%` in them is the sender's text.
    @Test(arguments: [false, true])
    func readsContentTypeAndTraceContextVerbatim(wireForm: Bool) {
        var headers = NATSHeaders()
        headers.add("text/plain; note=%20", for: "content-type")
        headers.add("vendor=%41", for: "tracestate")
        headers.add("msg%20id", for: "Nats-Msg-Id")
        let event = Self.event(from: headers, wireForm: wireForm)
        #expect(event.dataContentType == "text/plain; note=%20")
        #expect(event.traceState == "vendor=%41")
        #expect(event.id == "msg%20id", "Nats-Msg-Id stands in for ce-id verbatim")
    }
}

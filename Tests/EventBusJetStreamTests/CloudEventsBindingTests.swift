import EventBus
import Foundation
import Testing

@testable import EventBusJetStream
@testable import NATS

@Suite("CloudEvents NATS binding")
struct CloudEventsBindingTests {
    /// The hand-written RFC 3339 formatter and parser agree with Foundation's, to the nanosecond.
    /// Found by fuzzing: `ce-` followed by a combining mark made one character of `-` and the
    /// mark, so dropping the prefix as characters lost the name's first scalar.
    @Test func anExtensionNameStartingWithACombiningMarkKeepsIt() {
        let name = "\u{061A}x"
        let event = CloudEventsNATSBinding.event(
            subject: "orders.created", headers: NATSHeaders([("ce-" + name, "v")]), payload: [])
        #expect(event.extensions == [name: "v"])
        let again = CloudEventsNATSBinding.event(
            subject: "orders.created", headers: CloudEventsNATSBinding.headers(for: event), payload: [])
        #expect(again.extensions == [name: "v"])
    }

    @Test func timeFormattingMatchesFoundation() throws {
        var generator = SystemRandomNumberGenerator()
        var dates: [Date] = [
            Date(timeIntervalSince1970: 0), Date(timeIntervalSince1970: -1.5), Date(timeIntervalSince1970: 951_782_400),  // 2000-02-29
            Date(timeIntervalSince1970: 1_700_000_000.123456789), Date(timeIntervalSince1970: 253_402_300_799.999),  // 9999-12-31
            Date(timeIntervalSince1970: -62_135_596_800),  // 0001-01-01
            Date(),
        ]
        for _ in 0..<2_000 {
            dates.append(Date(timeIntervalSince1970: Double.random(in: -5e10...2.5e11, using: &generator)))
        }
        for date in dates {
            let fast = CloudEventsNATSBinding.formatTime(date)
            #expect(fast == CloudEventsNATSBinding.formatTimeWithFoundation(date), "\(date.timeIntervalSince1970)")
            #expect(CloudEventsNATSBinding.parseTime(fast) == CloudEventsNATSBinding.parseTimeWithFoundation(fast), "\(fast)")
        }
        for text in [
            "2026-11-23T17:35:21Z", "2026-11-23T17:35:21.5Z", "2026-11-23T17:35:21.123456789Z", "2026-11-23T19:35:21.25+02:00",
            "2026-11-23T07:05:21-10:30", "2024-02-29T00:00:00Z", "1970-01-01T00:00:00.000000001Z",
        ] {
            let fast = try #require(CloudEventsNATSBinding.parseTime(text), "\(text)")
            #expect(fast == CloudEventsNATSBinding.parseTimeWithFoundation(text), "\(text)")
        }
        // Outside the hand-written form: left to Foundation (and rejected where it rejects).
        #expect(CloudEventsNATSBinding.parseTime("2023-02-29T00:00:00Z") == CloudEventsNATSBinding.parseTimeWithFoundation("2023-02-29T00:00:00Z"))
        #expect(CloudEventsNATSBinding.parseTime("not a time") == nil)
        // Found by fuzzing: this many fractional digits overflowed (and trapped) in the fast path.
        let long = "2026-11-23T17:35:21." + String(repeating: "3", count: 100) + "Z"
        #expect(CloudEventsNATSBinding.parseTime(long) == CloudEventsNATSBinding.parseTimeWithFoundation(long))
        #expect(CloudEventsNATSBinding.parseTime(long) != nil)
        #expect(CloudEventsNATSBinding.parseTime("2026-11-23T17:35:21.1234567891Z") == CloudEventsNATSBinding.parseTimeWithFoundation("2026-11-23T17:35:21.1234567891Z"))
    }

    /// The headers as a consumer receives them: the encoded block, kept unparsed.
    private func received(_ headers: NATSHeaders) -> NATSHeaders {
        let block = [UInt8](unsafeUninitializedCapacity: headers.encodedSize) { buffer, count in
            count = headers.encode(into: UnsafeMutableRawBufferPointer(buffer))
        }
        #expect(block.withUnsafeBytes { SimpleBlock.isSimple($0) })
        return NATSHeaders(simpleBlock: NATSPayload(block))
    }

    @Test(arguments: [false, true])
    func readsAttributesByExactNameFirstThenIgnoringCase(wireForm: Bool) {
        var headers = NATSHeaders()
        headers.add("Other-Type", for: "CE-TYPE")
        headers.add("order.created", for: "ce-type")
        headers.add("/billing", for: "Ce-Source")
        headers.add("msg-1", for: "Nats-Msg-Id")
        headers.add("1.0", for: "ce-specversion")
        headers.add("eu", for: "CE-Region")
        headers.add("ignored", for: "ce-dataschema")
        headers.add("application/json", for: "Content-Type")
        headers.add("2026-11-23T17:35:21.5Z", for: "CE-TIME")
        headers.add("second", for: "ce-type")
        let event = CloudEventsNATSBinding.event(
            subject: "orders", headers: wireForm ? received(headers) : headers, payload: [1, 2])
        #expect(event.type == "order.created", "the exact name wins over an earlier case variant")
        #expect(event.source == "/billing")
        #expect(event.id == "msg-1", "Nats-Msg-Id stands in for a missing ce-id")
        #expect(event.extensions == ["region": "eu"])
        #expect(event.dataContentType == "application/json")
        #expect(event.time == nil, "ce-time is read by its exact name only")
        #expect(event.data == [1, 2])

        let original = Event(
            subject: "orders.created", type: "order.created", source: "/billing",
            time: Date(timeIntervalSince1970: 1_700_000_000.25), dataContentType: "text/plain",
            data: Array("x".utf8), extensions: ["tenant": "acme"], correlationID: "c-1", causationID: "c-0",
            traceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", traceState: "a=b")
        let sent = CloudEventsNATSBinding.headers(for: original)
        let decoded = CloudEventsNATSBinding.event(
            subject: "orders.created", headers: wireForm ? received(sent) : sent, payload: original.data)
        #expect(decoded == original)
    }
}

import EventBus
import Foundation
import Testing

@testable import EventBusJetStream
@testable import NATS

/// What other languages' CloudEvents SDKs send: events in the binding's structured content mode (the
/// JSON event format in the payload, marked by `content-type` or by no headers at all), and the data's
/// media type in `ce-datacontenttype`.
@Suite("CloudEvents NATS binding: structured mode and ce-datacontenttype")
struct CloudEventsStructuredModeTests {
    /// A structured event as an SDK writes it: spacing of its own, extensions of every type, and JSON
    /// data whose text must arrive as written (a quote and a brace inside a nested string).
    static let structuredEvent = #"""
        {
          "specversion" : "1.0",
          "id" : "A234-1234-1234",
          "source" : "/interop/go sdk ä",
          "type" : "com.example.order.created",
          "subject" : "not.the.routing.subject",
          "time" : "2018-04-05T17:31:00.5Z",
          "datacontenttype" : "application/json",
          "dataschema" : "https://example.com/order.json",
          "tenant" : "acme", "priority" : 3, "urgent" : true, "nested" : {"x" : 1}, "nothing" : null,
          "" : "no name", "not an attribute" : "x", "Region" : "upper case", "TIME" : "2020-01-01T00:00:00Z",
          "region-code" : "eu-1",
          "correlationid" : "corr-1",
          "traceparent" : "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
          "data" : { "order" : "o-1",  "items" : [1, 2, {"sku" : "a\"}b"}] }
        }
        """#
    static let structuredData = #"{ "order" : "o-1",  "items" : [1, 2, {"sku" : "a\"}b"}] }"#

    static func read(_ payload: String, headers: NATSHeaders = NATSHeaders()) -> Event {
        CloudEventsNATSBinding.event(subject: "orders.created", headers: headers, payload: Array(payload.utf8))
    }

    static func expectTheStructuredEvent(_ event: Event, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(event.id == "A234-1234-1234", sourceLocation: sourceLocation)
        #expect(event.source == "/interop/go sdk ä", sourceLocation: sourceLocation)
        #expect(event.type == "com.example.order.created", sourceLocation: sourceLocation)
        #expect(event.subject == "orders.created", "the bus subject, as in binary mode", sourceLocation: sourceLocation)
        #expect(event.time == Date(timeIntervalSince1970: 1_522_949_460.5), sourceLocation: sourceLocation)
        #expect(event.dataContentType == "application/json", sourceLocation: sourceLocation)
        #expect(event.data == Array(structuredData.utf8), "the JSON value as written", sourceLocation: sourceLocation)
        #expect(
            event.extensions == ["tenant": "acme", "priority": "3", "urgent": "true", "region-code": "eu-1"],
            "scalar members with attribute names", sourceLocation: sourceLocation)
        #expect(event.correlationID == "corr-1", sourceLocation: sourceLocation)
        #expect(event.traceParent == "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", sourceLocation: sourceLocation)
    }

    /// The binding's mark: `content-type` with a CloudEvents media type (any case, with parameters).
    @Test func aCloudEventsContentTypeMarksStructuredMode() {
        var headers = NATSHeaders()
        headers.add("Application/CloudEvents+JSON; charset=UTF-8", for: "Content-Type")
        Self.expectTheStructuredEvent(Self.read(Self.structuredEvent, headers: headers))
    }

    /// The CloudEvents Go SDK (structured encoding) and the Rust SDK send the JSON object with no
    /// headers at all.
    @Test func aHeaderlessCloudEventIsReadAsStructured() {
        Self.expectTheStructuredEvent(Self.read(Self.structuredEvent))
        // JetStream's message id stands in for a missing `id`, as in binary mode.
        var headers = NATSHeaders()
        headers.add("from-nats-msg-id", for: "Nats-Msg-Id")
        let withoutID = Self.read(#"{"specversion":"1.0","type":"t","source":"/s"}"#, headers: headers)
        #expect(withoutID.id == "from-nats-msg-id")
        #expect(withoutID.data.isEmpty)
        #expect(withoutID.dataContentType == nil)
    }

    /// `data_base64` carries binary data; a string `data` with a non-JSON media type is that text, and
    /// with a JSON one (or none: the format's default) the JSON string, quotes included.
    @Test func dataOfEveryForm() {
        let binary = Self.read(#"{"specversion":"1.0","id":"b","source":"/s","type":"t","data_base64":"AAH/gA=="}"#)
        #expect(binary.data == [0x00, 0x01, 0xFF, 0x80])
        let text = Self.read(#"{"specversion":"1.0","id":"t","source":"/s","type":"t","datacontenttype":"text/plain","data":"zürich \"x\"\n"}"#)
        #expect(text.data == Array("zürich \"x\"\n".utf8))
        let jsonString = Self.read(#"{"specversion":"1.0","id":"j","source":"/s","type":"t","data":"hello"}"#)
        #expect(jsonString.data == Array(#""hello""#.utf8))
        let vendorJSON = Self.read(#"{"specversion":"1.0","id":"v","source":"/s","type":"t","datacontenttype":"application/vnd.x+json","data":"hi"}"#)
        #expect(vendorJSON.data == Array(#""hi""#.utf8))
        let number = Self.read(#"{"data":12.50,"specversion":"1.0","id":"n","source":"/s","type":"t"}"#)
        #expect(number.data == Array("12.50".utf8), "a number keeps its text")
        let null = Self.read(#"{"specversion":"1.0","id":"z","source":"/s","type":"t","data":null}"#)
        #expect(null.data.isEmpty)
        // An escaped member name is still the data.
        let escaped = Self.read(#"{"specversion":"1.0","id":"e","source":"/s","type":"t","d\u0061ta":[1]}"#)
        #expect(escaped.data == Array("[1]".utf8))
    }

    /// Anything that is not a structured event is read as binary mode: the payload stays the data.
    @Test func otherPayloadsStayTheData() {
        let plainJSON = #"{"order":"o-1","specversion_note":"no"}"#
        #expect(Self.read(plainJSON).data == Array(plainJSON.utf8), "a JSON object without specversion")
        #expect(Self.read(plainJSON).type == "")
        #expect(Self.read("just text").data == Array("just text".utf8))

        // A binary-mode event whose data happens to be a CloudEvent stays binary: its headers say so,
        // also with the CloudEvents media type in `content-type`, as earlier versions wrote it.
        var binaryHeaders = NATSHeaders()
        binaryHeaders.add("1.0", for: "ce-specversion")
        binaryHeaders.add("outer", for: "ce-id")
        let nested = Self.read(Self.structuredEvent, headers: binaryHeaders)
        #expect(nested.id == "outer")
        #expect(nested.data == Array(Self.structuredEvent.utf8))
        binaryHeaders.add("application/cloudevents+json", for: "content-type")
        let stored = Self.read(Self.structuredEvent, headers: binaryHeaders)
        #expect(stored.id == "outer")
        #expect(stored.dataContentType == "application/cloudevents+json")
        #expect(stored.data == Array(Self.structuredEvent.utf8))

        // Marked structured but not JSON, or base64 that is not: nothing is dropped.
        var marked = NATSHeaders()
        marked.add("application/cloudevents+json", for: "content-type")
        let broken = #"{"specversion":"1.0","id":"x""#
        #expect(Self.read(broken, headers: marked).data == Array(broken.utf8))
        #expect(Self.read(broken, headers: marked).dataContentType == "application/cloudevents+json")
        let badBase64 = #"{"specversion":"1.0","id":"b","source":"/s","type":"t","data_base64":"*not*"}"#
        #expect(Self.read(badBase64, headers: marked).data == Array(badBase64.utf8))

        // The batch format is not structured mode (the binding has no batch mode).
        var batch = NATSHeaders()
        batch.add("application/cloudevents-batch+json", for: "content-type")
        let batchPayload = "[" + Self.structuredEvent + "]"
        #expect(Self.read(batchPayload, headers: batch).data == Array(batchPayload.utf8))
    }

    @Test func structuredMediaTypes() {
        for mediaType in ["application/cloudevents+json", "application/cloudevents", "APPLICATION/CLOUDEVENTS+JSON", " application/cloudevents+json; charset=utf-8", "application/cloudevents;charset=utf-8"] {
            #expect(CloudEventsNATSBinding.isStructuredMediaType(mediaType), "\(mediaType)")
        }
        for mediaType in ["application/cloudevents-batch+json", "application/json", "application/cloudeventsx", "text/plain", ""] {
            #expect(!CloudEventsNATSBinding.isStructuredMediaType(mediaType), "\(mediaType)")
        }
    }

    /// The bus writes the data's media type in `ce-datacontenttype` (percent-encoded, as the binding maps
    /// every attribute) and verbatim in `content-type`, which earlier versions of this library and plain
    /// NATS tools read; never a CloudEvents media type in `content-type`, which would mark the message
    /// structured. On receipt `ce-datacontenttype` wins.
    @Test(arguments: [false, true])
    func dataContentTypeTravelsInTheBindingsHeader(wireForm: Bool) {
        // A time that survives the header's nanoseconds exactly, so that the events compare equal.
        let time = Date(timeIntervalSince1970: 1_700_000_000.25)
        let event = Event(
            subject: "orders.created", type: "t", source: "/s", time: time, dataContentType: #"text/plain; charset="utf-8""#, data: [1])
        let headers = CloudEventsNATSBinding.headers(for: event)
        #expect(headers["ce-datacontenttype"] == "text/plain;%20charset=%22utf-8%22")
        #expect(headers["content-type"] == #"text/plain; charset="utf-8""#)
        #expect(CloudEventsNATSBinding.event(subject: event.subject, headers: Self.form(headers, wire: wireForm), payload: [1]) == event)

        let nested = Event(
            subject: "orders.created", type: "t", source: "/s", time: time, dataContentType: "application/cloudevents+json", data: [1])
        let nestedHeaders = CloudEventsNATSBinding.headers(for: nested)
        #expect(nestedHeaders["content-type"] == nil)
        #expect(nestedHeaders["ce-datacontenttype"] == "application/cloudevents+json")
        #expect(CloudEventsNATSBinding.event(subject: nested.subject, headers: Self.form(nestedHeaders, wire: wireForm), payload: [1]) == nested)

        // A sender that follows the binding writes only `ce-datacontenttype` (any case).
        var fromSDK = NATSHeaders()
        fromSDK.add("1.0", for: "ce-specversion")
        fromSDK.add("application/json;%20charset=utf-8", for: "Ce-DataContentType")
        #expect(Self.read("{}", headers: Self.form(fromSDK, wire: wireForm)).dataContentType == "application/json; charset=utf-8")
        fromSDK.add("text/plain", for: "content-type")
        #expect(Self.read("{}", headers: Self.form(fromSDK, wire: wireForm)).dataContentType == "application/json; charset=utf-8")
    }

    /// The headers as built, or as a consumer receives them (the encoded block, read in place).
    static func form(_ headers: NATSHeaders, wire: Bool) -> NATSHeaders {
        guard wire else { return headers }
        let block = [UInt8](unsafeUninitializedCapacity: headers.encodedSize) { buffer, count in
            count = headers.encode(into: UnsafeMutableRawBufferPointer(buffer))
        }
        #expect(block.withUnsafeBytes { SimpleBlock.isSimple($0) })
        return NATSHeaders(simpleBlock: NATSPayload(block))
    }
}

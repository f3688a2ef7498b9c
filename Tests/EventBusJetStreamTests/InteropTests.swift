import EventBus
import EventBusJetStream
import Foundation
import NATS
import NATSTestSupport
import Testing

/// Events cross between the bus and a plain NATS client in another language (nats-py).
@Suite("Interoperability with nats-py")
struct InteropTests {
    static func python() throws -> String {
        let path = NATSServerProcess.projectRoot() + "/.venv/bin/python"
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw NATSServerProcess.Failure(description: "no .venv/bin/python: run deploy/install-deps.sh (it installs nats-py)")
        }
        return path
    }

    static func runScript(_ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try python())
        process.arguments = [NATSServerProcess.projectRoot() + "/Tests/Interop/nats_py_interop.py"] + arguments
        let output = Pipe()
        let errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        process.waitUntilExit()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        guard process.terminationStatus == 0 else {
            let problem = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            throw NATSServerProcess.Failure(description: "nats-py script failed: \(problem)")
        }
        return text
    }

    /// Runs `body` with a started bus on a nats-server of its own (its URL given too); closes the bus and
    /// stops the server after.
    static func withBus(_ body: (_ url: String, _ bus: JetStreamEventBus) async throws -> Void) async throws {
        let server = try await NATSServerProcess.started()
        defer { server.kill() }
        let bus = JetStreamEventBus(configuration: .init(connection: try NATSConnectionConfiguration(servers: [server.url])))
        try await bus.start()
        do {
            try await body(server.url, bus)
        } catch {
            await bus.close()
            throw error
        }
        await bus.close()
    }

    /// What the script prints for a message it read: the headers as on the wire, and with the `ce-*`
    /// values decoded by Python's own percent-decoding.
    struct Received: Decodable {
        var subject: String
        var headers: [String: String]
        var decoded: [String: String]
        var data: String
    }

    /// `ce-*` values on the wire hold printable ASCII only, without space or `"` (binding section 3.1.3.2).
    static func expectEncodedOnTheWire(_ headers: [String: String], sourceLocation: SourceLocation = #_sourceLocation) {
        for (name, value) in headers where name.hasPrefix("ce-") {
            #expect(
                value.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "\"") }, "\(name): \(value)",
                sourceLocation: sourceLocation)
        }
    }

    /// Attributes cross in both directions with non-ASCII and reserved characters (space, `"`, `%`, `/`)
    /// in the source, the subject and an extension, percent-encoded on the wire.
    @Test func eventsCrossBothWays() async throws {
        try await Self.withBus { url, bus in

            // nats-py → bus: a message with CloudEvents headers becomes an Event with every attribute, its
            // percent-encoded values decoded. NATS accepts any UTF-8 in a subject token (the bus's subject rules
            // and nats-server's both allow it), so the routing subject carries the non-ASCII too.
            let subscription = try await bus.subscribe("interop.from-python.>", options: .init(start: .all))
            _ = try await offCooperativePool { try Self.runScript(["publish", url, "events.interop.from-python.zürich"]) }
            let received = try await withDeadline(.seconds(30), "the event nats-py published") { () -> Delivery? in
                for try await delivery in subscription {
                    try await delivery.ack()
                    return delivery
                }
                return nil
            }
            let event = try #require(received?.event)
            #expect(event.id == "py-event-1")
            #expect(event.source == "/interop/nats-py ä", "sent as /interop/nats-py%20%C3%A4")
            #expect(event.type == "com.example.order.created")
            #expect(event.subject == "interop.from-python.zürich", "the routing subject, not ce-subject")
            #expect(event.dataContentType == "application/json")
            #expect(event.data == Array(#"{"order":"py-1"}"#.utf8))
            #expect(event.extensions == ["tenant": "acme", "city": #"Zürich "Altstadt" 100% €/😀"#])
            #expect(event.correlationID == "corr-py")
            #expect(event.traceParent == "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
            let time = try #require(event.time)
            #expect(abs(time.timeIntervalSince1970 - 1_795_428_930.123456789) < 0.000_01, "\(time.timeIntervalSince1970)")

            // bus → nats-py: the published event carries the same attributes as headers, encoded on the wire.
            let sent = Event(
                id: "swift-event-1", subject: #"interop.from-swift.zürich.100%."q""#, type: "com.example.payment.settled",
                source: "/shop eu/zürich", time: Date(timeIntervalSince1970: 1_763_900_000.5), dataContentType: "text/plain",
                data: Array("paid".utf8), extensions: ["region": "eu-1", "city": #"Zürich "Altstadt" 100% €/😀"#],
                correlationID: "corr-swift", causationID: "cause-swift",
                traceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", traceState: "vendor=1")
            try await bus.publish(sent)
            let natsSubject = "events." + sent.subject
            let json = try await offCooperativePool { try Self.runScript(["read", url, natsSubject]) }
            let message = try JSONDecoder().decode(Received.self, from: Data(json.utf8))
            #expect(message.subject == natsSubject)
            #expect(message.data == "paid")
            let headers = message.headers
            Self.expectEncodedOnTheWire(headers)
            #expect(headers["ce-id"] == "swift-event-1")
            #expect(headers["ce-source"] == "/shop%20eu/z%C3%BCrich")
            #expect(message.decoded["ce-source"] == "/shop eu/zürich")
            #expect(headers["ce-type"] == "com.example.payment.settled")
            #expect(headers["ce-specversion"] == "1.0")
            #expect(headers["ce-subject"] == "interop.from-swift.z%C3%BCrich.100%25.%22q%22")
            #expect(message.decoded["ce-subject"] == sent.subject)
            #expect(headers["ce-time"] == "2025-11-23T12:13:20.500000000Z")
            #expect(headers["ce-datacontenttype"] == "text/plain")
            #expect(headers["content-type"] == "text/plain")
            #expect(headers["ce-region"] == "eu-1")
            #expect(headers["ce-city"] == "Z%C3%BCrich%20%22Altstadt%22%20100%25%20%E2%82%AC/%F0%9F%98%80")
            #expect(message.decoded["ce-city"] == sent.extensions["city"])
            #expect(headers["ce-correlationid"] == "corr-swift")
            #expect(headers["ce-causationid"] == "cause-swift")
            #expect(headers["traceparent"] == "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            #expect(headers["tracestate"] == "vendor=1")
            #expect(headers["Nats-Msg-Id"] == "swift-event-1")
        }
    }

    /// Events in the binding's structured content mode, as CloudEvents SDKs in other languages send them
    /// (the JSON event format as the payload, with no headers or marked by `content-type`), arrive with
    /// their attributes, their JSON data as written and their base64 data decoded.
    @Test func structuredEventsAreRead() async throws {
        try await Self.withBus { url, bus in
            let subscription = try await bus.subscribe("interop.structured", options: .init(start: .all))
            _ = try await offCooperativePool { try Self.runScript(["publish-structured", url, "events.interop.structured"]) }
            let events = try await withDeadline(.seconds(30), "the two structured events nats-py published") { () -> [Event] in
                var events: [Event] = []
                for try await delivery in subscription {
                    try await delivery.ack()
                    events.append(delivery.event)
                    if events.count == 2 { break }
                }
                return events
            }
            try #require(events.count == 2)
            let unmarked = events[0]
            #expect(unmarked.id == "py-structured-1")
            #expect(unmarked.source == "/interop/nats-py ä")
            #expect(unmarked.type == "com.example.order.created")
            #expect(unmarked.subject == "interop.structured")
            #expect(unmarked.dataContentType == "application/json")
            #expect(unmarked.data == Array(#"{"order": "py-2",  "items": [1, 2]}"#.utf8))
            #expect(unmarked.extensions == ["tenant": "acme", "attempt": "2"])
            #expect(unmarked.time == Date(timeIntervalSince1970: 1_795_428_930.5))
            let marked = events[1]
            #expect(marked.id == "py-structured-2")
            #expect(marked.type == "com.example.blob")
            #expect(marked.dataContentType == "application/octet-stream")
            #expect(marked.data == [0x00, 0x01, 0xFF, 0x80])
            #expect(marked.extensions.isEmpty)
        }
    }

    /// A request travels to a nats-py responder encoded, and its reply's `ce-subject` (the reply's only
    /// subject: it arrives on an inbox), source and extension are decoded.
    @Test func requestAndReplyCrossEncoded() async throws {
        try await Self.withBus { url, bus in
            async let requestJSON = offCooperativePool { try Self.runScript(["respond", url, "eventbus-requests.interop.rpc.>"]) }

            let request = Event(
                subject: "interop.rpc.zürich", type: "com.example.quote.requested", source: "/shop eu/zürich",
                extensions: ["basket": #"2× "Käse" 100%"#])
            var reply: Event?
            // The responder subscribes once its process is up: until then the bus hears `noResponders`.
            for _ in 0..<300 where reply == nil {
                do {
                    reply = try await bus.request(request, timeout: .seconds(2))
                } catch let error as EventBusError where error.code == .noResponders {
                    try await Task.sleep(for: .milliseconds(100))
                }
            }
            let answer = try #require(reply)
            #expect(answer.subject == #"interop.rpc.zürich.réponse "ok" 100%"#)
            #expect(answer.source == "/interop/nats-py ä")
            #expect(answer.type == "com.example.quote.answered")
            #expect(answer.extensions == ["note": #"prix: 12 € "TTC" 100%"#])
            #expect(answer.data == Array("answer".utf8))

            let message = try JSONDecoder().decode(Received.self, from: Data(try await requestJSON.utf8))
            Self.expectEncodedOnTheWire(message.headers)
            #expect(message.headers["ce-subject"] == "interop.rpc.z%C3%BCrich")
            #expect(message.decoded["ce-subject"] == request.subject)
            #expect(message.decoded["ce-source"] == request.source)
            #expect(message.decoded["ce-basket"] == request.extensions["basket"])
        }
    }

    /// A nats-py requester reaches a bus subscriber: the request arrives as an event with its attributes
    /// decoded, and the subscriber's `respond` reaches nats-py as a CloudEvent, encoded on the wire.
    @Test func natsPyRequestsAndTheBusResponds() async throws {
        try await Self.withBus { url, bus in
            let subscription = try await bus.subscribe("interop.stock.*")
            async let replyJSON = offCooperativePool { try Self.runScript(["request", url, "eventbus-requests.interop.stock.zürich"]) }
            let request = try await withDeadline(.seconds(30), "the request nats-py sent") { () -> Event? in
                for try await delivery in subscription where delivery.isRequest {
                    try await delivery.respond(
                        Event(
                            subject: "interop.stock.answer", type: "com.example.stock.answered", source: "/warehouse eu/zürich",
                            dataContentType: "text/plain", data: Array("12 in stock".utf8), extensions: ["note": #"prix "TTC" 100%"#]))
                    return delivery.event
                }
                return nil
            }
            let event = try #require(request)
            #expect(event.id == "py-request-1")
            #expect(event.subject == "interop.stock.zürich")
            #expect(event.source == "/interop/nats-py ä")
            #expect(event.type == "com.example.stock.requested")
            #expect(event.dataContentType == "text/plain")
            #expect(event.extensions == ["sku": #"Käse "alt" 100%"#])
            #expect(event.data == Array("sku-1".utf8))

            let reply = try JSONDecoder().decode(Received.self, from: Data(try await replyJSON.utf8))
            Self.expectEncodedOnTheWire(reply.headers)
            #expect(reply.data == "12 in stock")
            #expect(reply.headers["ce-source"] == "/warehouse%20eu/z%C3%BCrich")
            #expect(reply.decoded["ce-source"] == "/warehouse eu/zürich")
            #expect(reply.headers["ce-type"] == "com.example.stock.answered")
            #expect(reply.headers["ce-datacontenttype"] == "text/plain")
            #expect(reply.decoded["ce-note"] == #"prix "TTC" 100%"#)
        }
    }

    /// nats-py reads a dead letter the bus produced: the last error, with spaces, quotes and non-ASCII, is
    /// percent-encoded in `ce-deadletter-error` and decodes to the original text.
    @Test func deadLetterIsReadableByNatsPy() async throws {
        try await Self.withBus { url, bus in
            let reason = #"unknown customer 42 in "Zürich", 100% sure"#
            let subscription = try await bus.subscribe("interop.dead", options: .init(group: "interop-dl", start: .all))
            let published = try await bus.publish(
                Event(subject: "interop.dead", type: "com.example.order.created", source: "/shop eu/zürich", data: Array("x".utf8)))
            try await withDeadline(.seconds(30), "the event to terminate") {
                for try await delivery in subscription {
                    try await delivery.term(reason: reason)
                    break
                }
            }
            let natsSubject = "events." + DeadLetter.defaultSubject(for: "interop.dead")
            let json = try await offCooperativePool { try Self.runScript(["read", url, natsSubject]) }
            let message = try JSONDecoder().decode(Received.self, from: Data(json.utf8))
            Self.expectEncodedOnTheWire(message.headers)
            let wireError = try #require(message.headers["ce-deadletter-error"])
            #expect(wireError == "unknown%20customer%2042%20in%20%22Z%C3%BCrich%22,%20100%25%20sure")
            #expect(message.decoded["ce-deadletter-error"] == reason)
            #expect(message.decoded["ce-deadletter-subject"] == "interop.dead")
            #expect(message.decoded["ce-deadletter-group"] == "interop-dl")
            #expect(message.decoded["ce-deadletter-stream-sequence"] == String(published.sequence))
            #expect(message.decoded["ce-source"] == "/shop eu/zürich")
            #expect(message.data == "x")
        }
    }
}

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

    @Test func eventsCrossBothWays() async throws {
        let server = try await NATSServerProcess.started()
        defer { server.stop() }
        let bus = JetStreamEventBus(configuration: .init(connection: try NATSConnectionConfiguration(servers: [server.url])))
        try await bus.start()

        // nats-py → bus: a message with CloudEvents headers becomes an Event with every attribute.
        let subscription = try await bus.subscribe("interop.from-python", options: .init(start: .all))
        _ = try await offCooperativePool { try Self.runScript(["publish", server.url, "events.interop.from-python"]) }
        var received: Delivery?
        for try await delivery in subscription {
            received = delivery
            try await delivery.ack()
            break
        }
        let event = try #require(received?.event)
        #expect(event.id == "py-event-1")
        #expect(event.source == "/python/orders")
        #expect(event.type == "com.example.order.created")
        #expect(event.subject == "interop.from-python")
        #expect(event.dataContentType == "application/json")
        #expect(event.data == Array(#"{"order":"py-1"}"#.utf8))
        #expect(event.extensions == ["tenant": "acme"])
        #expect(event.correlationID == "corr-py")
        #expect(event.traceParent == "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        let time = try #require(event.time)
        #expect(abs(time.timeIntervalSince1970 - 1_795_428_930.123456789) < 0.000_01, "\(time.timeIntervalSince1970)")

        // bus → nats-py: the published event carries the same attributes as headers.
        let sent = Event(
            id: "swift-event-1", subject: "interop.from-swift", type: "com.example.payment.settled", source: "/swift/billing",
            time: Date(timeIntervalSince1970: 1_763_900_000.5), dataContentType: "text/plain", data: Array("paid".utf8),
            extensions: ["region": "eu-1"], correlationID: "corr-swift", causationID: "cause-swift",
            traceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", traceState: "vendor=1")
        try await bus.publish(sent)
        let json = try await offCooperativePool { try Self.runScript(["read", server.url, "events.interop.from-swift"]) }
        struct Received: Decodable { var subject: String; var headers: [String: String]; var data: String }
        let message = try JSONDecoder().decode(Received.self, from: Data(json.utf8))
        #expect(message.subject == "events.interop.from-swift")
        #expect(message.data == "paid")
        let headers = message.headers
        #expect(headers["ce-id"] == "swift-event-1")
        #expect(headers["ce-source"] == "/swift/billing")
        #expect(headers["ce-type"] == "com.example.payment.settled")
        #expect(headers["ce-specversion"] == "1.0")
        #expect(headers["ce-subject"] == "interop.from-swift")
        #expect(headers["ce-time"] == "2025-11-23T12:13:20.500000000Z")
        #expect(headers["content-type"] == "text/plain")
        #expect(headers["ce-region"] == "eu-1")
        #expect(headers["ce-correlationid"] == "corr-swift")
        #expect(headers["ce-causationid"] == "cause-swift")
        #expect(headers["traceparent"] == "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        #expect(headers["tracestate"] == "vendor=1")
        #expect(headers["Nats-Msg-Id"] == "swift-event-1")
        await bus.close()
    }
}

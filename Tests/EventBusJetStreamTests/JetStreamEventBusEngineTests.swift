import EventBus
import Foundation
import EventBusJetStream
import Logging
import NATS
import NATSTestSupport
import Testing

/// The bus's publish engine and request path: cancellation, batches, one connection.
@Suite("JetStreamEventBus engine")
struct JetStreamEventBusEngineTests {
    static func bus(_ server: NATSServerProcess) throws -> JetStreamEventBus {
        var logger = Logger(label: "test.engine")
        logger.logLevel = .warning
        return JetStreamEventBus(configuration: .init(connection: try NATSConnectionConfiguration(servers: [server.url])), logger: logger)
    }

    /// Cancelling a request that a subscriber received but never answers ends it at once. (The
    /// bus's former multiplexer cancelled only the timeout and waited for a reply or the bus's
    /// close.)
    @Test func aCancelledRequestReturnsAtOnceWhenNobodyAnswers() async throws {
        let server = try await NATSServerProcess.started()
        defer { server.kill() }
        let bus = try Self.bus(server)
        let silent = try await bus.subscribe("rpc.silent", options: .init())
        let received = Collected<Bool>()
        let holder = Task {
            // Takes the request and never responds.
            for try await delivery in silent where delivery.isRequest { received.append(true) }
        }
        let clock = ContinuousClock()
        let request = Task {
            try await bus.request(Event(subject: "rpc.silent", type: "t", source: "/test"), timeout: .seconds(60))
        }
        let deadline = clock.now + .seconds(10)
        while received.values.isEmpty && clock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        #expect(!received.values.isEmpty, "the subscriber never got the request")
        let cancelledAt = clock.now
        request.cancel()
        let outcome = await request.result
        let took = cancelledAt.duration(to: clock.now)
        // Far below the request's 60 s timeout, with slack for a loaded machine's scheduling.
        #expect(took < .seconds(10), "the cancelled request took \(took) to return")
        #expect(throws: CancellationError.self) { try outcome.get() }
        holder.cancel()
        await bus.close()
    }

    /// A member cancelled while it waits inside `next()` (a plain loop, not `consume`) hands back
    /// the delivery it held unsettled at once: another member gets it long before its 60 s ack
    /// wait.
    @Test func aLoopCancelledWhileWaitingHandsBackWhatItHeld() async throws {
        let server = try await NATSServerProcess.started()
        defer { server.kill() }
        let bus = try Self.bus(server)
        let options = SubscriptionOptions(group: "holders", ackWait: .seconds(60))
        let first = try await bus.subscribe("held.job", options: options)
        let took = Collected<String>()
        let holder = Task {
            var held: [Delivery] = []
            for try await delivery in first {
                took.append(delivery.event.id)
                held.append(delivery)  // never settled
            }
            _ = held
        }
        let job = Event(subject: "held.job", type: "t", source: "/test")
        try await bus.publish(job)
        let deadline = ContinuousClock.now + .seconds(10)
        while took.values.isEmpty && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        try #require(took.values == [job.id])
        try await Task.sleep(for: .milliseconds(100))  // now waiting inside next()
        holder.cancel()
        try await withDeadline(.seconds(30), "the end of the cancelled loop", onTimeout: { await first.close() }) {
            _ = await holder.result
        }
        let second = try await bus.subscribe("held.job", options: options)
        let started = ContinuousClock.now
        var iterator = second.makeAsyncIterator()
        let again = try await iterator.next()
        #expect(again?.event.id == job.id)
        #expect(started.duration(to: .now) < .seconds(10), "the held event came back after \(started.duration(to: .now))")
        try await again?.ack()
        await bus.close()
    }

    /// A batch is published through one window: receipts in order; an event the server cannot
    /// take fails alone, named in `batchOutcomes`, and the rest are stored.
    @Test func aBatchReportsEachEventsOutcome() async throws {
        let server = try await NATSServerProcess.started()
        defer { server.kill() }
        let bus = try Self.bus(server)
        let events = (0..<1_000).map { Event(subject: "batch.\($0 % 7)", type: "t", source: "/test", data: Array("event \($0)".utf8)) }
        let receipts = try await bus.publish(contentsOf: events)
        #expect(receipts.map(\.sequence) == Array(1...1_000))

        var tooLarge = Event(subject: "batch.big", type: "t", source: "/test")
        tooLarge.data = Array(repeating: 0x61, count: 2 * 1_024 * 1_024)  // over the server's 1 MiB max_payload
        let mixed = [events[0], tooLarge, Event(subject: "batch.after", type: "t", source: "/test")]
        let error = await #expect(throws: EventBusError.self) { try await bus.publish(contentsOf: mixed) }
        let outcomes = try #require(error?.batchOutcomes)
        try #require(outcomes.count == 3)
        #expect((try? outcomes[0].get())?.duplicate == true, "the first event was stored before: a duplicate")
        #expect(throws: EventBusError.self) { try outcomes[1].get() }
        if case .failure(let failure) = outcomes[1] { #expect(failure.code == .invalidEvent) }
        #expect((try? outcomes[2].get())?.sequence == 1_001, "the event after the failed one was not stored")
        #expect(error?.code == .invalidEvent)
        await bus.close()
    }

    /// Lone publishes and a burst of concurrent ones share one connection and one window, and a
    /// request rides the same connection's multiplexer: the bus holds one connection (it held two).
    @Test func theBusHoldsOneConnection() async throws {
        let monitoringPort = try NATSServerProcess.freePort()
        let server = try await NATSServerProcess.started(arguments: ["-m", "\(monitoringPort)"])
        defer { server.kill() }
        let bus = try Self.bus(server)
        let responder = try await bus.subscribe("rpc.echo", options: .init())
        let answering = Task {
            for try await delivery in responder where delivery.isRequest {
                try await delivery.respond(Event(subject: "rpc.echo", type: "reply", source: "/test"))
            }
        }
        _ = try await bus.publish(Event(subject: "one.alone", type: "t", source: "/test"))
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<200 {
                group.addTask { _ = try await bus.publish(Event(subject: "one.burst.\(index % 3)", type: "t", source: "/test")) }
            }
            try await group.waitForAll()
        }
        let reply = try await bus.request(Event(subject: "rpc.echo", type: "t", source: "/test"), timeout: .seconds(5))
        #expect(reply.type == "reply")
        let connz = try await offCooperativePool { try Self.httpGet("http://127.0.0.1:\(monitoringPort)/connz") }
        let parsed = try JSONSerialization.jsonObject(with: Data(connz.utf8)) as? [String: Any]
        #expect(parsed?["num_connections"] as? Int == 1, "the server sees these connections: \(connz.prefix(300))")
        answering.cancel()
        await bus.close()
    }

    /// The body of an HTTP GET on loopback (the server's monitoring endpoint), through python3,
    /// which the project's install script provides.
    static func httpGet(_ url: String) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1]).read().decode())", url]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
    }
}

import Foundation
import NATS
import NATSTestSupport
import Synchronization
import Testing

/// DESIGN rule 13: one bad input fails one call. A control line over the server's limit must fail
/// before the wire; an `-ERR` the server answers (after which cnats 3.4.1 closes the connection
/// for good) must leave the connection usable, with the server's reason in the failing call's
/// error; a permissions violation must not break later calls.
@Suite("Protocol errors leave the connection usable", .tags(.server))
struct ProtocolErrorTests {
    /// An echo responder on `svc.echo`, answering from cnats's delivery thread.
    private func echo(on connection: NATSConnection) async throws -> NATSHandlerSubscription {
        try await connection.subscribe(to: "svc.echo") { request in
            guard let replyTo = request.replyTo else { return }
            try? connection.publish(subject: replyTo, payload: request.payload)
        }
    }

    @Test func tooLongSubjectFailsBeforeTheWireAndTheConnectionKeepsWorking() async throws {
        let server = try await NATSServerProcess.started(jetStream: false)
        defer { server.kill() }
        let connection = try await connect(to: server, name: "long-subject")
        let recorder = await EventRecorder(connection)
        let responder = try await echo(on: connection)
        let long = String(repeating: "a", count: 5_000)

        let refused = #expect(throws: NATSError.self) { try connection.publish(subject: long, payload: "x") }
        #expect(refused?.code == .invalidSubject)
        #expect(refused?.message.contains("5000 bytes") == true && refused?.message.contains("4096") == true)
        #expect(refused?.message.contains("max_control_line") == true)
        await #expect(throws: NATSError.self) {
            _ = try await connection.request(subject: long, payload: Array("x".utf8), timeout: .seconds(2))
        }
        await #expect(throws: NATSError.self) { _ = try await connection.subscribe(to: long) }
        // A subject that fits alone but not with the request's reply inbox and sizes.
        let almost = String(repeating: "b", count: 4_080)
        #expect(NATSValidation.publishControlLineLength(
            subjectLength: almost.utf8.count, replyLength: nil, headerLength: nil, payloadLength: 1) <= 4_096)
        do {
            _ = try await connection.request(subject: almost, payload: Array("x".utf8), timeout: .seconds(2))
            Issue.record("a request whose control line is too long was sent")
        } catch {
            #expect(error.code == .invalidSubject && error.message.contains("reply inbox"))
        }

        // Nothing reached the server: the connection was never closed and works.
        let later = try await connection.subscribe(to: "later.>")
        try connection.publish(subject: "later.one", payload: "after")
        let reply = try await connection.request(subject: "svc.echo", payload: Array("ping".utf8), timeout: .seconds(5))
        #expect(reply.payload.string == "ping")
        let laterSubject = try await withDeadline(.seconds(30), "the message on 'later.one'") {
            var iterator = later.makeAsyncIterator()
            return try await iterator.next()?.subject
        }
        #expect(laterSubject == "later.one")
        try await connection.flush()
        #expect(!connection.isClosed)
        #expect(!recorder.events.values.contains { event in
            switch event {
            case .disconnected, .closed, .reconnected: true
            default: false
            }
        })
        _ = responder
        await connection.close()
    }

    @Test func aLineTheServerRefusesClosesItsConnectionWhichRecovers() async throws {
        // The server accepts 1,024 bytes; the client is told 4,096 (as if the operator lowered the
        // server's limit and not the client's): the line reaches the server, which answers -ERR
        // and closes the connection.
        let server = try await NATSServerProcess.started(jetStream: false, configuration: "max_control_line: 1024")
        defer { server.kill() }
        let connection = try await connect(to: server, name: "server-limit") { $0.maxControlLine = 4_096 }
        let recorder = await EventRecorder(connection)
        let responder = try await echo(on: connection)
        let kept = try await connection.subscribe(to: "kept.>")
        let first = try await connection.request(subject: "svc.echo", payload: Array("one".utf8), timeout: .seconds(5))
        #expect(first.payload.string == "one")

        let long = String(repeating: "c", count: 2_000)
        do {
            _ = try await connection.request(subject: long, payload: Array("x".utf8), timeout: .seconds(10))
            Issue.record("the server accepted a line over its max_control_line")
        } catch {
            #expect(error.message.contains("maximum control line exceeded"), "the error names the server's reason: \(error)")
            #expect(error.code != .timeout)
        }

        // The connection recovers: a new server connection, subscriptions carried over.
        #expect(await recorder.waitFor { if case .reconnected = $0 { true } else { false } })
        #expect(recorder.events.values.contains { event in
            if case .error(let error) = event { error.message.contains("maximum control line exceeded") } else { false }
        })
        #expect(!connection.isClosed)
        try connection.publish(subject: "kept.after", payload: "still here")
        let keptPayload = try await withDeadline(.seconds(30), "the message on 'kept.after' after the reconnect") {
            var iterator = kept.makeAsyncIterator()
            return try await iterator.next()?.payload.string
        }
        #expect(keptPayload == "still here")
        let reply = try await connection.request(subject: "svc.echo", payload: Array("two".utf8), timeout: .seconds(5))
        #expect(reply.payload.string == "two")
        _ = responder
        await connection.close()
        #expect(connection.isClosed)
    }

    @Test func aSubscriptionTheServerRefusesFailsAloneAndTheOthersKeepReceiving() async throws {
        // The server sends -ERR 'maximum subscriptions exceeded' and keeps the connection; cnats
        // 3.4.1 closes it anyway. The refused subscription must fail, naming the reason, and not be
        // sent again (the recovered connection would be refused again); the others carry over.
        let server = try await NATSServerProcess.started(jetStream: false, configuration: "max_subscriptions: 3")
        defer { server.kill() }
        let connection = try await connect(to: server, name: "max-subs")
        let recorder = await EventRecorder(connection)
        let responder = try await echo(on: connection)  // 1
        let kept = try await connection.subscribe(to: "kept.>")  // 2
        _ = try await connection.request(subject: "svc.echo", payload: Array("one".utf8), timeout: .seconds(5))  // 3: inbox

        do {
            _ = try await connection.subscribe(to: "one.too.many")
            Issue.record("the server accepted a subscription over max_subscriptions")
        } catch {
            #expect(error.message.contains("maximum subscriptions exceeded"), "names the server's reason: \(error)")
        }
        #expect(await recorder.waitFor { if case .reconnected = $0 { true } else { false } })
        try connection.publish(subject: "kept.after", payload: "carried over")
        let keptPayload = try await withDeadline(.seconds(30), "the message on 'kept.after' after the reconnect") {
            var iterator = kept.makeAsyncIterator()
            return try await iterator.next()?.payload.string
        }
        #expect(keptPayload == "carried over")
        let reply = try await connection.request(subject: "svc.echo", payload: Array("two".utf8), timeout: .seconds(5))
        #expect(reply.payload.string == "two")
        try await connection.flush()
        #expect(!connection.isClosed)
        _ = responder
        await connection.close()
    }

    /// The refusal arrives only after the subscribe's confirming round trip timed out (here the
    /// server is paused; on a stalled host the wait can time out before the reader thread has read
    /// an -ERR already there). The subscription must still fail and must not be carried over:
    /// carried over, every recovered connection would be refused and closed again.
    @Test func aRefusalThatArrivesAfterTheConfirmationTimedOutStillFailsTheSubscription() async throws {
        let server = try await NATSServerProcess.started(jetStream: false, configuration: "max_subscriptions: 2")
        defer { server.kill() }
        let connection = try await connect(to: server, name: "late-refusal") { $0.connectTimeout = .seconds(2) }
        let recorder = await EventRecorder(connection)
        let kept = try await connection.subscribe(to: "kept.>")
        let other = try await connection.subscribe(to: "other")
        // Resumed halfway through the second wait of 2 s: after the first timed out, before the
        // second would.
        server.pause()
        let resumed = Task {
            try? await Task.sleep(for: .seconds(3))
            server.resume()
        }
        do {
            _ = try await connection.subscribe(to: "one.too.many")
            Issue.record("a subscription over max_subscriptions was taken as accepted")
        } catch {
            #expect(error.message.contains("maximum subscriptions exceeded"), "names the server's reason: \(error)")
        }
        await resumed.value
        #expect(await recorder.waitFor { if case .reconnected = $0 { true } else { false } })
        try connection.publish(subject: "kept.after", payload: "carried over")
        let received = try await withDeadline(.seconds(15)) {
            var iterator = kept.makeAsyncIterator()
            return try await iterator.next()
        }
        #expect(received?.payload.string == "carried over")
        try await connection.flush()
        #expect(!connection.isClosed)
        _ = other
        await connection.close()
    }

    @Test func aPermissionViolationIsReportedAndTheConnectionStaysUsable() async throws {
        let server = try await NATSServerProcess.started(
            jetStream: false,
            configuration: """
                authorization {
                  users = [
                    { user: "app", password: "s3cret", permissions: { publish: { deny: ["secret.>"] } } }
                  ]
                }
                """)
        defer { server.kill() }
        let url = "nats://app:s3cret@127.0.0.1:\(server.port)"
        var configuration = try NATSConnectionConfiguration(servers: [url])
        configuration.name = "permissions"
        let connection = try await NATSConnection.connect(configuration: configuration)
        let recorder = await EventRecorder(connection)
        let responder = try await echo(on: connection)
        let open = try await connection.subscribe(to: "open.>")

        try connection.publish(subject: "secret.plans", payload: "no")
        #expect(await recorder.waitFor { event in
            if case .error(let error) = event {
                error.code == .permissionDenied && error.message.contains("secret.plans")
                    && error.message.contains("Permissions Violation")
            } else {
                false
            }
        })
        try connection.publish(subject: "open.door", payload: "yes")
        let openSubject = try await withDeadline(.seconds(30), "the message on 'open.door'") {
            var iterator = open.makeAsyncIterator()
            return try await iterator.next()?.subject
        }
        #expect(openSubject == "open.door")
        let reply = try await connection.request(subject: "svc.echo", payload: Array("ok".utf8), timeout: .seconds(5))
        #expect(reply.payload.string == "ok")
        try await connection.flush()
        #expect(!connection.isClosed)
        #expect(!recorder.events.values.contains { event in
            switch event {
            case .disconnected, .closed, .reconnected: true
            default: false
            }
        })
        _ = responder
        await connection.close()
    }

    @Test func controlLineLengthsAreCountedAsTheServerCounts() throws {
        // `PUB a.b _INBOX.x 5` → arguments "a.b _INBOX.x 5" (14 bytes); HPUB adds the header size.
        #expect(NATSValidation.publishControlLineLength(subjectLength: 3, replyLength: 8, headerLength: nil, payloadLength: 5) == 14)
        #expect(NATSValidation.publishControlLineLength(subjectLength: 3, replyLength: nil, headerLength: 12, payloadLength: 100) == 3 + 3 + 4)
        #expect(NATSValidation.subscribeControlLineLength(subjectLength: 3, queueGroupLength: 2) == 3 + 3 + 1 + 20)
        #expect(throws: Never.self) {
            try NATSValidation.validatePublishControlLine(
                subject: String(repeating: "a", count: 4_094), payloadLength: 1, limit: 4_096)
        }
        #expect(throws: NATSError.self) {
            try NATSValidation.validatePublishControlLine(
                subject: String(repeating: "a", count: 4_095), payloadLength: 1, limit: 4_096)
        }
        var configuration = try NATSConnectionConfiguration()
        configuration.maxControlLine = 100
        #expect(throws: NATSError.self) { try configuration.validate() }
    }
}

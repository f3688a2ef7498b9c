import Foundation
import NATS
import NATSTestSupport
import ServiceLifecycleTestKit
import Testing

@Suite("Core NATS against a real server", .tags(.server))
struct NATSConnectionTests {
    @Test func reportsServerVersion() throws {
        let version = NATSServerProcess.version()
        print("nats-server under test: \(version)")
        #expect(version.contains("v2."))
    }

    @Test func roundTripWithHeadersAndBinaryPayloads() async throws {
        let server = try await NATSServerProcess.started(jetStream: false, configuration: "max_payload: 4MB")
        let connection = try await connect(to: server)
        defer { server.kill() }
        let subscription = try await connection.subscribe(to: "rt.>")
        let receiver = Receiver(subscription)

        var headers = NATSHeaders()
        headers.add("one", for: "X-Multi")
        headers.add("two", for: "X-Multi")
        headers.add("a: b", for: "X-Colon")
        let oneMiB = (0..<(1024 * 1024)).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let binary: [UInt8] = [0, 0, 255, 13, 10, 0, 1]
        try connection.publish(subject: "rt.empty", payload: [UInt8](), headers: headers, replyTo: "rt.reply")
        try connection.publish(subject: "rt.big", payload: oneMiB, headers: headers)
        try connection.publish(subject: "rt.binary", payload: binary)
        try await connection.flush()

        #expect(await receiver.waitForCount(3))
        let messages = receiver.messages.values
        #expect(messages.map(\.subject) == ["rt.empty", "rt.big", "rt.binary"])
        #expect(messages[0].payload.isEmpty)
        #expect(messages[0].replyTo == "rt.reply")
        #expect(messages[0].headers.values(for: "X-Multi") == ["one", "two"])
        #expect(messages[0].headers["X-Colon"] == "a: b")
        #expect(messages[1].payload.bytes == oneMiB)
        #expect(messages[1].headers.values(for: "X-Multi") == ["one", "two"])
        #expect(messages[2].payload.bytes == binary)
        #expect(messages[2].headers.isEmpty)
        #expect(connection.maxPayload == 4 * 1024 * 1024)
        await connection.close()
    }

    @Test func queueGroupOfThreeSplitsMessagesExactlyOnce() async throws {
        let server = try await NATSServerProcess.started(jetStream: false)
        defer { server.kill() }
        let connection = try await connect(to: server)
        let receivers = try await (0..<3).asyncMap { _ in
            Receiver(try await connection.subscribe(to: "work.items", queueGroup: "workers"))
        }
        let publisher = try await connect(to: server, name: "publisher")
        for index in 0..<3_000 { try publisher.publish(subject: "work.items", payload: "\(index)") }
        try await publisher.flush()
        #expect(await eventually { receivers.reduce(0) { $0 + $1.messages.count } >= 3_000 })
        try await Task.sleep(for: .milliseconds(200))  // anything extra would arrive now
        let all = receivers.flatMap { $0.messages.values.map(\.payload.string) }
        #expect(all.count == 3_000)
        #expect(Set(all) == Set((0..<3_000).map { "\($0)" }))
        for receiver in receivers {
            #expect(receiver.messages.count > 0, "every member of the group got a share")
            #expect(receiver.messages.count < 3_000)
        }
        await publisher.close()
        await connection.close()
    }

    @Test func requestReplyTimeoutAndNoResponders() async throws {
        let server = try await NATSServerProcess.started(jetStream: false)
        defer { server.kill() }
        let responder = try await connect(to: server, name: "responder") { $0.sendAsap = true }
        let requester = try await connect(to: server, name: "requester")
        let service = try await responder.subscribe(to: "svc.echo")
        let serviceTask = Task {
            for try await request in service {
                guard let reply = request.replyTo else { continue }
                var headers = NATSHeaders()
                headers["X-Echoed"] = request.headers["X-In"] ?? "none"
                try responder.publish(subject: reply, payload: Array("echo:".utf8) + request.payload.bytes, headers: headers)
            }
        }
        let reply = try await requester.request(subject: "svc.echo", payload: Array("ping".utf8), headers: ["X-In": "hdr"])
        #expect(reply.payload.string == "echo:ping")
        #expect(reply.headers["X-Echoed"] == "hdr")

        // A subscriber that never answers: the request times out.
        let silent = try await responder.subscribe(to: "svc.silent")
        let started = ContinuousClock.now
        let timeoutError = await #expect(throws: NATSError.self) {
            _ = try await requester.request(subject: "svc.silent", timeout: .milliseconds(300))
        }
        #expect(timeoutError?.code == .timeout)
        #expect(ContinuousClock.now - started >= .milliseconds(250))
        _ = silent

        // Nobody subscribed: the server says so at once, a different error.
        let noResponders = await #expect(throws: NATSError.self) {
            _ = try await requester.request(subject: "svc.nobody", timeout: .seconds(5))
        }
        #expect(noResponders?.code == .noResponders)
        serviceTask.cancel()
        await requester.close()
        await responder.close()
    }

    /// Requests on a SendAsap connection go through the connection's inbox multiplexer; on a
    /// default connection through cnats's blocking request. Both must behave alike.
    @Test(arguments: [false, true])
    func handlerResponderAnswersConcurrentRequests(requesterSendsAsap: Bool) async throws {
        let server = try await NATSServerProcess.started(jetStream: false)
        defer { server.kill() }
        let responder = try await connect(to: server, name: "responder") { $0.sendAsap = true }
        let requester = try await connect(to: server, name: "requester") { $0.sendAsap = requesterSendsAsap }
        let echo = try await responder.subscribe(to: "svc.handler") { request in
            guard let replyTo = request.replyTo else { return }
            var headers = NATSHeaders()
            headers["X-Echoed"] = request.headers["X-In"] ?? "none"
            try? responder.publish(subject: replyTo, payload: Array("echo:".utf8) + request.payload.bytes, headers: headers)
        }
        #expect(echo.subject == "svc.handler")
        let replies = try await withThrowingTaskGroup(of: (Int, NATSMessage).self) { group in
            for index in 0..<200 {
                group.addTask {
                    (index, try await requester.request(subject: "svc.handler", payload: Array("\(index)".utf8), headers: ["X-In": "\(index)"]))
                }
            }
            var replies: [Int: NATSMessage] = [:]
            for try await (index, reply) in group { replies[index] = reply }
            return replies
        }
        #expect(replies.count == 200)
        for (index, reply) in replies {
            #expect(reply.payload.string == "echo:\(index)")
            #expect(reply.headers["X-Echoed"] == "\(index)")
        }
        #expect(echo.deliveredCount == 200)

        // Timeouts and "no responders" as on the other path.
        let silent = try await responder.subscribe(to: "svc.silent2")
        let started = ContinuousClock.now
        let timeoutError = await #expect(throws: NATSError.self) {
            _ = try await requester.request(subject: "svc.silent2", timeout: .milliseconds(300))
        }
        #expect(timeoutError?.code == .timeout)
        #expect(ContinuousClock.now - started >= .milliseconds(250))
        #expect(ContinuousClock.now - started < .seconds(3))
        _ = silent
        echo.unsubscribe()
        try await responder.flush()
        let noResponders = await #expect(throws: NATSError.self) {
            _ = try await requester.request(subject: "svc.handler", timeout: .seconds(5))
        }
        #expect(noResponders?.code == .noResponders)

        if requesterSendsAsap {
            // A multiplexed request whose task is cancelled ends at once.
            let waiting = Task { try await requester.request(subject: "svc.silent2", timeout: .seconds(30)) }
            try await Task.sleep(for: .milliseconds(100))
            let cancelledAt = ContinuousClock.now
            waiting.cancel()
            let cancelled = await #expect(throws: NATSError.self) { _ = try await waiting.value }
            #expect(cancelled?.code == .cancelled)
            #expect(ContinuousClock.now - cancelledAt < .seconds(2))
        }
        await requester.close()
        await responder.close()
    }

    @Test func droppingAConnectionWithRequestsInFlightClosesIt() async throws {
        let server = try await NATSServerProcess.started(jetStream: false)
        defer { server.kill() }
        let responder = try await connect(to: server, name: "responder") { $0.sendAsap = true }
        let echo = try await responder.subscribe(to: "svc.drop") { request in
            try? responder.publish(subject: request.replyTo!, payload: request.payload)
        }
        var doomed: NATSConnection? = try await connect(to: server, name: "doomed") { $0.sendAsap = true }
        let recorder = await EventRecorder(doomed!)
        // The multiplexer's inbox subscription must not keep the connection open.
        #expect(try await doomed!.request(subject: "svc.drop", payload: Array("x".utf8)).payload.string == "x")
        doomed = nil
        #expect(await recorder.waitFor { $0 == .closed })
        echo.unsubscribe()
        await responder.close()
    }

    @Test(arguments: [false, true])
    func reconnectDeliversEverythingPublishedOrBuffered(kill: Bool) async throws {
        let server = try await NATSServerProcess.started(jetStream: false)
        defer { server.kill() }
        let connection = try await connect(to: server)
        let recorder = await EventRecorder(connection)
        let subscription = try await connection.subscribe(to: "reconnect.test")
        let receiver = Receiver(subscription)

        var published = 0
        // Phase 1: connected; confirmed by a flush.
        for _ in 0..<500 {
            try connection.publish(subject: "reconnect.test", payload: "\(published)")
            published += 1
        }
        try await connection.flush()
        #expect(await receiver.waitForCount(500))

        if kill { server.kill() } else { server.stop() }
        #expect(await recorder.waitFor { $0 == .disconnected })
        // Phase 2: disconnected; cnats buffers these and sends them after reconnecting.
        for _ in 0..<500 {
            try connection.publish(subject: "reconnect.test", payload: "\(published)")
            published += 1
        }
        try await server.restarted()
        #expect(await recorder.waitFor { if case .reconnected = $0 { true } else { false } })
        // Phase 3: connected again.
        for _ in 0..<500 {
            try connection.publish(subject: "reconnect.test", payload: "\(published)")
            published += 1
        }
        try await connection.flush()
        #expect(await receiver.waitForCount(published))
        try await Task.sleep(for: .milliseconds(100))
        let received = receiver.messages.values.map { Int($0.payload.string)! }
        #expect(received == Array(0..<published), "every message, once, in order")

        let kinds = recorder.events.values.compactMap { event -> String? in
            switch event {
            case .disconnected: "disconnected"
            case .reconnected: "reconnected"
            default: nil
            }
        }
        #expect(kinds.starts(with: ["disconnected", "reconnected"]))
        await connection.close()
    }

    @Test func drainLosesNothingPublishedBeforeIt() async throws {
        let server = try await NATSServerProcess.started(jetStream: false)
        defer { server.kill() }
        // Publisher side: publishes not yet flushed are sent by drain.
        let listener = try await connect(to: server, name: "listener")
        let listened = Receiver(try await listener.subscribe(to: "drain.out"))
        let publisher = try await connect(to: server, name: "publisher")
        for index in 0..<10_000 { try publisher.publish(subject: "drain.out", payload: "\(index)") }
        try await publisher.drain()
        #expect(publisher.isClosed)
        #expect(await listened.waitForCount(10_000))
        #expect(listened.messages.count == 10_000)

        // Subscriber side: messages already received are delivered before the sequence ends.
        let consumer = try await connect(to: server, name: "consumer")
        let slow = Receiver(try await consumer.subscribe(to: "drain.in"), delay: .microseconds(50))
        for index in 0..<5_000 { try listener.publish(subject: "drain.in", payload: "\(index)") }
        try await listener.flush()
        try await Task.sleep(for: .milliseconds(100))
        try await consumer.drain()
        try await slow.waitUntilFinished()
        #expect(slow.messages.count == 5_000)
        #expect(slow.messages.values.map(\.payload.string) == (0..<5_000).map { "\($0)" })
        await listener.close()
    }

    /// A subscription that cannot finish (its handler is stuck in a message) keeps the drain from
    /// finishing: the drain gives up at its timeout and closes, and a subscribe while it drains is
    /// refused.
    @Test func drainTimesOutOnASubscriptionThatCannotFinish() async throws {
        let server = try await NATSServerProcess.started(jetStream: false)
        defer { server.kill() }
        let connection = try await connect(to: server)
        let entered = DispatchSemaphore(value: 0)
        let release = DispatchSemaphore(value: 0)
        // Blocks cnats's delivery thread on purpose, as a stuck handler would.
        let stuck = try await connection.subscribe(to: "drain.stuck") { _ in
            entered.signal()
            release.wait()
        }
        defer { release.signal() }
        try connection.publish(subject: "drain.stuck", payload: "x")
        await offCooperativePool { entered.wait() }
        let draining = Task { try await connection.drain(timeout: .seconds(2)) }
        // A subscription made before the drain reached the subscriptions is drained with them; from
        // then on, subscribing is refused.
        let refusal = try await withDeadline(.seconds(30), "a subscribe to be refused") { () -> NATSError? in
            while true {
                do {
                    _ = try await connection.subscribe(to: "drain.late")
                } catch let error as NATSError {
                    return error
                } catch {
                    return nil
                }
                try await Task.sleep(for: .milliseconds(10))
            }
        }
        #expect(refusal?.code == .connectionDraining)
        let timedOut = await #expect(throws: NATSError.self) { try await draining.value }
        #expect(timedOut?.code == .timeout)
        #expect(connection.isClosed)
        withExtendedLifetime(stuck) {}
    }

    /// A drain asked for while cnats reconnects waits for the reconnect, then flushes what the
    /// reconnect buffer holds (cnats itself refuses to drain then, and closing would drop them).
    @Test func drainDuringAReconnectFlushesWhatWasBuffered() async throws {
        let server = try await NATSServerProcess.started()
        defer { server.kill() }
        let connection = try await connect(to: server)
        let recorder = await EventRecorder(connection)
        _ = try await connection.jetStream().ensureStream(NATSStreamConfiguration(name: "DRAINED", subjects: ["drain.buffered"]))
        let handler = try await connection.subscribe(to: "drain.other") { _ in }
        await server.stopped()
        #expect(await recorder.waitFor { $0 == .disconnected })
        for index in 0..<100 { try connection.publish(subject: "drain.buffered", payload: "\(index)") }
        let draining = Task { try await connection.drain(timeout: .seconds(30)) }
        try await withDeadline(.seconds(30), "the connection to start draining") {
            while connection.state != .draining { try await Task.sleep(for: .milliseconds(5)) }
        }
        try await server.restarted()
        try await draining.value
        #expect(connection.isClosed)
        let checker = try await connect(to: server)
        let stored = try await checker.jetStream().streamInfo("DRAINED").state.messages
        #expect(stored == 100, "every publish buffered while disconnected is stored")
        await checker.close()
        withExtendedLifetime(handler) {}
    }

    /// If cnats gives up reconnecting while a drain waits for it, the drain says so: the publishes
    /// cnats still held were not sent.
    @Test func drainWhoseReconnectFailsSaysSo() async throws {
        let server = try await NATSServerProcess.started(jetStream: false)
        defer { server.kill() }
        let connection = try await connect(to: server) { $0.reconnect.maxAttempts = .limited(3) }
        let recorder = await EventRecorder(connection)
        await server.stopped()
        #expect(await recorder.waitFor { $0 == .disconnected })
        try connection.publish(subject: "drain.lost", payload: "x")
        let failure = await #expect(throws: NATSError.self) { try await connection.drain(timeout: .seconds(60)) }
        #expect(failure?.code == .connectionClosed, "\(String(describing: failure))")
        #expect(connection.isClosed)
    }

    @Test func closingEndsIterationsAndEvents() async throws {
        let server = try await NATSServerProcess.started(jetStream: false)
        defer { server.kill() }
        let connection = try await connect(to: server)
        let recorder = await EventRecorder(connection)
        let first = Receiver(try await connection.subscribe(to: "close.a"))
        let second = Receiver(try await connection.subscribe(to: "close.b", queueGroup: "q"))
        try connection.publish(subject: "close.a", payload: "x")
        #expect(await first.waitForCount(1))
        await connection.close()
        try await first.waitUntilFinished(timeout: .seconds(5))
        try await second.waitUntilFinished(timeout: .seconds(5))
        #expect(await recorder.waitFor { $0 == .closed })
        // After close, everything fails clearly and new event listeners end at once.
        let error = #expect(throws: NATSError.self) { try connection.publish(subject: "close.a", payload: "y") }
        #expect(error?.code == .connectionClosed)
        let lateEvents = try await withDeadline(.seconds(30), "the end of a closed connection's events") {
            var lateEvents: [NATSConnectionEvent] = []
            for await event in connection.events { lateEvents.append(event) }
            return lateEvents
        }
        #expect(lateEvents == [.closed])
    }

    @Test func breakingOutOfTheLoopUnsubscribes() async throws {
        let server = try await NATSServerProcess.started(jetStream: false)
        defer { server.kill() }
        let connection = try await connect(to: server)
        let requester = try await connect(to: server, name: "requester")
        do {
            let subscription = try await connection.subscribe(to: "unsub.test")
            try requester.publish(subject: "unsub.test", payload: "1")
            try await withDeadline(.seconds(30), "the message on 'unsub.test'") {
                for try await _ in subscription { break }
            }
        }
        try await requester.flush()
        try await connection.flush()
        // With the interest gone, a request finds no responders.
        let error = await #expect(throws: NATSError.self) {
            _ = try await requester.request(subject: "unsub.test", timeout: .seconds(2))
        }
        #expect(error?.code == .noResponders)
        await connection.close()
        await requester.close()
    }

    @Test func slowSubscriberIsReportedAndMemoryStaysBounded() async throws {
        let server = try await NATSServerProcess.started(jetStream: false)
        defer { server.kill() }
        let connection = try await connect(to: server)
        let recorder = await EventRecorder(connection)
        let limits = NATSConnectionConfiguration.SubscriptionLimits(messages: 100, bytes: 1024 * 1024)
        let subscription = try await connection.subscribe(to: "slow.test", limits: limits)
        let publisher = try await connect(to: server, name: "publisher")
        let payload = [UInt8](repeating: 1, count: 512)
        for _ in 0..<20_000 { try publisher.publish(subject: "slow.test", payload: payload) }
        try await publisher.flush()
        // Nobody iterates: the client buffer fills to its limit, then cnats's pending limit, then
        // cnats drops and says so.
        #expect(await recorder.waitFor { if case .slowConsumer(subject: "slow.test", _) = $0 { true } else { false } })
        #expect(await eventually { subscription.droppedCount > 0 })
        // Bounded: the client buffer holds at most 100 messages and cnats at most 100 more.
        #expect(subscription.deliveredCount <= 101 + 1)
        let received = try await withDeadline(.seconds(30), "100 buffered messages on 'slow.test'") {
            var received = 0
            for try await _ in subscription {
                received += 1
                if received == 100 { break }
            }
            return received
        }
        #expect(received == 100)
        await publisher.close()
        await connection.close()
    }

    @Test func aSingleMessageAfterABurstArrivesPromptly() async throws {
        // The subscriber's wake-ups are deferred while cnats holds more messages for it; the last
        // message of a burst, and a lone message later, must still be handed over at once.
        let server = try await NATSServerProcess.started(jetStream: false)
        defer { server.kill() }
        let connection = try await connect(to: server)
        let publisher = try await connect(to: server, name: "publisher") { $0.sendAsap = true }
        let subscription = try await connection.subscribe(to: "burst.test")
        let receiver = Receiver(subscription)
        for index in 0..<20_000 { try publisher.publish(subject: "burst.test", payload: "\(index)") }
        #expect(await receiver.waitForCount(20_000))
        try await Task.sleep(for: .milliseconds(200))
        for round in 0..<5 {
            let started = ContinuousClock.now
            try publisher.publish(subject: "burst.test", payload: "single \(round)")
            #expect(await receiver.waitForCount(20_001 + round, timeout: .seconds(5)))
            let elapsed = ContinuousClock.now - started
            // A loopback round trip takes well under a millisecond (the bound leaves room for a
            // busy test machine); a stranded message would wait for the next one: never, here.
            #expect(elapsed < .seconds(2), "round \(round) took \(elapsed)")
            try await Task.sleep(for: .milliseconds(50))
        }
        let values = receiver.messages.values.map(\.payload.string)
        #expect(values.prefix(20_000) == (0..<20_000).map { "\($0)" }[...])
        #expect(values.suffix(5) == (0..<5).map { "single \($0)" }[...])
        await publisher.close()
        await connection.close()
    }

    @Test func maxPayloadFollowsTheServerAfterAReconnect() async throws {
        let first = try await NATSServerProcess.started(jetStream: false)
        let connection = try await connect(to: first)
        let recorder = await EventRecorder(connection)
        #expect(connection.maxPayload == 1024 * 1024)
        first.stop()
        #expect(await recorder.waitFor { $0 == .disconnected })
        // Another server on the same port announces a larger limit.
        let second = try await NATSServerProcess.started(jetStream: false, port: first.port, configuration: "max_payload: 4MB")
        defer { second.kill() }
        #expect(await recorder.waitFor { if case .reconnected = $0 { true } else { false } })
        #expect(connection.maxPayload == 4 * 1024 * 1024)
        let big = [UInt8](repeating: 1, count: 2 * 1024 * 1024)
        try connection.publish(subject: "big.test", payload: big)
        await connection.close()
    }

    @Test func invalidInputNeverReachesTheServer() async throws {
        let server = try await NATSServerProcess.started(jetStream: false)
        defer { server.kill() }
        let watcher = try await connect(to: server, name: "watcher")
        let everything = Receiver(try await watcher.subscribe(to: ">"))
        let connection = try await connect(to: server)

        func expectFailure(_ code: NATSError.Code, _ body: () throws -> Void) {
            do {
                try body()
                Issue.record("expected \(code)")
            } catch {
                #expect((error as? NATSError)?.code == code, "\(error)")
            }
        }
        expectFailure(.invalidSubject) { try connection.publish(subject: "", payload: "x") }
        expectFailure(.invalidSubject) { try connection.publish(subject: "a b", payload: "x") }
        expectFailure(.invalidSubject) { try connection.publish(subject: "a..b", payload: "x") }
        expectFailure(.invalidSubject) { try connection.publish(subject: "a.*", payload: "x") }
        expectFailure(.invalidSubject) { try connection.publish(subject: "a.>", payload: "x") }
        expectFailure(.invalidSubject) { try connection.publish(subject: "a.", payload: "x") }
        expectFailure(.invalidSubject) { try connection.publish(subject: "a\u{7}", payload: "x") }
        expectFailure(.invalidSubject) { try connection.publish(subject: "ok", payload: "x", replyTo: "bad reply") }
        expectFailure(.invalidHeader) { try connection.publish(subject: "ok", payload: "x", headers: ["Bad:Key": "v"]) }
        expectFailure(.invalidHeader) { try connection.publish(subject: "ok", payload: "x", headers: ["Key": "a\r\nb"]) }
        expectFailure(.invalidHeader) { try connection.publish(subject: "ok", payload: "x", headers: ["Kéy": "v"]) }
        expectFailure(.invalidHeader) { try connection.publish(subject: "ok", payload: "x", headers: ["Key": "nul\u{0}"]) }
        let tooLarge = [UInt8](repeating: 0, count: connection.maxPayload + 1)
        expectFailure(.payloadTooLarge) { try connection.publish(subject: "ok", payload: tooLarge) }
        let justFits = [UInt8](repeating: 0, count: connection.maxPayload - 10)
        expectFailure(.payloadTooLarge) { try connection.publish(subject: "ok", payload: justFits, headers: ["X-Pad": "0123456789"]) }
        for (subject, group) in [("a..b", nil), ("a.>.b", nil), ("ok", "bad group"), ("ok", "")] as [(String, String?)] {
            let error = await #expect(throws: NATSError.self) { _ = try await connection.subscribe(to: subject, queueGroup: group) }
            #expect(error?.code == (group == nil ? .invalidSubject : .invalidQueueGroup))
        }
        let requestError = await #expect(throws: NATSError.self) { _ = try await connection.request(subject: "a.*") }
        #expect(requestError?.code == .invalidSubject)

        // The first thing the watcher sees is the sentinel sent after all of the above.
        try connection.publish(subject: "sentinel", payload: "done")
        try await connection.flush()
        #expect(await everything.waitForCount(1))
        try await Task.sleep(for: .milliseconds(100))
        #expect(everything.messages.values.map(\.subject) == ["sentinel"])
        await connection.close()
        await watcher.close()
    }

    @Test func unreachableServerFailsWithRedactedURL() async throws {
        let port = try NATSServerProcess.freePort()
        var configuration = try NATSConnectionConfiguration(servers: ["nats://alice:hunter2@127.0.0.1:\(port)"])
        configuration.connectTimeout = .milliseconds(500)
        let error = await #expect(throws: NATSError.self) {
            _ = try await NATSConnection.connect(configuration: configuration)
        }
        #expect(error?.code == .noServers)
        #expect(error?.description.contains("127.0.0.1:\(port)") == true, "\(error?.description ?? "")")
        #expect(error?.description.contains("hunter2") == false)
    }

    @Test func droppingTheLastReferenceClosesTheConnection() async throws {
        let server = try await NATSServerProcess.started(jetStream: false)
        defer { server.kill() }
        var doomed: NATSConnection? = try await connect(to: server, name: "doomed")
        let recorder = await EventRecorder(doomed!)
        try doomed!.publish(subject: "lifetime.test", payload: "bye")
        doomed = nil
        #expect(await recorder.waitFor { $0 == .closed })
    }

    @Test func operationsBeforeConnectFailClearly() async throws {
        let connection = NATSConnection(configuration: try NATSConnectionConfiguration())
        let error = #expect(throws: NATSError.self) { try connection.publish(subject: "a", payload: "x") }
        #expect(error?.code == .notConnected)
        await connection.close()
        #expect(connection.isClosed)
    }
}

extension Sequence {
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var results: [T] = []
        for element in self { results.append(try await transform(element)) }
        return results
    }
}

@Suite("Service lifecycle", .tags(.server))
struct NATSConnectionServiceTests {
    @Test func gracefulShutdownDrainsAndReturns() async throws {
        let server = try await NATSServerProcess.started(jetStream: false)
        defer { server.kill() }
        let listener = try await connect(to: server, name: "listener")
        let listened = Receiver(try await listener.subscribe(to: "svc.out"))
        let connection = NATSConnection(configuration: try NATSConnectionConfiguration(servers: [server.url]))
        try await testGracefulShutdown { trigger in
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await connection.run() }
                #expect(await eventually { connection.connectedServer != nil })
                for index in 0..<2_000 { try connection.publish(subject: "svc.out", payload: "\(index)") }
                trigger.triggerGracefulShutdown()
                try await group.waitForAll()
            }
        }
        #expect(connection.isClosed)
        #expect(await listened.waitForCount(2_000))
        #expect(listened.messages.count == 2_000, "graceful shutdown drained every publish")
        await listener.close()
    }

    @Test func cancellationCloses() async throws {
        let server = try await NATSServerProcess.started(jetStream: false)
        defer { server.kill() }
        let connection = NATSConnection(configuration: try NATSConnectionConfiguration(servers: [server.url]))
        let running = Task { try await connection.run() }
        #expect(await eventually { connection.connectedServer != nil })
        let subscription = Receiver(try await connection.subscribe(to: "svc.cancel"))
        running.cancel()
        try await withDeadline(.seconds(5), "run() after its task was cancelled", onTimeout: { await connection.close() }) {
            try await running.value
        }
        #expect(connection.isClosed)
        try await subscription.waitUntilFinished(timeout: .seconds(5))
    }
}

@Suite("Cluster events", .tags(.server))
struct NATSClusterEventTests {
    @Test func discoveredServersAndLameDuckModeAreReported() async throws {
        let clusterPortA = try NATSServerProcess.freePort()
        let clusterPortB = try NATSServerProcess.freePort()
        let nodeA = try await NATSServerProcess.started(
            jetStream: false, arguments: ["--cluster_name", "events", "--cluster", "nats://127.0.0.1:\(clusterPortA)"])
        // Killed, not stopped: in lame duck mode a graceful stop waits out the lame-duck duration.
        defer { nodeA.kill() }
        let connection = try await connect(to: nodeA)
        let recorder = await EventRecorder(connection)
        // A second node joins; node A announces it to its clients.
        let nodeB = try await NATSServerProcess.started(
            jetStream: false,
            arguments: ["--cluster_name", "events", "--cluster", "nats://127.0.0.1:\(clusterPortB)", "--routes", "nats://127.0.0.1:\(clusterPortA)"])
        defer { nodeB.kill() }
        #expect(await recorder.waitFor { event in
            if case .discoveredServers(let servers) = event { servers.contains { $0.contains(":\(nodeB.port)") } } else { false }
        })
        // Lame duck mode (SIGUSR2 to the server): clients are told to move.
        if let pid = nodeA.pid { kill(pid, SIGUSR2) }
        #expect(await recorder.waitFor { $0 == .lameDuckMode })
        await connection.close()
    }
}

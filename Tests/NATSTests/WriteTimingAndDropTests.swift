import Foundation
import NATS
import NATSTestSupport
import Testing

/// When bytes leave the process with the default configuration, and what happens to requests in
/// flight when the connection drops.
@Suite("Immediate writes and dropped connections", .tags(.server))
struct WriteTimingAndDropTests {
    /// With the defaults, a publish after a quiet spell is written from the publishing thread:
    /// nothing is left in cnats's buffer for its flusher (which would wait a millisecond). A burst
    /// right behind it is buffered and coalesced. With the rule off, a lone publish waits in the
    /// buffer.
    @Test func aPublishAfterAQuietSpellIsWrittenAtOnceAndABurstIsBuffered() async throws {
        let server = try await NATSServerProcess.started(jetStream: false)
        defer { server.kill() }
        let connection = try await connect(to: server)
        #expect(connection.configuration.writeImmediatelyAfterIdle == .microseconds(20))
        // Writing at once needs cnats's internal publish; on the public-API path (CI runs both)
        // every publish waits for the flusher, as the configuration documents.
        let writesAtOnce = NATSNativePath.current.usesInternals
        var burstBuffered = 0
        var loneBufferedWithRule = 0
        for _ in 0..<20 {
            try await Task.sleep(for: .milliseconds(5))
            try connection.publish(subject: "timing.lone", payload: Array("x".utf8))
            if writesAtOnce {
                #expect(connection.bufferedBytes == 0, "the publish after a pause left at once")
            } else if connection.bufferedBytes > 0 {
                loneBufferedWithRule += 1
            }
            for _ in 0..<200 { try connection.publish(subject: "timing.burst", payload: Array("y".utf8)) }
            if connection.bufferedBytes > 0 { burstBuffered += 1 }
        }
        // A burst of 200 takes microseconds; cnats's flusher sleeps a millisecond before writing.
        #expect(burstBuffered > 0, "publishes close together are left to the flusher")
        if !writesAtOnce { #expect(loneBufferedWithRule > 0, "without the internals a lone publish waits for the flusher") }
        await connection.close()

        let flusherOnly = try await connect(to: server) { $0.writeImmediatelyAfterIdle = nil }
        var loneBuffered = 0
        for _ in 0..<20 {
            try await Task.sleep(for: .milliseconds(5))
            try flusherOnly.publish(subject: "timing.lone", payload: Array("x".utf8))
            if flusherOnly.bufferedBytes > 0 { loneBuffered += 1 }
        }
        #expect(loneBuffered > 0, "without the rule a lone publish waits for the flusher")
        await flusherOnly.close()
    }

    /// A reply published with the README's plain `publish` from a default connection reaches the
    /// requester without the flusher's millisecond: the responder's buffer is empty right after.
    @Test func aDefaultResponderWritesItsReplyAtOnce() async throws {
        let server = try await NATSServerProcess.started(jetStream: false)
        defer { server.kill() }
        let responder = try await connect(to: server, name: "responder")
        let requester = try await connect(to: server, name: "requester")
        let requests = try await responder.subscribe(to: "timing.echo")
        let leftInBuffer = Collected<Int>()
        let service = Task {
            for try await request in requests {
                try responder.publish(subject: request.replyTo!, payload: request.payload.bytes)
                leftInBuffer.append(responder.bufferedBytes)
            }
        }
        for index in 0..<20 {
            try await Task.sleep(for: .milliseconds(2))
            let reply = try await requester.request(subject: "timing.echo", payload: Array("\(index)".utf8))
            #expect(reply.payload.string == "\(index)")
        }
        // The responder records the buffer after its publish returns, which can be after the
        // requester already has the last reply.
        #expect(await eventually { leftInBuffer.values.count == 20 })
        if NATSNativePath.current.usesInternals {
            #expect(leftInBuffer.values.allSatisfy { $0 == 0 }, "every reply was written at once: \(leftInBuffer.values)")
        }
        service.cancel()
        await requester.close()
        await responder.close()
    }

    /// A JetStream publish made while up to 15 others await their acks does not wait for cnats's
    /// flusher, which sleeps a millisecond before it writes: it is written at once from the
    /// publishing thread (without cnats's internals, by the connection's prompt flush). Before,
    /// four tasks publishing one event at a time each waited for that millisecond, and ran slower
    /// than one task. Beyond 16 in flight, publishes are left to cnats's buffer and flusher, which
    /// coalesce them. With SendAsap, cnats writes every publish itself.
    @Test func aJetStreamPublishBehindAFewOthersLeavesPromptlyAndManyAreLeftToTheFlusher() async throws {
        let server = try await NATSServerProcess.started()
        defer { server.kill() }
        let usesInternals = NATSNativePath.current.usesInternals

        // The idle rule (core publishes after a quiet spell) off, so that no other rule of when
        // bytes leave is at work on this connection.
        let connection = try await connect(to: server) { $0.writeImmediatelyAfterIdle = nil }
        // Something listens on the subject but never answers: every publish stays in flight.
        let silent = try await connection.subscribe(to: "prompt.>")
        let publisher = try await connection.jetStream().makePublisher(configuration: .init(ackTimeout: .seconds(60)))
        var pending = [try await publisher.publish(subject: "prompt.first", payload: Array("1".utf8))]
        // 2 to 11 in flight.
        for index in 0..<10 {
            let before = connection.promptWriteCount
            pending.append(try await publisher.publish(subject: "prompt.behind", payload: Array("\(index)".utf8)))
            if usesInternals {
                #expect(connection.bufferedBytes == 0, "publish \(index) behind others was written at once")
                #expect(connection.promptWriteCount == before + 1)
            } else {
                #expect(
                    await eventually { connection.promptWriteCount > before && connection.bufferedBytes == 0 },
                    "publish \(index) behind others was written by the connection's flush")
            }
        }
        // 12 to 211 in flight: only the five up to 16 are written by the connection.
        let beforeMany = connection.promptWriteCount
        for index in 0..<200 {
            pending.append(try await publisher.publish(subject: "prompt.many", payload: Array("\(index)".utf8)))
        }
        #expect(await eventually { connection.bufferedBytes == 0 }, "cnats's flusher wrote the rest")
        if usesInternals {
            let manyWrites = connection.promptWriteCount - beforeMany
            #expect(manyWrites == 5, "200 publishes from 12 to 211 in flight took \(manyWrites) writes of their own")
        } else {
            // The five go through prompt flushes, which may coalesce; a flush is counted after
            // its PONG wait, so the count may trail the empty buffer by a millisecond.
            #expect(await eventually { connection.promptWriteCount > beforeMany }, "no prompt flush for the publishes up to 16")
            let manyWrites = connection.promptWriteCount - beforeMany
            #expect(manyWrites <= 5, "200 publishes from 12 to 211 in flight took \(manyWrites) prompt flushes")
        }
        #expect(pending.allSatisfy { $0.outcome == nil })
        #expect(publisher.pendingCount == 211)
        _ = silent
        await connection.close()

        let sendAsap = try await connect(to: server) { $0.sendAsap = true }
        let silentAgain = try await sendAsap.subscribe(to: "prompt.>")
        let asapPublisher = try await sendAsap.jetStream().makePublisher(configuration: .init(ackTimeout: .seconds(60)))
        for index in 0..<5 {
            _ = try await asapPublisher.publish(subject: "prompt.asap", payload: Array("\(index)".utf8))
            #expect(sendAsap.bufferedBytes == 0, "SendAsap wrote publish \(index) at once")
        }
        #expect(sendAsap.promptWriteCount == 0)
        _ = silentAgain
        await sendAsap.close()
    }

    /// A request whose responder never answers fails as `disconnected` as soon as the connection
    /// drops, not when its (long) timeout expires; the connection reconnects and works.
    @Test func aRequestInFlightFailsAtOnceWhenTheConnectionDrops() async throws {
        let server = try await NATSServerProcess.started(jetStream: false)
        defer { server.kill() }
        let responderConnection = try await connect(to: server, name: "silent")
        let silent = try await responderConnection.subscribe(to: "drop.silent")
        let connection = try await connect(to: server, name: "requester")
        let recorder = await EventRecorder(connection)
        let clock = ContinuousClock()
        let started = clock.now
        let request = Task { try await connection.request(subject: "drop.silent", timeout: .seconds(60)) }
        try await Task.sleep(for: .milliseconds(300))
        server.kill()
        let result = await request.result
        #expect(started.duration(to: clock.now) < .seconds(30), "failed long before the 60 s timeout")
        guard case .failure(let error as NATSError) = result else {
            Issue.record("expected a NATSError, got \(result)")
            return
        }
        #expect(error.code == .disconnected)
        #expect(error.isRetriable)
        #expect(error.message.contains("drop.silent"))
        _ = silent

        try await server.restarted()
        #expect(await recorder.waitFor { if case .reconnected = $0 { true } else { false } })
        let echo = try await connection.subscribe(to: "drop.echo")
        let service = Task {
            for try await message in echo { try connection.publish(subject: message.replyTo!, payload: message.payload.bytes) }
        }
        let reply = try await connection.request(subject: "drop.echo", payload: Array("again".utf8))
        #expect(reply.payload.string == "again")
        service.cancel()
        await connection.close()
        await responderConnection.close()
    }

    /// A JetStream publish waiting for its ack gets its outcome (disconnected: resend with the
    /// same message id) when the connection drops, and leaves the publisher's window.
    @Test func aJetStreamPublishInFlightFailsAtOnceWhenTheConnectionDrops() async throws {
        let server = try await NATSServerProcess.started()
        defer { server.kill() }
        let connection = try await connect(to: server)
        // Something listens on the subject but never answers: the publish waits for an ack.
        let silent = try await connection.subscribe(to: "silent.>")
        let publisher = try await connection.jetStream().makePublisher(configuration: .init(ackTimeout: .seconds(60)))
        let pending = try await publisher.publish(subject: "silent.one", payload: Array("1".utf8))
        let direct = Task { try await connection.jetStream().publish(subject: "silent.two", options: .init(messageID: "two"), timeout: .seconds(60)) }
        try await Task.sleep(for: .milliseconds(300))
        #expect(pending.outcome == nil)
        server.kill()

        let outcome = await pending.result()
        guard case .failure(let error) = outcome else {
            Issue.record("expected a failure, got \(outcome)")
            return
        }
        #expect(error.code == .disconnected)
        #expect(error.isRetriable)
        #expect(error.message.contains("resend it with the same message id"))
        #expect(publisher.pendingCount == 0)

        let directResult = await direct.result
        guard case .failure(let directError as NATSError) = directResult else {
            Issue.record("expected a NATSError, got \(directResult)")
            return
        }
        #expect(directError.code == .disconnected)
        #expect(directError.message.contains("message id two"))
        _ = silent
        await connection.close()
    }
}

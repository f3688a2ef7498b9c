import Foundation
import NATS
import NATSTestSupport
import Testing

@Suite("JetStream consumers against a real server", .tags(.server))
struct JetStreamConsumerTests {
    /// A server, a connection and a stream.
    func setUp(stream name: String, subjects: [String]) async throws -> (NATSServerProcess, NATSConnection, NATSJetStream) {
        let server = try await NATSServerProcess.started()
        let connection = try await connect(to: server)
        let js = connection.jetStream()
        try await js.ensureStream(NATSStreamConfiguration(name: name, subjects: subjects))
        return (server, connection, js)
    }

    func preload(_ js: NATSJetStream, subject: String, count: Int, from start: Int = 0) async throws {
        let publisher = try await js.makePublisher()
        var pending: [NATSPendingPublish] = []
        for index in start..<(start + count) {
            pending.append(try await publisher.publish(subject: subject, payload: Array("\(index)".utf8)))
        }
        for publish in pending { _ = try await publish.ack() }
        await publisher.close()
    }

    /// At least once across a consumer hand-over and a server restart: every message is
    /// processed, nothing twice before the restart, and after it only what the restarted server
    /// redelivered, marked as such.
    ///
    /// A restart may legitimately redeliver: nats-server stores a pending message with the
    /// stream's timestamp of the message rather than the time it delivered it, so a server that
    /// comes back treats every message that was still unacknowledged and was published more than
    /// an ack wait ago as expired, and redelivers it to the next pull at once, with delivery count
    /// 2, even if it had delivered it a moment before it stopped. The consumer still holds those
    /// first copies and acknowledges them, so both are processed (seen when the restart comes
    /// more than 10 s after the preload, on a loaded machine or a slower path through cnats).
    @Test(.timeLimit(.minutes(2)))
    func pullConsumerDeliversEverythingOnceAcrossConsumerAndServerRestarts() async throws {
        let (server, connection, js) = try await setUp(stream: "WORK", subjects: ["work.>"])
        defer { server.kill() }
        let total = 20_000
        try await preload(js, subject: "work.item", count: total)
        var configuration = NATSConsumerConfiguration(durableName: "workers")
        // Far longer than a message waits in the consumer's buffer (each is confirmed with a round
        // trip): no redelivery comes from an expired ack wait while the server keeps running.
        configuration.ackWait = .seconds(10)
        configuration.maxAckPending = 5_000
        try await js.ensureConsumer(stream: "WORK", configuration)
        let options = NATSPullConsumer.Options(batch: 200, expires: .seconds(4), idleHeartbeat: .seconds(1))

        /// The delivery counts each message (by payload) was processed with.
        var processed: [Int: [UInt64]] = [:]
        func process(_ message: NATSJetStreamMessage) async throws {
            // Confirmed acks: a plain ack the server had not yet persisted when it restarted would
            // be redelivered (JetStream is at least once).
            try await message.ackSync()
            processed[Int(message.payload.string)!, default: []].append(message.metadata?.deliveryCount ?? 0)
        }
        func consume(_ iterator: inout NATSPullConsumer.Iterator, count: Int) async throws {
            for _ in 0..<count {
                guard let message = try await iterator.next() else { Issue.record("iteration ended early"); return }
                try await process(message)
            }
            // Generous: beside every other NATS suite a 5 s PONG has timed out on 2 cores.
            try await connection.flush(timeout: .seconds(30))
        }
        do {
            let first = try await js.pullConsumer(stream: "WORK", name: "workers", options: options)
            var iterator = first.makeAsyncIterator()
            try await consume(&iterator, count: 5_000)
            // What it fetched ahead goes back to the server at once (-NAK), not after the ack wait.
            first.stopReturningUndelivered()
        }
        // A new instance resumes where the durable left off.
        let second = try await js.pullConsumer(stream: "WORK", name: "workers", options: options)
        var iterator = second.makeAsyncIterator()
        try await consume(&iterator, count: 5_000)
        #expect(processed.count == 10_000, "nothing was processed twice before the restart")

        // The server restarts under the live consumer, which re-issues its pulls and carries on
        // until it has seen every message (redeliveries take up iterations, so no fixed count).
        await server.stopped()
        try await server.restarted()
        var afterRestart = 0
        while processed.count < total && afterRestart < total {
            guard let message = try await iterator.next() else { Issue.record("iteration ended early"); break }
            try await process(message)
            afterRestart += 1
        }
        #expect(Set(processed.keys) == Set(0..<total), "none was lost")
        // A message processed twice was redelivered by the server: once as a first delivery,
        // then with a delivery count above 1.
        let twice = processed.filter { $0.value.count > 1 }
        for (payload, counts) in twice {
            #expect(counts.filter { $0 == 1 }.count <= 1, "message \(payload) was first delivered more than once: \(counts)")
            #expect(counts.dropFirst().allSatisfy { $0 > 1 }, "message \(payload) was processed again without being redelivered: \(counts)")
        }
        // Only what was still unacknowledged when the server stopped can come back: at most what
        // the consumer had requested ahead (one pull batch).
        #expect(twice.count <= options.batch, "\(twice.count) messages processed twice")
        try await connection.flush()
        let info = try await js.consumerInfo(stream: "WORK", name: "workers")
        #expect(info.ackFloor.streamSequence == UInt64(total))
        await connection.close()
    }

    /// A task slower than the server takes a whole window from the buffer at once. Its next
    /// pull request must go out while it works through that batch, not once it has finished
    /// it: otherwise the server has nothing requested and sits idle for a round trip per
    /// window. Seen from the server: past the window's first growth, it has always delivered
    /// more than the task has taken out.
    @Test(.timeLimit(.minutes(2)))
    func aSlowIterationAsksForMoreBeforeItsTakenBatchRunsOut() async throws {
        let (server, connection, js) = try await setUp(stream: "AHEAD", subjects: ["ahead.>"])
        defer { server.kill() }
        try await preload(js, subject: "ahead.item", count: 400)
        var configuration = NATSConsumerConfiguration(durableName: "ahead")
        configuration.maxAckPending = 1_000
        try await js.ensureConsumer(stream: "AHEAD", configuration)
        let consumer = try await js.pullConsumer(stream: "AHEAD", name: "ahead", options: .init(batch: 64))
        var iterator = consumer.makeAsyncIterator()
        var caughtUp: [Int] = []
        for handedOut in 1...320 {
            guard let message = try await iterator.next() else {
                Issue.record("iteration ended after \(handedOut - 1) messages")
                break
            }
            try message.ack()
            // Slower than the server, so each request is answered in full before the task
            // comes back for more.
            try await Task.sleep(for: .milliseconds(2))
            // The window reaches its full 64 within the first 60 messages.
            if handedOut > 128 {
                let info = try await js.consumerInfo(stream: "AHEAD", name: "ahead")
                if info.delivered.consumerSequence <= UInt64(handedOut) { caughtUp.append(handedOut) }
            }
        }
        #expect(caughtUp.isEmpty, "the server had delivered no more than the task had taken after message(s) \(caughtUp)")
        consumer.stopReturningUndelivered()
        await connection.close()
    }

    @Test func pullConsumerWithMaxAckPendingOneKeepsFlowing() async throws {
        let (server, connection, js) = try await setUp(stream: "ONE", subjects: ["one.>"])
        defer { server.kill() }
        var configuration = NATSConsumerConfiguration()
        configuration.maxAckPending = 1
        configuration.deliverPolicy = .new
        configuration.inactiveThreshold = .seconds(60)
        let info = try await js.ensureConsumer(stream: "ONE", configuration)
        let consumer = try await js.pullConsumer(stream: "ONE", name: info.name, options: .init(batch: 1))
        let received = Collected<String>()
        let task = Task {
            for try await message in consumer {
                received.append(message.payload.string)
                try message.ack()
            }
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for subject in 0..<4 {
                group.addTask {
                    for index in 0..<50 { _ = try await js.publish(subject: "one.\(subject)", payload: Array("\(subject):\(index)".utf8)) }
                }
            }
            try await group.waitForAll()
        }
        // One at a time: each pull is answered as soon as the previous message is acknowledged.
        #expect(await eventually(timeout: .seconds(8)) { received.count >= 200 })
        for subject in 0..<4 {
            let indexes = received.values.filter { $0.hasPrefix("\(subject):") }.map { Int($0.split(separator: ":")[1])! }
            #expect(indexes == Array(0..<50))
        }
        task.cancel()
        await connection.close()
    }

    @Test func nakWithDelayTermAndMaxDeliver() async throws {
        let (server, connection, js) = try await setUp(stream: "RETRY", subjects: ["retry.>"])
        defer { server.kill() }
        var configuration = NATSConsumerConfiguration(durableName: "retrier")
        configuration.ackWait = .seconds(1)
        configuration.maxDeliver = 3
        try await js.ensureConsumer(stream: "RETRY", configuration)
        let consumer = try await js.pullConsumer(
            stream: "RETRY", name: "retrier", options: .init(batch: 10, expires: .seconds(2), idleHeartbeat: .milliseconds(500)))

        // nak(delay:) redelivers after the delay, not before.
        _ = try await js.publish(subject: "retry.delay", payload: Array("delayed".utf8))
        let first = try #require(try await consumer.fetch(batch: 1, maxWait: .seconds(2)).first)
        let nakAt = ContinuousClock.now
        try first.nak(delay: .milliseconds(800))
        let again = try #require(try await consumer.fetch(batch: 1, maxWait: .seconds(3)).first)
        #expect(ContinuousClock.now - nakAt >= .milliseconds(700))
        #expect(again.metadata?.deliveryCount == 2)
        try again.ack()

        // term: never redelivered, even after the ack wait.
        _ = try await js.publish(subject: "retry.term", payload: Array("poison".utf8))
        let poison = try #require(try await consumer.fetch(batch: 1, maxWait: .seconds(2)).first)
        try poison.term(reason: "cannot parse")
        #expect(try await consumer.fetch(batch: 1, maxWait: .milliseconds(2_500)).isEmpty)

        // max deliver: three deliveries, then no more; the last one says it is the third.
        _ = try await js.publish(subject: "retry.max", payload: Array("flaky".utf8))
        var deliveryCounts: [UInt64] = []
        for _ in 0..<5 {
            guard let message = try await consumer.fetch(batch: 1, maxWait: .milliseconds(2_500)).first else { break }
            deliveryCounts.append(message.metadata?.deliveryCount ?? 0)
            try message.nak()
        }
        #expect(deliveryCounts == [1, 2, 3])
        let info = try await js.consumerInfo(stream: "RETRY", name: "retrier")
        #expect(info.ackPendingCount == 0)
        await connection.close()
    }

    @Test func actingTwiceOnAMessageIsAClearError() async throws {
        let (server, connection, js) = try await setUp(stream: "TWICE", subjects: ["twice.>"])
        defer { server.kill() }
        try await js.ensureConsumer(stream: "TWICE", NATSConsumerConfiguration(durableName: "c"))
        _ = try await js.publish(subject: "twice.a", payload: [1])
        let consumer = try await js.pullConsumer(stream: "TWICE", name: "c")
        let message = try #require(try await consumer.fetch(batch: 1, maxWait: .seconds(2)).first)
        try await message.ackSync()
        for attempt in [{ try message.ack() }, { try message.nak() }, { try message.term() }, { try message.inProgress() }] {
            let error = #expect(throws: NATSError.self) { try attempt() }
            #expect(error?.code == .alreadyAcknowledged, "\(String(describing: error))")
        }
        let metadata = try #require(message.metadata)
        #expect(metadata.stream == "TWICE" && metadata.consumer == "c" && metadata.streamSequence == 1)
        await connection.close()
    }

    @Test func copiesOfAMessageShareItsAcknowledgement() async throws {
        let (server, connection, js) = try await setUp(stream: "COPIES", subjects: ["copies.>"])
        defer { server.kill() }
        try await js.ensureConsumer(stream: "COPIES", NATSConsumerConfiguration(durableName: "c"))
        _ = try await js.publish(subject: "copies.a", payload: Array("one".utf8))
        _ = try await js.publish(subject: "copies.b", payload: Array("two".utf8))
        let consumer = try await js.pullConsumer(stream: "COPIES", name: "c")
        let messages = try await consumer.fetch(batch: 2, maxWait: .seconds(2))
        try #require(messages.count == 2)
        let message = messages[0]
        let copy = message
        let replyTo = try #require(message.replyTo)
        #expect(replyTo.hasPrefix("$JS.ACK.COPIES.c.1.1.1."))
        #expect(message.message.replyTo == replyTo && message.message.subject == "copies.a")
        #expect(message.message.payload.string == "one" && message.subject == "copies.a")
        let metadata = try #require(copy.metadata)
        #expect(metadata == NATSJetStreamMessage.Metadata(ackSubject: replyTo))
        #expect(metadata.stream == "COPIES" && metadata.consumer == "c")
        #expect(metadata.streamSequence == 1 && metadata.consumerSequence == 1 && metadata.deliveryCount == 1 && metadata.pending == 1)
        #expect(messages[1].metadata?.streamSequence == 2 && messages[1].replyTo != replyTo)

        try message.ack()
        #expect(copy.isAcknowledged && !messages[1].isAcknowledged)
        for attempt in [{ try copy.ack() }, { try copy.nak() }, { try copy.term() }, { try copy.inProgress() }] {
            let error = #expect(throws: NATSError.self) { try attempt() }
            #expect(error?.code == .alreadyAcknowledged, "\(String(describing: error))")
        }
        // A copy made before the other was acknowledged, acknowledged first, blocks the original.
        let second = messages[1]
        var copies = [second]
        copies.append(second)
        try await copies[1].ackSync()
        let error = #expect(throws: NATSError.self) { try second.term() }
        #expect(error?.code == .alreadyAcknowledged)
        let info = try await js.consumerInfo(stream: "COPIES", name: "c")
        #expect(info.ackPendingCount == 0 && info.ackFloor.streamSequence == 2)
        await connection.close()
    }

    /// Ack subjects live in the receiving slabs beside the payloads: a message held while
    /// thousands more are received (many slabs later) still acknowledges the right sequence.
    /// (The time limit cancels the test, ending a `next()` that waits for a message that never comes.)
    @Test(.timeLimit(.minutes(2)), arguments: [false, true])
    func acknowledgingTheFirstMessageLastAfterManyMore(push: Bool) async throws {
        let stream = push ? "LATEPUSH" : "LATEPULL"
        let (server, connection, js) = try await setUp(stream: stream, subjects: ["\(stream.lowercased()).>"])
        defer { server.kill() }
        let count = 5_000
        try await preload(js, subject: "\(stream.lowercased()).item", count: count)
        var configuration = NATSConsumerConfiguration(durableName: "late")
        configuration.maxAckPending = count
        var iterator: AnyConsumerIterator
        if push {
            configuration.deliverSubject = connection.newInbox()
            configuration.flowControl = true
            configuration.idleHeartbeat = .seconds(1)
            iterator = AnyConsumerIterator(try await js.pushConsumer(stream: stream, configuration: configuration).makeAsyncIterator())
        } else {
            try await js.ensureConsumer(stream: stream, configuration)
            let consumer = try await js.pullConsumer(stream: stream, name: "late", options: .init(batch: 300))
            iterator = AnyConsumerIterator(consumer.makeAsyncIterator())
        }
        let first = try #require(try await iterator.next())
        var sampled: [(Int, NATSJetStreamMessage)] = []
        for index in 2...count {
            let message = try #require(try await iterator.next())
            #expect(message.metadata?.streamSequence == UInt64(index))
            if index % 500 == 0 { sampled.append((index, message)) } else { try message.ack() }
        }
        for (index, message) in sampled {
            #expect(message.payload.string == "\(index - 1)")
            #expect(message.metadata?.consumerSequence == UInt64(index))
            try message.ack()
        }
        try await connection.flush()
        #expect(
            await eventually {
                let info = try? await js.consumerInfo(stream: stream, name: "late")
                return info?.ackPendingCount == 1 && info?.ackFloor.streamSequence == 0
            }, "everything but the first is acknowledged")
        #expect(first.payload.string == "0" && first.metadata?.streamSequence == 1)
        #expect(first.replyTo?.hasPrefix("$JS.ACK.\(stream).late.1.1.1.") == true)
        try first.ack()
        try await connection.flush()
        #expect(
            await eventually {
                let info = try? await js.consumerInfo(stream: stream, name: "late")
                return info?.ackPendingCount == 0 && info?.ackFloor.streamSequence == UInt64(count)
            }, "the first ack moved the ack floor to the end")
        await connection.close()
    }

    @Test func fetchOnAnEmptyConsumerReturnsAfterMaxWait() async throws {
        let (server, connection, js) = try await setUp(stream: "EMPTY", subjects: ["empty.>"])
        defer { server.kill() }
        try await js.ensureConsumer(stream: "EMPTY", NATSConsumerConfiguration(durableName: "idle"))
        let consumer = try await js.pullConsumer(stream: "EMPTY", name: "idle")
        var durations: [Duration] = []
        for _ in 0..<100 {
            let started = ContinuousClock.now
            let messages = try await consumer.fetch(batch: 10, maxWait: .milliseconds(50))
            durations.append(ContinuousClock.now - started)
            #expect(messages.isEmpty)
        }
        durations.sort()
        print("fetch(maxWait: 50 ms) on an empty consumer, 100 calls: median \(durations[50]), p90 \(durations[90]), slowest \(durations[99])")
        // Each call ends when the server expires the pull (408) or, as a safety net, 500 ms after
        // maxWait; the bounds leave room for a loaded machine (the slowest of 100 calls can meet a
        // stall of seconds) but not for a fetch that ignores its timeout (which would wait for
        // the server's default expiry or forever).
        #expect(durations[0] >= .milliseconds(45))
        #expect(durations[50] < .milliseconds(300))
        #expect(durations[99] < .seconds(5))

        try await preload(js, subject: "empty.x", count: 15)
        #expect(try await consumer.fetch(batch: 10, maxWait: .seconds(1)).count == 10)
        #expect(try await consumer.fetch(batch: 10, maxWait: .milliseconds(300)).count == 5)
        await connection.close()
    }

    @Test func pushConsumerWithDeliverGroupSplitsTheWork() async throws {
        let (server, connection, js) = try await setUp(stream: "PUSH", subjects: ["push.>"])
        defer { server.kill() }
        var configuration = NATSConsumerConfiguration(durableName: "billing")
        configuration.deliverGroup = "billing"
        configuration.flowControl = true
        configuration.idleHeartbeat = .seconds(1)
        configuration.maxAckPending = 256
        let members = try await (0..<3).asyncMap { _ in try await js.pushConsumer(stream: "PUSH", configuration: configuration) }
        #expect(Set(members.map(\.deliverSubject)).count == 1, "all members share one deliver subject")
        let received = (0..<3).map { _ in Collected<Int>() }
        let tasks = members.enumerated().map { index, member in
            Task {
                for try await message in member {
                    received[index].append(Int(message.payload.string)!)
                    try message.ack()
                }
            }
        }
        try await preload(js, subject: "push.order", count: 3_000)
        #expect(await eventually(timeout: .seconds(30)) { received.reduce(0) { $0 + $1.count } >= 3_000 })
        try await Task.sleep(for: .milliseconds(300))
        let all = received.flatMap(\.values)
        #expect(all.count == 3_000)
        #expect(Set(all) == Set(0..<3_000))
        for member in received { #expect(member.count > 0, "each member got a share") }
        try await connection.flush()
        #expect(await eventually { (try? await js.consumerInfo(stream: "PUSH", name: "billing").ackPendingCount) == 0 })
        for task in tasks { task.cancel() }
        await connection.close()
    }

    /// The handler form: messages in order on the delivery thread, acked from the handler, with
    /// flow control answered underneath (a small maxAckPending and a big backlog make the server
    /// ask for it); all acked at the end.
    @Test func pushConsumerWithHandlerReceivesInOrderAndAcks() async throws {
        let (server, connection, js) = try await setUp(stream: "HANDLER", subjects: ["handler.>"])
        defer { server.kill() }
        try await preload(js, subject: "handler.order", count: 2_000)
        var configuration = NATSConsumerConfiguration(durableName: "handler")
        configuration.flowControl = true
        configuration.idleHeartbeat = .seconds(1)
        configuration.maxAckPending = 100
        let received = Collected<Int>()
        let metadataSeen = Collected<UInt64>()
        let subscription = try await js.pushConsumer(stream: "HANDLER", configuration: configuration) { message in
            received.append(Int(message.payload.string)!)
            if let sequence = message.metadata?.streamSequence { metadataSeen.append(sequence) }
            try? message.ack()
        }
        #expect(await eventually(timeout: .seconds(30)) { received.count >= 2_000 })
        #expect(received.values == Array(0..<2_000), "in stream order, each once")
        #expect(metadataSeen.values == Array(1...2_000))
        try await connection.flush()
        #expect(await eventually { (try? await js.consumerInfo(stream: "HANDLER", name: "handler").ackPendingCount) == 0 })
        subscription.unsubscribe()
        await connection.close()
    }

    /// (The time limit cancels the test, ending a `next()` that waits for a message that never comes.)
    @Test(.timeLimit(.minutes(2)))
    func orderedConsumerReplaysInOrderAndRecoversFromALostConsumer() async throws {
        let (server, connection, js) = try await setUp(stream: "LOG", subjects: ["log.>"])
        defer { server.kill() }
        let publisher = try await js.makePublisher()
        for index in 0..<1_000 {
            _ = try await publisher.publish(subject: index % 2 == 0 ? "log.even" : "log.odd", payload: Array("\(index)".utf8))
        }
        await publisher.waitForPending()
        let ordered = try js.orderedConsumer(stream: "LOG", filterSubjects: ["log.even"], heartbeat: .milliseconds(500))
        var iterator = ordered.makeAsyncIterator()
        var values: [Int] = []
        for _ in 0..<500 { values.append(Int(try #require(try await iterator.next()).payload.string)!) }
        // Remove the consumer behind the iterator's back, then publish more: the iterator notices
        // the silence, recreates its consumer after the last sequence it saw, and carries on.
        #expect(try await js.streamInfo("LOG").state.consumerCount == 1)
        for consumerName in try await consumerNames(js, stream: "LOG") {
            try await js.deleteConsumer(stream: "LOG", name: consumerName)
        }
        for index in 1_000..<2_000 {
            _ = try await publisher.publish(subject: index % 2 == 0 ? "log.even" : "log.odd", payload: Array("\(index)".utf8))
        }
        await publisher.waitForPending()
        for _ in 0..<500 { values.append(Int(try #require(try await iterator.next()).payload.string)!) }
        #expect(values == Array(stride(from: 0, to: 2_000, by: 2)))
        #expect(iterator.recreations >= 1)
        await connection.close()
    }

    /// Names of the stream's consumers, through the JetStream API.
    func consumerNames(_ js: NATSJetStream, stream: String) async throws -> [String] {
        let reply = try await js.connection.request(subject: "$JS.API.CONSUMER.NAMES.\(stream)", payload: Array("{}".utf8))
        struct Names: Decodable { var consumers: [String]? }
        return try JSONDecoder().decode(Names.self, from: Data(reply.payload.bytes)).consumers ?? []
    }
}

/// A pull or a push consumer's iterator, behind one type for tests that run on both.
struct AnyConsumerIterator {
    private var pull: NATSPullConsumer.Iterator?
    private var push: NATSPushConsumer.Iterator?

    init(_ iterator: NATSPullConsumer.Iterator) { pull = iterator }
    init(_ iterator: NATSPushConsumer.Iterator) { push = iterator }

    mutating func next() async throws -> NATSJetStreamMessage? {
        if pull != nil { return try await pull!.next() }
        return try await push!.next()
    }
}

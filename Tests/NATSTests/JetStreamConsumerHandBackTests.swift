import Foundation
import NATS
import NATSTestSupport
import Testing

/// What a consumer does with messages it received but never handed out, and core subscriptions
/// added to a consumer's sequence.
@Suite("JetStream consumers: hand-back and added core subscriptions", .tags(.server))
struct JetStreamConsumerHandBackTests {
    func setUp(ackWait: Duration = .seconds(60)) async throws -> (NATSServerProcess, NATSConnection, NATSJetStream) {
        let server = try await NATSServerProcess.started()
        let connection = try await connect(to: server)
        let js = connection.jetStream()
        try await js.ensureStream(NATSStreamConfiguration(name: "JOBS", subjects: ["jobs.>"]))
        let publisher = try await js.makePublisher()
        var pending: [NATSPendingPublish] = []
        for index in 0..<100 { pending.append(try await publisher.publish(subject: "jobs.run", payload: Array("\(index)".utf8))) }
        for publish in pending { _ = try await publish.ack() }
        await publisher.close()
        var configuration = NATSConsumerConfiguration(durableName: "runners")
        configuration.ackWait = ackWait
        try await js.ensureConsumer(stream: "JOBS", configuration)
        return (server, connection, js)
    }

    /// An iterator that took a batch and is dropped after one message hands the rest of that batch
    /// back at once. Messages still in the subscription's buffer (not taken by an iterator) go back
    /// at once too with ``NATSPullConsumer/stopReturningUndelivered()``, and after their ack wait
    /// with ``NATSPullConsumer/stop()``: how many that is depends on how the batch arrived, so the
    /// test reads it from the consumer's health.
    @Test(arguments: [false, true])
    func aDroppedIteratorHandsBackItsTakenBatch(stopConsumer: Bool) async throws {
        let ackWait = Duration.seconds(4)
        let (server, connection, js) = try await setUp(ackWait: ackWait)
        defer { server.kill() }
        let options = NATSPullConsumer.Options(batch: 100, expires: .seconds(10), idleHeartbeat: .seconds(2))
        let first = try await js.pullConsumer(stream: "JOBS", name: "runners", options: options)
        try await withDeadline(.seconds(30), "the first of the 100 messages") {
            var iterator = first.makeAsyncIterator()
            let message = try #require(try await iterator.next())
            try message.ack()
            // Let the rest of the batch arrive.
            try await Task.sleep(for: .milliseconds(300))
        }
        let untaken = first.health.buffered
        if stopConsumer { first.stopReturningUndelivered() } else { first.stop() }
        let stoppedAt = ContinuousClock.now
        let second = try await js.pullConsumer(stream: "JOBS", name: "runners", options: options)
        let deadline = stoppedAt + ackWait + .seconds(6)
        // The deadline is checked between messages; this bounds a next() that waits for one that never comes.
        let (received, receivedAtOnce) = try await withDeadline(.seconds(60), "the 99 messages the first instance did not handle") {
            var received = Set<Int>()
            var receivedAtOnce = 0
            var iterator = second.makeAsyncIterator()
            while received.count < 99 && ContinuousClock.now < deadline {
                guard let message = try await iterator.next() else { break }
                received.insert(Int(message.payload.string)!)
                // Well before the ack wait: handed back, not redelivered by the server.
                if ContinuousClock.now - stoppedAt < ackWait / 2 { receivedAtOnce += 1 }
                try message.ack()
            }
            return (received, receivedAtOnce)
        }
        #expect(received.count == 99, "another instance got \(received.count) of the 99")
        let expectedAtOnce = stopConsumer ? 99 : 99 - untaken
        #expect(receivedAtOnce >= expectedAtOnce, "\(receivedAtOnce) came back at once; \(untaken) were never taken")
        second.stop()
        await connection.close()
    }

    /// A message the server had delivered before goes back after the consumer's ack wait, not at
    /// once: members that start and stop quickly while it waits must not use up its attempts
    /// before a handler sees it. (A first delivery goes back at once: see the test above.)
    @Test func aRedeliveredMessageIsHandedBackAfterTheAckWait() async throws {
        let server = try await NATSServerProcess.started()
        defer { server.kill() }
        let connection = try await connect(to: server)
        let js = connection.jetStream()
        try await js.ensureStream(NATSStreamConfiguration(name: "RETRY", subjects: ["retry.>"]))
        _ = try await js.publish(subject: "retry.one", payload: Array("one".utf8))
        var configuration = NATSConsumerConfiguration(durableName: "retriers")
        configuration.ackWait = .seconds(4)
        try await js.ensureConsumer(stream: "RETRY", configuration)
        let options = NATSPullConsumer.Options(batch: 10, expires: .seconds(10))

        let first = try await js.pullConsumer(stream: "RETRY", name: "retriers", options: options)
        try await withDeadline(.seconds(30), "the message on 'retry.one'") {
            var iterator = first.makeAsyncIterator()
            let message = try #require(try await iterator.next())
            #expect(message.metadata?.deliveryCount == 1)
            // Redelivered at once into this consumer's open request, where nobody takes it.
            try message.nak()
            try await Task.sleep(for: .milliseconds(300))
        }
        let handedBack = ContinuousClock.now
        first.stopReturningUndelivered()

        let second = try await js.pullConsumer(stream: "RETRY", name: "retriers", options: options)
        let redelivered = try await withDeadline(.seconds(60), "the message back after its 4 s ack wait") {
            var iterator = second.makeAsyncIterator()
            return try await iterator.next()
        }
        let message = try #require(redelivered)
        let waited = ContinuousClock.now - handedBack
        #expect(message.metadata?.deliveryCount == 3)
        #expect(waited >= .seconds(3), "handed back after \(waited), not after the 4 s ack wait")
        try message.ack()
        second.stop()
        await connection.close()
    }

    /// Core messages of an added subscription come through the same loop as the stream's, without
    /// JetStream metadata; stopping the consumer ends the added subscription too.
    @Test func anAddedCoreSubscriptionSharesTheConsumersSequence() async throws {
        let (server, connection, js) = try await setUp()
        defer { server.kill() }
        let consumer = try await js.pullConsumer(stream: "JOBS", name: "runners", options: .init(batch: 10))
        try await consumer.addCoreSubscription(to: "jobs-control.>", queueGroup: "runners")
        try connection.publish(subject: "jobs-control.pause", payload: Array("pause".utf8))
        let deadline = ContinuousClock.now + .seconds(10)
        // The deadline is checked between messages; this bounds a next() that waits for one that never comes.
        let (stream, core) = try await withDeadline(.seconds(60), "the 100 stream messages and the core one") {
            var stream = 0
            var core: [String] = []
            var iterator = consumer.makeAsyncIterator()
            while (stream < 100 || core.isEmpty) && ContinuousClock.now < deadline {
                guard let message = try await iterator.next() else { break }
                if message.metadata == nil {
                    core.append(message.subject)
                } else {
                    stream += 1
                    try message.ack()
                }
            }
            return (stream, core)
        }
        #expect(stream == 100)
        #expect(core == ["jobs-control.pause"])
        consumer.stop()
        // The added subscription ended with the consumer: nobody listens on its subject now.
        await #expect(throws: NATSError.self) { _ = try await connection.request(subject: "jobs-control.status", timeout: .seconds(2)) }
        await connection.close()
    }
}

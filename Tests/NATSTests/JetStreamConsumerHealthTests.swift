import NATS
import NATSTestSupport
import Testing

/// The consumers' own health snapshots and recovery events, without the EventBus.
@Suite("JetStream consumer health", .serialized)
struct JetStreamConsumerHealthTests {
    @Test func aPullConsumerReportsPendingRedeliveriesHeartbeatsAndAMissedHeartbeat() async throws {
        let server = try await NATSServerProcess.started()
        defer {
            server.resume()
            server.stop()
        }
        let connection = try await NATSConnection.connect(configuration: try NATSConnectionConfiguration(servers: [server.url]))
        let js = connection.jetStream()
        try await js.ensureStream(NATSStreamConfiguration(name: "HEALTH", subjects: ["health.>"]))
        var configuration = NATSConsumerConfiguration(durableName: "checker")
        configuration.ackWait = .seconds(5)
        try await js.ensureConsumer(stream: "HEALTH", configuration)
        let consumer = try await js.pullConsumer(
            stream: "HEALTH", name: "checker", options: .init(batch: 4, expires: .seconds(2), idleHeartbeat: .milliseconds(300)))
        #expect(consumer.health.state == .running)
        #expect(consumer.health.lastMessageAge == nil)
        #expect(consumer.health.pending == nil)
        for index in 0..<3 { _ = try await js.publish(subject: "health.a", payload: Array("\(index)".utf8)) }
        // Every wait below is for a message or an event; stopping the consumer ends the waiter's next().
        let received = try await withDeadline(
            .seconds(60), "the messages, heartbeats and recovery event of 'checker'", onTimeout: { consumer.stop() }
        ) {
            let events = consumer.recoveryEvents

            var iterator = consumer.makeAsyncIterator()
            let first = try #require(try await iterator.next())
            try first.nak()
            var seen = 1
            var redelivered = false
            while seen < 4, let message = try await iterator.next() {
                seen += 1
                if message.metadata?.deliveryCount == 2 { redelivered = true }
                try message.ack()
            }
            #expect(redelivered)
            let health = consumer.health
            #expect(health.stream == "HEALTH")
            #expect(health.consumer == "checker")
            #expect(health.redeliveries == 1)
            #expect(health.pending == 0)
            #expect(health.lastMessageAge != nil)

            // Idle with a pull request open: heartbeats arrive while the iterator waits.
            let waiter = Task { [iterator] in
                var iterator = iterator
                return try await iterator.next()
            }
            #expect(await eventually { consumer.health.lastHeartbeatAge != nil })
            // The server stops answering: the consumer misses heartbeats, says so, and re-issues.
            server.pause()
            var eventIterator = events.makeAsyncIterator()
            let event = try #require(await eventIterator.next())
            #expect(event.reason == .heartbeatMissed)
            #expect(event.consumer == "checker")
            #expect(await eventually { [.recovering, .stalled].contains(consumer.health.state) })
            #expect(consumer.health.recoveries >= 1)
            server.resume()
            _ = try await js.publish(subject: "health.a", payload: Array("after".utf8))
            return try await waiter.value
        }
        let after = try #require(received)
        #expect(after.payload.bytes == Array("after".utf8))
        try after.ack()
        #expect(await eventually { consumer.health.state == .running })
        consumer.stop()
        #expect(consumer.health.state == .stopped)
        await connection.close()
    }
}

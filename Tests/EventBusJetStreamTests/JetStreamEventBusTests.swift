import EventBus
import EventBusJetStream
import Foundation
import Logging
import NATS
import NATSTestSupport
import ServiceLifecycle
import ServiceLifecycleTestKit
import Testing

@Suite("JetStreamEventBus beyond the conformance suite")
struct JetStreamEventBusTests {
    static func bus(_ server: NATSServerProcess) throws -> JetStreamEventBus {
        var connection = try NATSConnectionConfiguration(servers: [server.url])
        connection.reconnect.wait = .milliseconds(100)
        connection.reconnect.maxAttempts = .unlimited
        var logger = Logger(label: "test.bus")
        logger.logLevel = .warning
        return JetStreamEventBus(configuration: .init(connection: connection), logger: logger)
    }

    @Test func aSubscriptionKeepsReceivingAcrossAServerRestart() async throws {
        let server = try await NATSServerProcess.started()
        defer { server.kill() }
        let bus = try Self.bus(server)
        let subscription = try await bus.subscribe("restart.>", options: .init(group: "workers"))
        let received = Collected<String>()
        let consumer = Task {
            for try await delivery in subscription {
                received.append(String(decoding: delivery.event.data, as: UTF8.self))
                try await delivery.ack()
            }
        }
        for index in 0..<50 {
            try await bus.publish(Event(subject: "restart.before", type: "t", source: "/test", data: Array("\(index)".utf8)))
        }
        #expect(await eventually { received.count >= 50 })
        await server.stopped()
        try await server.restarted()
        // Publishing retries until the stream has a leader again; the same subscription carries on.
        for index in 50..<100 {
            let event = Event(subject: "restart.after", type: "t", source: "/test", data: Array("\(index)".utf8))
            var stored = false
            for _ in 0..<50 where !stored {
                do {
                    try await bus.publish(event)
                    stored = true
                } catch let error as EventBusError where error.isRetriable {
                    try await Task.sleep(for: .milliseconds(200))
                }
            }
            #expect(stored)
        }
        #expect(await eventually(timeout: .seconds(30)) { received.count >= 100 }, "received \(received.count)")
        #expect(Set(received.values) == Set((0..<100).map(String.init)))
        consumer.cancel()
        await bus.close()
    }

    @Test func runsAsAServiceAndDrainsOnGracefulShutdown() async throws {
        let server = try await NATSServerProcess.started()
        defer { server.kill() }
        let bus = try Self.bus(server)
        try await testGracefulShutdown { trigger in
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await bus.run() }
                let receipt = try await bus.publish(Event(subject: "service.check", type: "t", source: "/test"))
                #expect(receipt.sequence == 1)
                trigger.triggerGracefulShutdown()
                try await group.waitForAll()
            }
        }
        await #expect(throws: EventBusError.self) {
            try await bus.publish(Event(subject: "service.after", type: "t", source: "/test"))
        }
        // What was published before the shutdown is stored.
        let reader = try await NATSConnection.connect(configuration: try NATSConnectionConfiguration(servers: [server.url]))
        #expect(try await reader.jetStream().streamInfo("EVENTS").state.messages == 1)
        await reader.close()
    }

    @Test func badConfigurationFailsAtStart() async throws {
        var configuration = JetStreamEventBus.Configuration(connection: try NATSConnectionConfiguration())
        configuration.streamName = "bad.name"
        let bus = JetStreamEventBus(configuration: configuration)
        let error = await #expect(throws: EventBusError.self) { try await bus.start() }
        #expect(error?.code == .invalidOption)
        #expect(error?.message.contains("bad.name") == true)
    }
}

@Suite("JetStreamEventBus dead letters after an expired last attempt")
struct JetStreamMaxDeliveriesTests {
    @Test func anEventWhoseLastAckWaitExpiresIsDeadLettered() async throws {
        let server = try await NATSServerProcess.started()
        defer { server.kill() }
        let bus = try JetStreamEventBusTests.bus(server)
        // run() owns the work that turns the server's max-deliveries advisory into the dead letter.
        let running = Task { try await bus.run() }
        let deadLetters = try await bus.subscribe("deadletter.>", options: .init(group: "ops"))
        let options = SubscriptionOptions(group: "workers", ackWait: .seconds(1), maxDeliver: 2)
        let work = try await bus.subscribe("slow.job", options: options)
        let attempts = Collected<Int>()
        // A worker that takes every delivery and never settles it (as if it crashed each time).
        let worker = Task {
            for try await delivery in work { attempts.append(delivery.deliveryCount) }
        }
        let job = Event(subject: "slow.job", type: "job", source: "/test", data: Array("payload".utf8))
        try await bus.publish(job)
        // next() waits for the dead letter, which comes only after two ack waits and the server's advisory.
        let received = try await withDeadline(.seconds(30), "the dead letter of 'slow.job'") {
            var iterator = deadLetters.makeAsyncIterator()
            return try await iterator.next()
        }
        let deadLetter = try #require(received)
        #expect(deadLetter.event.subject == "deadletter.slow.job")
        #expect(deadLetter.event.id == job.id)
        #expect(deadLetter.event.data == job.data)
        #expect(deadLetter.event.extensions[DeadLetter.subjectHeader] == "slow.job")
        #expect(deadLetter.event.extensions[DeadLetter.attemptsHeader] == "2")
        #expect(deadLetter.event.extensions[DeadLetter.groupHeader] == "workers")
        #expect(deadLetter.event.extensions[DeadLetter.errorHeader]?.contains("ack wait") == true)
        #expect(attempts.values == [1, 2])
        try await deadLetter.ack()
        worker.cancel()
        await bus.close()
        try await withDeadline(.seconds(30), "run() after the bus closed", onTimeout: { running.cancel() }) {
            try await running.value
        }
    }
}

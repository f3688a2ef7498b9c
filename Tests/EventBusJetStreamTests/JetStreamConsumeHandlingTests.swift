import EventBus
import EventBusJetStream
import Foundation
import Logging
import NATS
import NATSTestSupport
import Testing

/// `consume`'s handler options where JetStream's bus configuration stands in for the library's defaults.
@Suite("JetStreamEventBus consume handling")
struct JetStreamConsumeHandlingTests {
    static func bus(_ server: NATSServerProcess, _ adjust: (inout JetStreamEventBus.Configuration) -> Void) throws -> JetStreamEventBus {
        var connection = try NATSConnectionConfiguration(servers: [server.url])
        connection.reconnect.wait = .milliseconds(100)
        var configuration = JetStreamEventBus.Configuration(connection: connection)
        adjust(&configuration)
        var logger = Logger(label: "test.bus")
        logger.logLevel = .warning
        return JetStreamEventBus(configuration: configuration, logger: logger)
    }

    @Test func handlerConcurrencyAboveTheBusMaxAckPendingIsRejectedNamingIt() async throws {
        let server = try await NATSServerProcess.started()
        defer { server.kill() }
        let bus = try Self.bus(server) { $0.maxAckPending = 2 }
        do {
            // maxInFlight keeps the library default, so the bus's maxAckPending is what limits.
            _ = try await bus.subscribe("limited", options: .init(group: "workers", handlerConcurrency: 3))
            Issue.record("handlerConcurrency 3 accepted with maxAckPending 2")
        } catch let error as EventBusError {
            #expect(error.code == .invalidOption)
            #expect(error.message.contains("handlerConcurrency 3 exceeds maxAckPending 2"), "\(error.message)")
        }
        // An explicit maxInFlight is the consumer's MaxAckPending and allows it.
        let subscription = try await bus.subscribe("limited", options: .init(maxInFlight: 4, handlerConcurrency: 3))
        await subscription.close()
        await bus.close()
    }

    @Test func theBusAckWaitDrivesTheExtensionWhenOptionsKeepTheDefault() async throws {
        let server = try await NATSServerProcess.started()
        defer { server.kill() }
        // The consumer's ack wait is the bus's 2 s, not the options' default 30 s: in-progress must come
        // within two seconds (the extension sends it after one, leaving a loaded machine a second).
        let bus = try Self.bus(server) { $0.ackWait = .seconds(2) }
        let options = SubscriptionOptions(group: "slow")
        let attempts = Collected<Int>()
        let finished = Collected<Bool>()
        let subscription = try await bus.subscribe("slow.work", options: options)
        let consumer = Task {
            try await bus.consume(subscription, options: options) { delivery in
                attempts.append(delivery.deliveryCount)
                if attempts.count == 1 { try await Task.sleep(for: .seconds(5)) }
                finished.append(true)
            }
        }
        try await bus.publish(Event(subject: "slow.work", type: "t", source: "/test", data: Array("x".utf8)))
        #expect(await eventually(timeout: .seconds(20)) { finished.count >= 1 })
        // A redelivery would arrive within one ack wait of the expiry.
        try await Task.sleep(for: .milliseconds(2_500))
        #expect(attempts.values == [1], "attempts: \(attempts.values)")
        consumer.cancel()
        try await withDeadline(.seconds(30), "consume() after its task was cancelled", onTimeout: { await bus.close() }) {
            _ = await consumer.result
        }
        await bus.close()
    }
}

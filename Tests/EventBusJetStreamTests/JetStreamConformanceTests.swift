import EventBus
import Foundation
import EventBusConformance
import EventBusJetStream
import Logging
import NATS
import NATSTestSupport
import Testing

/// The JetStream bus against the whole conformance suite, each check with its own nats-server.
@Suite("JetStreamEventBus conformance", .serialized)
struct JetStreamConformanceTests {
    /// Buses and the server each was made for, so that `restart` can restart the right server.
    final class Servers: @unchecked Sendable {
        private let lock = NSLock()
        private var byBus: [ObjectIdentifier: NATSServerProcess] = [:]

        func register(_ server: NATSServerProcess, for bus: JetStreamEventBus) {
            lock.withLock { byBus[ObjectIdentifier(bus)] = server }
        }

        func server(for bus: any EventBus) -> NATSServerProcess? {
            guard let bus = bus as? JetStreamEventBus else { return nil }
            return lock.withLock { byBus[ObjectIdentifier(bus)] }
        }

        func remove(_ bus: any EventBus) -> NATSServerProcess? {
            guard let bus = bus as? JetStreamEventBus else { return nil }
            return lock.withLock { byBus.removeValue(forKey: ObjectIdentifier(bus)) }
        }
    }

    static let servers = Servers()

    static func makeBus(on server: NATSServerProcess, groupConsumer: JetStreamEventBus.GroupConsumerKind = .pull) throws -> JetStreamEventBus {
        var connection = try NATSConnectionConfiguration(servers: [server.url])
        connection.reconnect.wait = .milliseconds(100)
        connection.reconnect.maxAttempts = .unlimited
        var configuration = JetStreamEventBus.Configuration(connection: connection)
        configuration.storage = .file
        configuration.groupConsumer = groupConsumer
        // Subscriptions that keep the default ack wait: an event in flight to a subscriber that
        // closed comes back within a check's step timeout (20 s) instead of after 30 s.
        configuration.ackWait = .seconds(5)
        var logger = Logger(label: "conformance.jetstream")
        logger.logLevel = .warning
        let bus = JetStreamEventBus(configuration: configuration, logger: logger)
        servers.register(server, for: bus)
        // As a service would: run() owns the bus's background work (dead letters of expired
        // last attempts) and ends when the bus is closed.
        Task { try? await bus.run() }
        return bus
    }

    static func harness(groupConsumer: JetStreamEventBus.GroupConsumerKind) -> EventBusConformanceHarness {
        EventBusConformanceHarness(
        timing: ConformanceTiming(ackWait: .seconds(1), quietPeriod: .milliseconds(300), stepTimeout: .seconds(20)),
        makeBus: {
            let server = try await NATSServerProcess.started()
            let bus = try makeBus(on: server, groupConsumer: groupConsumer)
            try await bus.start()
            return bus
        },
        connect: { bus in
            guard let server = servers.server(for: bus) else { throw EventBusError(.invalidOption, "unknown bus") }
            let client = try makeBus(on: server, groupConsumer: groupConsumer)
            try await client.start()
            return client
        },
        restart: { bus in
            guard let server = servers.server(for: bus) else { throw EventBusError(.invalidOption, "unknown bus") }
            await bus.close()
            await server.stopped()
            try await server.restarted()
            let restarted = try makeBus(on: server, groupConsumer: groupConsumer)
            try await restarted.start()
            return restarted
        },
        teardown: { bus in
            await bus.close()
            servers.remove(bus)?.kill()
        }
        )
    }

    /// Groups as durable pull consumers (the default).
    @Test(arguments: EventBusConformance.checks)
    func conformance(_ check: EventBusConformance.Check) async throws {
        try await EventBusConformance.run(check, harness: Self.harness(groupConsumer: .pull), size: .short)
    }

    /// Groups as durable push consumers with a deliver group.
    @Test(arguments: EventBusConformance.checks)
    func conformancePushGroups(_ check: EventBusConformance.Check) async throws {
        try await EventBusConformance.run(check, harness: Self.harness(groupConsumer: .push), size: .short)
    }
}

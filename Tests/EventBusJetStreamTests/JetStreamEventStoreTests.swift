import EventBus
import EventBusConformance
import EventBusJetStream
import Foundation
import Logging
import NATS
import NATSTestSupport
import Synchronization
import Testing

/// The JetStream event store: the conformance suite (each check with its own server), and what only
/// JetStream has: the stream's settings, atomic batches at the server, the per-aggregate limit, two
/// processes' stores on one aggregate, and replays that leave no consumer behind.
@Suite("JetStreamEventStore")
struct JetStreamEventStoreTests {
    /// A store, its connection and its server, so that restart and teardown reach them.
    final class Fixture: Sendable {
        let server: NATSServerProcess
        let connection: NATSConnection
        let store: JetStreamEventStore

        init(server: NATSServerProcess, connection: NATSConnection, store: JetStreamEventStore) {
            self.server = server
            self.connection = connection
            self.store = store
        }
    }

    static let fixtures = Mutex<[ObjectIdentifier: Fixture]>([:])

    static func connect(_ server: NATSServerProcess) async throws -> NATSConnection {
        var configuration = try NATSConnectionConfiguration(servers: [server.url])
        configuration.reconnect.wait = .milliseconds(100)
        configuration.reconnect.maxAttempts = .unlimited
        var logger = Logger(label: "test.eventstore")
        logger.logLevel = .warning
        return try await NATSConnection.connect(configuration: configuration, logger: logger)
    }

    static func open(
        _ server: NATSServerProcess, _ adjust: (inout JetStreamEventStore.Configuration) -> Void = { _ in }
    ) async throws -> Fixture {
        let connection = try await connect(server)
        var configuration = JetStreamEventStore.Configuration()
        adjust(&configuration)
        let store = try await JetStreamEventStore.open(on: connection, configuration: configuration)
        let fixture = Fixture(server: server, connection: connection, store: store)
        fixtures.withLock { $0[ObjectIdentifier(store)] = fixture }
        return fixture
    }

    static func fixture(of store: any EventStore) -> Fixture? {
        guard let store = store as? JetStreamEventStore else { return nil }
        return fixtures.withLock { $0.removeValue(forKey: ObjectIdentifier(store)) }
    }

    static let harness = EventStoreConformanceHarness(
        makeStore: { try await open(try await NATSServerProcess.started()).store },
        restart: { store in
            guard let fixture = fixture(of: store) else { throw EventStoreError(.invalidArgument, "unknown store") }
            await fixture.store.close()
            await fixture.connection.close()
            await fixture.server.stopped()
            try await fixture.server.restarted()
            return try await open(fixture.server).store
        },
        teardown: { store in
            await store.close()
            if let fixture = fixture(of: store) {
                await fixture.connection.close()
                fixture.server.kill()
            }
        })

    @Test(arguments: EventStoreConformance.checks)
    func conformance(_ check: EventStoreConformance.Check) async throws {
        try await EventStoreConformance.run(check, harness: Self.harness)
    }

    @Test func theStreamKeepsEventsAndTakesAtomicBatches() async throws {
        let server = try await NATSServerProcess.started()
        defer { server.kill() }
        let fixture = try await Self.open(server) { $0.maxEventsPerAggregate = 500 }
        let info = try await fixture.connection.jetStream().streamInfo("EVENTSTORE")
        #expect(info.configuration.subjects == ["store.>"])
        #expect(info.configuration.maxAge == .zero, "an event store must not expire events")
        #expect(info.configuration.maxMessagesPerSubject == 500)
        #expect(info.configuration.discard == .new, "the limit refuses appends instead of dropping old events")
        #expect(info.configuration.additionalFields["allow_atomic"] == .bool(true))
        #expect(info.configuration.additionalFields["discard_new_per_subject"] == .bool(true))

        // What travels: the CloudEvents headers, the version and the id as the duplicate key.
        let order = try AggregateID(category: "order", id: "o-1")
        let placed = Event(subject: "orders.placed", type: "order.placed", source: "/shop eu/zürich", data: Array("{}".utf8))
        try await fixture.store.append([placed], to: order, expectedVersion: .noEvents)
        let stored = try #require(try await fixture.connection.jetStream().lastMessage(stream: "EVENTSTORE", subject: "store.order.o-1"))
        #expect(stored.headers["EventStore-Version"] == "1")
        #expect(stored.headers["Nats-Msg-Id"] == "order.o-1.\(placed.id)", "the duplicate key names the aggregate")
        #expect(stored.headers["ce-type"] == "order.placed")
        #expect(stored.headers["ce-source"] == "/shop%20eu/z%C3%BCrich", "ce-* values are percent-encoded on the wire")
        #expect(stored.headers["ce-subject"] == "orders.placed")
        #expect(try await fixture.store.load(order).first?.event.source == "/shop eu/zürich")
        await fixture.store.close()
        await fixture.connection.close()
    }

    @Test func aBatchRefusedAtTheServerStoresNothing() async throws {
        let server = try await NATSServerProcess.started()
        defer { server.kill() }
        let writer = try await Self.open(server)
        let other = try await Self.open(server)
        let order = try AggregateID(category: "order", id: "o-2")
        try await writer.store.append([makeStoreEvent(0)], to: order, expectedVersion: .noEvents)
        // The writer remembers version 1; another process appends, so the writer's batch goes out
        // with a stale expected sequence and the server refuses all of it.
        try await other.store.append([makeStoreEvent(1)], to: order, expectedVersion: .exactly(1))
        do {
            try await writer.store.append((2..<12).map(makeStoreEvent), to: order, expectedVersion: .exactly(1))
            Issue.record("a stale batch was stored")
        } catch {
            #expect(error.code == .conflict && error.currentVersion == 2, "\(error)")
        }
        let history = try await writer.store.load(order)
        #expect(history.map(\.version) == [1, 2], "a refused batch left events: \(history.map(\.version))")
        // With the right version the whole batch goes in, in order.
        let result = try await writer.store.append((2..<12).map(makeStoreEvent), to: order, expectedVersion: .exactly(2))
        #expect(result.firstVersion == 3 && result.version == 12)
        #expect(try await other.store.load(order, from: 3).map { $0.event.extensions["n"] } == (2..<12).map { "\($0)" })
        for fixture in [writer, other] {
            await fixture.store.close()
            await fixture.connection.close()
        }
    }

    @Test func anAppendPastTheAggregateLimitIsRefusedWhole() async throws {
        let server = try await NATSServerProcess.started()
        defer { server.kill() }
        let fixture = try await Self.open(server) { $0.maxEventsPerAggregate = 5 }
        let full = try AggregateID(category: "order", id: "full")
        try await fixture.store.append((0..<4).map(makeStoreEvent), to: full, expectedVersion: .noEvents)
        do {
            try await fixture.store.append((4..<6).map(makeStoreEvent), to: full, expectedVersion: .exactly(4))
            Issue.record("an append past the limit was stored")
        } catch {
            #expect(error.code == .limitReached, "\(error)")
            #expect(error.message.contains("5"), "the message does not name the limit: \(error.message)")
        }
        #expect(try await fixture.store.version(of: full) == 4, "part of the refused batch was stored")
        try await fixture.store.append([makeStoreEvent(4)], to: full, expectedVersion: .exactly(4))
        try await fixture.store.append([makeStoreEvent(0)], to: try AggregateID(category: "order", id: "other"), expectedVersion: .noEvents)
        await fixture.store.close()
        await fixture.connection.close()
    }

    @Test func aStreamWithoutAtomicBatchesIsRefusedAtOpenNamingIt() async throws {
        let server = try await NATSServerProcess.started()
        defer { server.kill() }
        let connection = try await Self.connect(server)
        var stream = NATSStreamConfiguration(name: "EVENTSTORE", subjects: ["store.>"])
        stream.storage = .memory
        _ = try await connection.jetStream().createStream(stream)
        _ = try await connection.jetStream().ensureKeyValue(NATSKeyValueConfiguration(bucket: "EVENTSTORE_SNAPSHOTS"))
        var configuration = JetStreamEventStore.Configuration()
        configuration.provision = false
        do {
            _ = try await JetStreamEventStore.open(on: connection, configuration: configuration)
            Issue.record("a stream without allow_atomic was accepted: its batches would not be all or nothing")
        } catch {
            #expect(error.code == .unavailable && error.message.contains("allow_atomic") && !error.isRetriable, "\(error)")
        }
        // With provisioning the store adds allow_atomic to the operator's stream and changes nothing else.
        let store = try await JetStreamEventStore.open(on: connection)
        let live = try await connection.jetStream().streamInfo("EVENTSTORE").configuration
        #expect(live.additionalFields["allow_atomic"] == .bool(true) && live.storage == .memory && live.subjects == ["store.>"])
        let order = try AggregateID(category: "order", id: "o-3")
        try await store.append((0..<4).map(makeStoreEvent), to: order, expectedVersion: .noEvents)
        #expect(try await store.version(of: order) == 4)
        await store.close()
        await connection.close()
    }

    @Test func replaysLeaveNoConsumerBehind() async throws {
        let server = try await NATSServerProcess.started()
        defer { server.kill() }
        let fixture = try await Self.open(server)
        let order = try AggregateID(category: "order", id: "o-4")
        try await fixture.store.append((0..<50).map(makeStoreEvent), to: order, expectedVersion: .noEvents)
        _ = try await fixture.store.load(order)
        _ = try await fixture.store.load(order, from: 40)
        _ = try await fixture.store.query(EventQuery(category: "order", limit: 3))
        _ = try await fixture.store.count(EventQuery(types: ["t"]))
        let subscription = try await fixture.store.subscribe(to: order, from: 1)
        _ = try await withDeadline(.seconds(30), "the first of the 50 stored events") {
            var iterator = subscription.makeAsyncIterator()
            return try await iterator.next()
        }
        // Cancelled while nobody waits in next(): the cancel itself removes the consumer.
        await subscription.cancel()
        // Cancelled while a reader waits for the next event: the reader ends and removes it.
        let waiting = try await fixture.store.subscribe(to: order, from: 51)
        let reader = Task { () -> RecordedEvent? in
            var iterator = waiting.makeAsyncIterator()
            return try await iterator.next()
        }
        try await Task.sleep(for: .milliseconds(300))
        await waiting.cancel()
        let read = try await withDeadline(.seconds(30), "the end of the cancelled subscription's next()", onTimeout: { reader.cancel() }) {
            try await reader.value
        }
        #expect(read == nil, "a cancelled subscription returned an event")
        // Dropped without cancel() after reading: releasing it asks the server to delete its consumer.
        do {
            let dropped = try await fixture.store.subscribe(to: order, from: 1)
            _ = try await withDeadline(.seconds(30), "the first event of the subscription to drop") {
                var iterator = dropped.makeAsyncIterator()
                return try await iterator.next()
            }
        }
        let jetStream = fixture.connection.jetStream()
        let left = await eventually(timeout: .seconds(10)) { () async -> Bool in
            ((try? await jetStream.consumerNames(stream: "EVENTSTORE")) ?? ["?"]).isEmpty
        }
        let names = (try? await jetStream.consumerNames(stream: "EVENTSTORE")) ?? []
        #expect(left, "consumers left: \(names)")
        await fixture.store.close()
        await fixture.connection.close()
    }
}

func makeStoreEvent(_ index: Int) -> Event {
    Event(subject: "orders.line", type: "t", source: "/test", data: Array("line \(index)".utf8), extensions: ["n": "\(index)"])
}

/// The store inside the bus's stream: bus subscribers see stored events, and the bus's stream keeps
/// its settings.
@Suite("JetStreamEventStore sharing the bus's stream")
struct JetStreamEventStoreSharingTests {
    @Test func theStoreSharesTheBussStreamWithoutRewritingIt() async throws {
        let server = try await NATSServerProcess.started()
        defer { server.kill() }
        var busConfiguration = JetStreamEventBus.Configuration(connection: try NATSConnectionConfiguration(servers: [server.url]))
        busConfiguration.storage = .memory
        let bus = JetStreamEventBus(configuration: busConfiguration)
        try await bus.start()
        let connection = try await JetStreamEventStoreTests.connect(server)
        let before = try await connection.jetStream().streamInfo("EVENTS").configuration
        let subscription = try await bus.subscribe("store.order.*")

        var configuration = JetStreamEventStore.Configuration()
        configuration.streamName = "EVENTS"
        configuration.subjectPrefix = "events.store"
        let store = try await JetStreamEventStore.open(on: connection, configuration: configuration)
        let order = try AggregateID(category: "order", id: "o-9")
        let placed = makeStoreEvent(1)
        try await store.append([placed], to: order, expectedVersion: .noEvents)
        try await store.append((2...4).map(makeStoreEvent), to: order, expectedVersion: .exactly(1))

        let received = try await withDeadline(.seconds(30), "the 4 stored events on the bus") {
            var received: [String] = []
            for try await delivery in subscription {
                received.append(delivery.event.id)
                #expect(delivery.event.subject == "store.order.o-9", "the bus sees the aggregate subject: \(delivery.event.subject)")
                try await delivery.ack()
                if received.count == 4 { break }
            }
            return received
        }
        #expect(received.first == placed.id)
        let after = try await connection.jetStream().streamInfo("EVENTS").configuration
        #expect(after.subjects == before.subjects, "the store changed the bus's subjects: \(after.subjects)")
        #expect(after.maxAge == before.maxAge && after.storage == before.storage && after.replicas == before.replicas)
        #expect(after.additionalFields["allow_atomic"] == .bool(true), "atomic batches were not enabled on the shared stream")
        #expect(try await store.load(order).map(\.version) == [1, 2, 3, 4])
        await store.close()
        await bus.close()
        await connection.close()
    }

    @Test func aStreamThatDoesNotCoverThePrefixIsRefusedNamingBoth() async throws {
        let server = try await NATSServerProcess.started()
        defer { server.kill() }
        let connection = try await JetStreamEventStoreTests.connect(server)
        _ = try await connection.jetStream().createStream(NATSStreamConfiguration(name: "OTHER", subjects: ["other.>"]))
        var configuration = JetStreamEventStore.Configuration()
        configuration.streamName = "OTHER"
        do {
            _ = try await JetStreamEventStore.open(on: connection, configuration: configuration)
            Issue.record("a stream without the store's subjects was accepted")
        } catch {
            #expect(error.code == .unavailable)
            #expect(error.message.contains("other.>") && error.message.contains("store.>"), "\(error.message)")
        }
        let subjects = try await connection.jetStream().streamInfo("OTHER").configuration.subjects
        #expect(subjects == ["other.>"], "the store changed the stream's subjects")
        await connection.close()
    }

    @Test(arguments: [
        ("events.>", "events.store.>", true), ("store.>", "store.>", true), ("store.*", "store.>", false),
        (">", "store.>", true), ("events.*.>", "events.store.>", true), ("events.a", "events.>", false),
    ])
    func subjectCovering(pattern: String, filter: String, covers: Bool) {
        #expect(JetStreamEventStore.subject(pattern, covers: filter) == covers)
    }
}

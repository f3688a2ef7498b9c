import EventBus
@testable import EventBusJetStream
import Foundation
import Logging
import NATS
import NATSTestSupport
import Testing

/// DESIGN rule 12: a stream the bus finds on the server belongs to the operator. The bus checks it,
/// refuses one it cannot use with an error that says how to fix it, changes it only when told to,
/// and then keeps everything it does not model.
@Suite("StreamPolicy: the bus and a stream it did not create", .serialized)
struct StreamPolicyTests {
    // MARK: Raw JetStream API, so that neither the setup nor the checks go through the code under test

    /// Sends a JetStream API request through a plain connection and returns the JSON answer.
    static func api(_ connection: NATSConnection, _ subject: String, _ body: String = "") async throws -> [String: Any] {
        let reply = try await connection.request(subject: subject, payload: Array(body.utf8), timeout: .seconds(10))
        return try #require(JSONSerialization.jsonObject(with: Data(reply.payload.bytes)) as? [String: Any])
    }

    /// Creates a stream from raw JSON, retrying while the cluster's meta leader settles.
    static func createRaw(_ connection: NATSConnection, _ name: String, _ config: String) async throws {
        let deadline = ContinuousClock.now + .seconds(30)
        while true {
            do {
                let answer = try await api(connection, "$JS.API.STREAM.CREATE.\(name)", config)
                if answer["error"] == nil { return }
                if ContinuousClock.now >= deadline { Issue.record("creating \(name): \(answer)"); return }
            } catch {
                if ContinuousClock.now >= deadline { throw error }
            }
            try await Task.sleep(for: .milliseconds(250))
        }
    }

    /// The stream's configuration as the server holds it (`$JS.API.STREAM.INFO`).
    static func rawConfig(_ connection: NATSConnection, _ name: String) async throws -> [String: Any] {
        let answer = try await api(connection, "$JS.API.STREAM.INFO.\(name)")
        return try #require(answer["config"] as? [String: Any], "\(answer)")
    }

    static func bus(servers: [String], _ adjust: (inout JetStreamEventBus.Configuration) -> Void = { _ in }) throws -> JetStreamEventBus {
        var connection = try NATSConnectionConfiguration(servers: servers)
        connection.reconnect.wait = .milliseconds(100)
        var configuration = JetStreamEventBus.Configuration(connection: connection)
        adjust(&configuration)
        var logger = Logger(label: "test.streampolicy")
        logger.logLevel = .warning
        return JetStreamEventBus(configuration: configuration, logger: logger)
    }

    /// Publishes one event through the bus and receives it through a group.
    static func roundTrip(_ bus: JetStreamEventBus, subject: String) async throws {
        let subscription = try await bus.subscribe("policy.>", options: .init(group: "policy-check"))
        let receipt = try await bus.publish(Event(subject: subject, type: "t", source: "/test", data: Array("hello".utf8)))
        #expect(receipt.sequence >= 1)
        let received = try await withDeadline(.seconds(30), "the event on '\(subject)'") { () -> String in
            for try await delivery in subscription {
                try await delivery.ack()
                return delivery.event.subject
            }
            return ""
        }
        #expect(received == subject)
        await subscription.close()
    }

    // MARK: The defect

    /// An operator's R3 stream with settings the bus does not model. Before: the bus's start sent
    /// an update built from its own fields only (replicas 3 → 1, max age → 7 days, compression,
    /// allow_direct and metadata gone) or, with deny_delete, could not start at all.
    @Test(.timeLimit(.minutes(5)))
    func theBusStartsOnAnOperatorsR3StreamAndChangesNothing() async throws {
        let cluster = try await offCooperativePool { try NATSClusterProcess() }
        let admin = try await NATSConnection.connect(configuration: try NATSConnectionConfiguration(servers: cluster.urls))
        try await Self.createRaw(
            admin, "EVENTS",
            #"{"name":"EVENTS","subjects":["events.>"],"retention":"limits","storage":"file","num_replicas":3,"max_age":0,"compression":"s2","metadata":{"owner":"platform-team"},"allow_direct":true,"deny_delete":true}"#
        )
        let bus = try Self.bus(servers: cluster.urls)  // default settings: replicas 1, max age 7 days
        try await bus.start()

        let config = try await Self.rawConfig(admin, "EVENTS")
        #expect(config["num_replicas"] as? Int == 3)
        #expect(config["compression"] as? String == "s2")
        #expect((config["metadata"] as? [String: Any])?["owner"] as? String == "platform-team")
        #expect(config["allow_direct"] as? Bool == true)
        #expect(config["deny_delete"] as? Bool == true)
        #expect(config["max_age"] as? Int == 0)
        #expect(config["subjects"] as? [String] == ["events.>"])

        try await Self.roundTrip(bus, subject: "policy.created")
        await bus.close()
        await admin.close()
    }

    // MARK: Refusal, and the explicit update

    @Test func aStreamWhoseSubjectsMissTheBusIsRefusedNamingTheFieldAndTheFix() async throws {
        let server = try await NATSServerProcess.started()
        defer { server.kill() }
        let admin = try await NATSConnection.connect(configuration: try NATSConnectionConfiguration(servers: [server.url]))
        try await Self.createRaw(
            admin, "EVENTS",
            #"{"name":"EVENTS","subjects":["orders.>"],"storage":"file","num_replicas":1,"compression":"s2","metadata":{"owner":"ops"},"deny_delete":true,"no_ack":true}"#)

        let bus = try Self.bus(servers: [server.url])
        let error = await #expect(throws: EventBusError.self) { try await bus.start() }
        #expect(error?.code == .streamUnusable)
        #expect(error?.isRetriable == false)
        let message = error?.message ?? ""
        for part in ["'EVENTS'", "subjects is [orders.>]", "'events.>'", "nats stream edit EVENTS --subjects 'orders.>,events.>'",
                     "no_ack is true", "EVENT_BUS_JETSTREAM_STREAM_UPDATE=update"] {
            #expect(message.contains(part), "missing \(part) in: \(message)")
        }
        let untouched = try await Self.rawConfig(admin, "EVENTS")
        #expect(untouched["subjects"] as? [String] == ["orders.>"])
        #expect(untouched["no_ack"] as? Bool == true)
        await bus.close()

        // Told to update, the bus fixes what it needs from the server's own configuration.
        let updating = try Self.bus(servers: [server.url]) { $0.streamUpdatePolicy = .update }
        try await updating.start()
        let updated = try await Self.rawConfig(admin, "EVENTS")
        #expect(Set(updated["subjects"] as? [String] ?? []) == ["orders.>", "events.>"])
        #expect((updated["no_ack"] as? Bool ?? false) == false)  // the server omits false
        #expect(updated["max_age"] as? Int == 7 * 24 * 3600 * 1_000_000_000)
        #expect(updated["compression"] as? String == "s2")
        #expect((updated["metadata"] as? [String: Any])?["owner"] as? String == "ops")
        #expect(updated["deny_delete"] as? Bool == true)
        try await Self.roundTrip(updating, subject: "policy.updated")
        await updating.close()
        await admin.close()
    }

    @Test func updateNeverLowersReplicasAndKeepsWhatItDoesNotSet() throws {
        var live = NATSStreamConfiguration(name: "EVENTS", subjects: ["events.orders.>", "audit.>"])
        live.replicas = 3
        live.description = "the operator's"
        live.additionalFields = ["compression": .string("s2"), "metadata": .object(["owner": .string("ops")]), "allow_direct": .bool(true)]
        var configuration = JetStreamEventBus.Configuration(connection: try NATSConnectionConfiguration())
        configuration.streamUpdatePolicy = .update
        let check = JetStreamEventBus.StreamCheck(stream: live, configuration: configuration)
        #expect(check.problems.map(\.field) == ["subjects"])
        #expect(check.problems.first?.fix.contains("--subjects 'audit.>,events.>'") == true, "\(check.problems)")
        #expect(check.differences.contains { $0.field == "num_replicas" && $0.found == "3" && $0.note == "the bus never lowers replicas" })
        #expect(check.differences.contains { $0.field == "compression" && $0.found == "s2" })

        let updated = JetStreamEventBus.updatedStream(live, configuration: configuration)
        #expect(updated.replicas == 3)
        #expect(updated.subjects == ["audit.>", "events.>"])
        #expect(updated.maxAge == configuration.maxAge)
        #expect(updated.description == "the operator's")
        #expect(updated.additionalFields == live.additionalFields)
        configuration.replicas = 5
        #expect(JetStreamEventBus.updatedStream(live, configuration: configuration).replicas == 5)
    }

    @Test func aWorkQueueStreamIsRefusedEvenWithUpdate() async throws {
        let server = try await NATSServerProcess.started()
        defer { server.kill() }
        let admin = try await NATSConnection.connect(configuration: try NATSConnectionConfiguration(servers: [server.url]))
        try await Self.createRaw(admin, "EVENTS", #"{"name":"EVENTS","subjects":["events.>"],"retention":"workqueue","num_replicas":1}"#)
        let bus = try Self.bus(servers: [server.url]) { $0.streamUpdatePolicy = .update }
        let error = await #expect(throws: EventBusError.self) { try await bus.start() }
        #expect(error?.message.contains("retention is workqueue") == true, "\(error?.message ?? "")")
        #expect(error?.message.contains("one consumer per subject") == true)
        #expect(try await Self.rawConfig(admin, "EVENTS")["retention"] as? String == "workqueue")
        await bus.close()
        await admin.close()
    }

    /// The server never keeps a zero duplicate window (it fills in two minutes), so this one is
    /// checked on a configuration as the server would send it.
    @Test func aZeroDuplicateWindowIsAProblemUpdateFixes() throws {
        let json = #"{"name":"EVENTS","subjects":["events.>"],"duplicate_window":0,"num_replicas":1}"#
        let live = try JSONDecoder().decode(NATSStreamConfiguration.self, from: Data(json.utf8))
        let configuration = JetStreamEventBus.Configuration(connection: try NATSConnectionConfiguration())
        let check = JetStreamEventBus.StreamCheck(stream: live, configuration: configuration)
        #expect(check.problems.map(\.field) == ["duplicate_window"])
        #expect(check.blockingProblems(policy: .never).count == 1)
        #expect(check.blockingProblems(policy: .update).isEmpty)
        let refusal = check.refusal(policy: .never)
        #expect(refusal.contains("stream 'EVENTS'") && refusal.contains("duplicate_window is 0") && refusal.contains("--dupe-window 120s"), "\(refusal)")
    }

    @Test func startCreatesAMissingStreamFromTheConfiguration() async throws {
        let server = try await NATSServerProcess.started()
        defer { server.kill() }
        let bus = try Self.bus(servers: [server.url]) { $0.maxAge = .seconds(3600) }
        try await bus.start()
        let admin = try await NATSConnection.connect(configuration: try NATSConnectionConfiguration(servers: [server.url]))
        let config = try await Self.rawConfig(admin, "EVENTS")
        #expect(config["subjects"] as? [String] == ["events.>"])
        #expect(config["max_age"] as? Int == 3600 * 1_000_000_000)
        await bus.close()
        // A second start on the stream it created changes nothing and starts.
        let again = try Self.bus(servers: [server.url]) { $0.maxAge = .seconds(60) }
        try await again.start()
        #expect(try await Self.rawConfig(admin, "EVENTS")["max_age"] as? Int == 3600 * 1_000_000_000)
        await again.close()
        await admin.close()
    }

    // MARK: Subject coverage

    @Test(arguments: [
        ("events.>", "events.>", true), (">", "events.>", true), ("events.*", "events.>", false),
        ("events.>", "events.deadletter.>", true), ("events.orders.>", "events.>", false), ("*.>", "events.>", true),
        ("events.*.x", "events.a.x", true), ("events.a", "events.*", false), ("events", "events.>", false),
    ])
    func subjectCoverage(pattern: String, other: String, covers: Bool) throws {
        let live = NATSStreamConfiguration(name: "S", subjects: [pattern])
        var configuration = JetStreamEventBus.Configuration(connection: try NATSConnectionConfiguration())
        configuration.streamSubjects = [other]
        let check = JetStreamEventBus.StreamCheck(stream: live, configuration: configuration)
        #expect(check.problems.contains { $0.field == "subjects" } == !covers)
    }

    // MARK: The NATS layer

    /// `NATSJetStream.ensureStream` for direct NATS users: an update changes the modelled fields and
    /// keeps what it does not model.
    @Test func ensureStreamKeepsUnmodelledFieldsWhenItUpdates() async throws {
        let server = try await NATSServerProcess.started()
        defer { server.kill() }
        let connection = try await NATSConnection.connect(configuration: try NATSConnectionConfiguration(servers: [server.url]))
        try await Self.createRaw(
            connection, "ORDERS",
            #"{"name":"ORDERS","subjects":["orders.>"],"num_replicas":1,"compression":"s2","metadata":{"owner":"ops"},"allow_direct":true,"deny_delete":true}"#)
        let js = connection.jetStream()
        let info = try await js.streamInfo("ORDERS")
        #expect(info.configuration.additionalFields["compression"] == .string("s2"))
        var wanted = NATSStreamConfiguration(name: "ORDERS", subjects: ["orders.>"])
        wanted.maxMessages = 1_000
        let updated = try await js.ensureStream(wanted)
        #expect(updated.configuration.maxMessages == 1_000)
        let config = try await Self.rawConfig(connection, "ORDERS")
        #expect(config["max_msgs"] as? Int == 1_000)
        #expect(config["compression"] as? String == "s2")
        #expect((config["metadata"] as? [String: Any])?["owner"] as? String == "ops")
        #expect(config["allow_direct"] as? Bool == true)
        #expect(config["deny_delete"] as? Bool == true)
        await connection.close()
    }

    @Test func streamConfigurationJSONKeepsUnmodelledFieldsExactly() throws {
        let json = #"{"name":"S","subjects":["s.>"],"max_age":0,"compression":"s2","first_seq":18446744073709,"metadata":{"a":"b"},"placement":{"tags":["x"]},"allow_direct":true,"ratio":0.5,"mirror":null,"one":1,"zero":0,"yes":true}"#
        let decoded = try JSONDecoder().decode(NATSStreamConfiguration.self, from: Data(json.utf8))
        #expect(decoded.additionalFields["first_seq"] == .integer(18_446_744_073_709))
        #expect(decoded.additionalFields["ratio"] == .double(0.5))
        #expect(decoded.additionalFields["mirror"] == .null)
        #expect(decoded.additionalFields["one"] == .integer(1) && decoded.additionalFields["zero"] == .integer(0))
        #expect(decoded.additionalFields["yes"] == .bool(true))
        #expect(decoded.additionalFields["max_age"] == nil)
        let encoded = try JSONEncoder().encode(decoded)
        let object = try #require(JSONSerialization.jsonObject(with: encoded) as? [String: Any])
        #expect(object["compression"] as? String == "s2")
        #expect(object["allow_direct"] as? Bool == true)
        #expect((object["placement"] as? [String: Any])?["tags"] as? [String] == ["x"])
        #expect(object["name"] as? String == "S")
        #expect(try JSONDecoder().decode(NATSStreamConfiguration.self, from: encoded) == decoded)
    }
}

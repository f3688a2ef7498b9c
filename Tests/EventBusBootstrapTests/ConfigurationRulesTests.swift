import Configuration
import EventBus
import EventBusBootstrap
import EventBusJetStream
import Foundation
import Logging
import NATS
import NATSTestSupport
import Synchronization
import Testing

/// Configuration that cannot drift: unknown variables, settings that cannot work together, the
/// key tables against what the readers read and what the documentation lists, and the startup report.
@Suite("Settings: rules and the startup report")
struct ConfigurationRulesTests {
    func settingsError(_ environment: [String: String]) -> EventBusError? {
        do {
            _ = try EventBusSettings.fromEnvironment(environment)
            return nil
        } catch {
            return error as? EventBusError
        }
    }

    // MARK: Unknown variables

    @Test(arguments: [
        ("EVENT_BUS_BACKEN", "memory", "unknown variable EVENT_BUS_BACKEN; did you mean EVENT_BUS_BACKEND?"),
        ("EVENT_BUS_JETSTREAM_ACKWAIT_MS", "1000", "unknown variable EVENT_BUS_JETSTREAM_ACKWAIT_MS; did you mean EVENT_BUS_JETSTREAM_ACK_WAIT_MS?"),
        ("EVENT_BUS_NATS_SERVER", "nats://127.0.0.1:4222", "unknown variable EVENT_BUS_NATS_SERVER; did you mean EVENT_BUS_NATS_SERVERS?"),
        ("EVENT_BUS_COLOUR", "blue", "unknown variable EVENT_BUS_COLOUR; it is not one of the EVENT_BUS_* settings (docs/configuration.md lists them)"),
    ])
    func anUnknownVariableFailsWithTheClosestName(variable: String, value: String, message: String) throws {
        let error = try #require(settingsError([variable: value, "PATH": "/usr/bin", "EVENT_BUS_BACKEND": "jetstream"]))
        #expect(error.code == .invalidOption)
        #expect(error.message == message)
        #expect(!error.message.contains(value), "the value may be a secret")
    }

    @Test func variablesOutsideThePrefixAreNotLookedAt() throws {
        let settings = try EventBusSettings.fromEnvironment(["EVENTBUS_BACKEND": "x", "NATS_URL": "nats://h:1", "HOME": "/root"])
        #expect(settings.backend == .memory)
    }

    @Test func variablesTheApplicationDeclaresAreKnownAndSuggested() throws {
        let undeclared = try #require(settingsError(["EVENT_BUS_DEMO_OPS_PORT": "9090"]))
        #expect(undeclared.message.hasPrefix("unknown variable EVENT_BUS_DEMO_OPS_PORT;"))
        let declared: Set<String> = ["EVENT_BUS_DEMO_OPS_PORT"]
        let settings = try EventBusSettings.fromEnvironment(["EVENT_BUS_DEMO_OPS_PORT": "9090"], applicationVariables: declared)
        #expect(settings.backend == .memory)
        #expect(throws: EventBusError.self) {
            do {
                _ = try EventBusSettings.fromEnvironment(["EVENT_BUS_DEMO_OPS_PROT": "9090"], applicationVariables: declared)
            } catch let error as EventBusError {
                #expect(error.message == "unknown variable EVENT_BUS_DEMO_OPS_PROT; did you mean EVENT_BUS_DEMO_OPS_PORT?")
                throw error
            }
        }
    }

    @Test func theConsumerHeartbeatIsReadAndBounded() throws {
        let settings = try EventBusSettings.fromEnvironment(
            ["EVENT_BUS_BACKEND": "jetstream", "EVENT_BUS_JETSTREAM_CONSUMER_IDLE_HEARTBEAT_MS": "250"])
        #expect(settings.jetStream.consumerIdleHeartbeat == .milliseconds(250))
        for value in ["99", "15001"] {
            let error = try #require(settingsError(["EVENT_BUS_BACKEND": "jetstream", "EVENT_BUS_JETSTREAM_CONSUMER_IDLE_HEARTBEAT_MS": value]))
            #expect(error.message.contains("EVENT_BUS_JETSTREAM_CONSUMER_IDLE_HEARTBEAT_MS"), "\(error.message)")
        }
    }

    @Test func aReaderTheApplicationGivesIsNotScanned() throws {
        // Documented: swift-configuration cannot list a provider's keys.
        let reader = ConfigReader(provider: EnvironmentVariablesProvider(environmentVariables: ["EVENT_BUS_BACKEN": "jetstream"]))
        #expect(try EventBusSettings(config: reader.scoped(to: "eventBus")).backend == .memory)
    }

    // MARK: Combinations that cannot work

    @Test func streamSubjectsMustCoverThePrefix() throws {
        let error = try #require(settingsError([
            "EVENT_BUS_BACKEND": "jetstream", "EVENT_BUS_JETSTREAM_SUBJECTS": "orders.>,payments.>",
        ]))
        #expect(error.code == .invalidOption)
        #expect(
            error.message
                == "EVENT_BUS_JETSTREAM_SUBJECTS (orders.>,payments.>) do not cover EVENT_BUS_JETSTREAM_SUBJECT_PREFIX 'events': events are published to 'events.>' and no stream subject would store them; add 'events.>' to EVENT_BUS_JETSTREAM_SUBJECTS or change the prefix",
            "\(error.message)")
        // Covered by a wider subject, or by the prefix's own: accepted.
        _ = try EventBusSettings.fromEnvironment(["EVENT_BUS_BACKEND": "jetstream", "EVENT_BUS_JETSTREAM_SUBJECTS": ">"])
        _ = try EventBusSettings.fromEnvironment([
            "EVENT_BUS_BACKEND": "jetstream", "EVENT_BUS_JETSTREAM_SUBJECT_PREFIX": "shop.events", "EVENT_BUS_JETSTREAM_SUBJECTS": "shop.>",
        ])
        // The same rule for a configuration made in code, in its property names.
        var configuration = JetStreamEventBus.Configuration(connection: try NATSConnectionConfiguration())
        configuration.streamSubjects = ["orders.>"]
        let thrown = #expect(throws: NATSError.self) { try configuration.validate() }
        #expect(thrown?.message.hasPrefix("streamSubjects (orders.>) do not cover subjectPrefix 'events'") == true, "\(thrown?.message ?? "")")
    }

    @Test func ackWaitLongerThanTheDuplicateWindowIsRejected() throws {
        let error = try #require(settingsError([
            "EVENT_BUS_BACKEND": "jetstream", "EVENT_BUS_JETSTREAM_ACK_WAIT_MS": "180000",
            "EVENT_BUS_JETSTREAM_DUPLICATE_WINDOW_MS": "60000",
        ]))
        #expect(error.code == .invalidOption)
        #expect(
            error.message
                == "EVENT_BUS_JETSTREAM_ACK_WAIT_MS (180000 ms) is longer than EVENT_BUS_JETSTREAM_DUPLICATE_WINDOW_MS (60000 ms): events are published with their id as Nats-Msg-Id, and a handler redelivered after the ack wait that publishes its next event again (same id) would have it stored twice; make the duplicate window at least the ack wait",
            "\(error.message)")
        // An event older than the max age is gone and never redelivered: no conflict.
        _ = try EventBusSettings.fromEnvironment([
            "EVENT_BUS_BACKEND": "jetstream", "EVENT_BUS_JETSTREAM_ACK_WAIT_MS": "180000",
            "EVENT_BUS_JETSTREAM_DUPLICATE_WINDOW_MS": "60000", "EVENT_BUS_JETSTREAM_MAX_AGE_MS": "60000",
        ])
    }

    @Test func publishTimeoutLongerThanTheDuplicateWindowIsRejected() throws {
        let error = try #require(settingsError([
            "EVENT_BUS_BACKEND": "jetstream", "EVENT_BUS_JETSTREAM_PUBLISH_TIMEOUT_MS": "20000",
            "EVENT_BUS_JETSTREAM_DUPLICATE_WINDOW_MS": "15000", "EVENT_BUS_JETSTREAM_ACK_WAIT_MS": "10000",
        ]))
        #expect(error.code == .invalidOption)
        #expect(
            error.message.hasPrefix(
                "EVENT_BUS_JETSTREAM_PUBLISH_TIMEOUT_MS (20000 ms) is longer than EVENT_BUS_JETSTREAM_DUPLICATE_WINDOW_MS (15000 ms): a publish that timed out is retried with the same id"),
            "\(error.message)")
    }

    @Test(arguments: [
        (["EVENT_BUS_NATS_SERVERS": "nats://nats-1:4222"], "EVENT_BUS_BACKEND is memory (the default), so EVENT_BUS_NATS_SERVERS would be ignored: set EVENT_BUS_BACKEND=jetstream to use them, or remove them"),
        (
            ["EVENT_BUS_BACKEND": "memory", "EVENT_BUS_JETSTREAM_STREAM": "ORDERS", "EVENT_BUS_NATS_TOKEN": "t0ken-secret"],
            "EVENT_BUS_BACKEND is memory, so EVENT_BUS_NATS_TOKEN, EVENT_BUS_JETSTREAM_STREAM would be ignored: set EVENT_BUS_BACKEND=jetstream to use them, or remove them"
        ),
    ])
    func jetStreamSettingsWithTheMemoryBackendAreRejected(environment: [String: String], message: String) throws {
        let error = try #require(settingsError(environment))
        #expect(error.code == .invalidOption)
        #expect(error.message == message, "\(error.message)")
        #expect(!error.description.contains("t0ken-secret"))
    }

    @Test func anEmptyVariableCountsAsNotSet() throws {
        #expect(try EventBusSettings.fromEnvironment(["EVENT_BUS_NATS_NAME": "", "EVENT_BUS_BACKEND": ""]).backend == .memory)
    }

    @Test func replicasAboveWhatTheServersHoldFailAtStart() async throws {
        let server = try await NATSServerProcess.started()
        defer { server.kill() }
        let settings = try EventBusSettings.fromEnvironment([
            "EVENT_BUS_BACKEND": "jetstream", "EVENT_BUS_NATS_SERVERS": server.url, "EVENT_BUS_JETSTREAM_REPLICAS": "3",
        ])
        do {
            let bus = try await EventBusFactory.makeEventBus(settings: settings)
            await bus.close()
            Issue.record("a single server accepted a stream with 3 replicas")
        } catch let error as EventBusError {
            #expect(error.code == .invalidOption)
            #expect(error.message.contains("stream 'EVENTS' with 3 replicas (EVENT_BUS_JETSTREAM_REPLICAS"), "\(error.message)")
            #expect(error.message.contains("set the replicas to at most the cluster's size"), "\(error.message)")
        }
    }

    @Test func replicasAboveTheClusterSizeFailAtStart() async throws {
        let cluster = try await offCooperativePool { try NATSClusterProcess(size: 3, syncAlways: false) }
        defer { cluster.stopAll() }
        let settings = try EventBusSettings.fromEnvironment([
            "EVENT_BUS_BACKEND": "jetstream", "EVENT_BUS_NATS_SERVERS": cluster.urls.joined(separator: ","),
            "EVENT_BUS_JETSTREAM_REPLICAS": "5",
        ])
        do {
            let bus = try await EventBusFactory.makeEventBus(settings: settings)
            await bus.close()
            Issue.record("a 3-node cluster accepted a stream with 5 replicas")
        } catch let error as EventBusError {
            #expect(error.code == .invalidOption)
            #expect(error.message.contains("stream 'EVENTS' with 5 replicas (EVENT_BUS_JETSTREAM_REPLICAS"), "\(error.message)")
            #expect(error.message.contains("fewer JetStream servers available than replicas"), "\(error.message)")
        }
    }

    // MARK: The key tables

    /// Every key a reader looks up, recorded by swift-configuration's access reporting.
    final class ReadKeys: AccessReporter {
        let keys = Mutex<Set<String>>([])
        func report(_ event: AccessEvent) {
            let key = event.metadata.key.components.joined(separator: ".")
            keys.withLock { _ = $0.insert(key) }
        }
    }

    @Test func theKeyTablesAreWhatTheReadersRead() throws {
        for backend in ["jetstream", "memory"] {
            let read = ReadKeys()
            let reader = ConfigReader(
                provider: EnvironmentVariablesProvider(environmentVariables: ["EVENT_BUS_BACKEND": backend]), accessReporter: read)
            _ = try EventBusSettings(config: reader.scoped(to: "eventBus"))
            #expect(read.keys.withLock { $0 } == Set(EventBusSettings.configurationKeys.map { "eventBus.\($0)" }), "\(backend)")
        }
    }

    /// swift-configuration's access reporting (a `CONFIG_ACCESS_LOG_FILE`, for example) sees every
    /// read, those that only check whether a key is set included.
    final class ReadEvents: AccessReporter {
        let events = Mutex<[String]>([])
        func report(_ event: AccessEvent) {
            events.withLock { $0.append("\(event)") }
        }
    }

    @Test func accessReportingNeverSeesASecret() throws {
        let secrets = ["EVENT_BUS_NATS_TOKEN": "t0ken-7f3a", "EVENT_BUS_NATS_PASSWORD": "pa55-7f3a", "EVENT_BUS_NATS_NKEY_SEED": "SUseed7f3a"]
        for backend in ["jetstream", "memory"] {
            for (variable, secret) in secrets {
                let events = ReadEvents()
                var environment = ["EVENT_BUS_BACKEND": backend, variable: secret]
                if variable == "EVENT_BUS_NATS_PASSWORD" { environment["EVENT_BUS_NATS_USER"] = "svc" }
                let reader = ConfigReader(provider: EnvironmentVariablesProvider(environmentVariables: environment), accessReporter: events)
                _ = try? EventBusSettings(config: reader.scoped(to: "eventBus"))
                let reported = events.events.withLock { $0 }
                #expect(!reported.isEmpty)
                #expect(!reported.contains { $0.contains(secret) }, "\(backend) \(variable)")
            }
        }
    }

    @Test func everyVariableRoundTripsToItsKey() throws {
        let keys = EventBusSettings.configurationKeys
        let variables = EventBusSettings.environmentVariables
        #expect(keys.count == variables.count && Set(variables).count == variables.count)
        for (key, variable) in zip(keys, variables) {
            let reader = ConfigReader(provider: EnvironmentVariablesProvider(environmentVariables: [variable: "v"]))
            #expect(reader.scoped(to: "eventBus").string(forKey: ConfigKey(key)) == "v", "\(variable) does not reach \(key)")
        }
    }

    @Test func theDocumentationListsEveryVariableAndNoOther() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let text = try String(contentsOf: root.appendingPathComponent("docs/configuration.md"), encoding: .utf8)
        // The first cell of each settings table row.
        let documented = text.split(separator: "\n").compactMap { line -> String? in
            guard line.hasPrefix("| `EVENT_BUS_") else { return nil }
            return line.dropFirst(3).prefix { $0 != "`" }.description
        }
        #expect(Set(documented) == Set(EventBusSettings.environmentVariables))
        #expect(documented.count == Set(documented).count, "a variable documented twice")
    }

    // MARK: The startup report

    @Test func theStartupReportIsLoggedOnceWithoutSecrets() async throws {
        let server = try await NATSServerProcess.started()
        defer { server.kill() }
        let password = "pw-\(UInt64.random(in: 1...UInt64.max))"
        let settings = try EventBusSettings.fromEnvironment([
            "EVENT_BUS_BACKEND": "jetstream", "EVENT_BUS_NATS_SERVERS": server.url.replacingOccurrences(of: "nats://", with: "nats://alice:\(password)@"),
            "EVENT_BUS_JETSTREAM_STREAM": "REPORTED", "EVENT_BUS_JETSTREAM_MAX_DELIVER": "9",
        ])
        let records = LogRecords()
        let bus = try await EventBusFactory.makeEventBus(settings: settings, logger: records.logger())
        _ = try await bus.publish(Event(subject: "report.check", type: "t", source: "/s"))
        await bus.close()
        let reports = records.all.filter { $0.message == "event bus configuration" }
        try #require(reports.count == 1, "\(records.all.map(\.message))")
        #expect(reports[0].level == .info)
        let metadata = reports[0].metadata
        #expect(metadata["backend"] == "jetstream")
        #expect(metadata["jetstream.stream"] == "REPORTED" && metadata["jetstream.maxDeliver"] == "9")
        #expect(metadata["nats.servers"]?.description.contains("alice:***@") == true, "\(metadata)")
        let everything = records.all.map { "\($0.message) \($0.metadata)" }.joined(separator: "\n")
        #expect(!everything.contains(password))

        let memoryRecords = LogRecords()
        let memory = try await EventBusFactory.makeEventBus(settings: .memory, logger: memoryRecords.logger())
        await memory.close()
        let memoryReports = memoryRecords.all.filter { $0.message == "event bus configuration" }
        #expect(memoryReports.count == 1 && memoryReports.first?.metadata["backend"] == "memory")
    }
}

/// Log records kept in memory.
final class LogRecords: Sendable {
    struct Record: Sendable {
        let level: Logger.Level
        let message: String
        let metadata: Logger.Metadata
    }

    private let records = Mutex<[Record]>([])

    var all: [Record] { records.withLock { $0 } }

    func logger() -> Logger {
        var logger = Logger(label: "test") { _ in Handler(records: self) }
        logger.logLevel = .trace
        return logger
    }

    func append(_ record: Record) {
        records.withLock { $0.append(record) }
    }

    struct Handler: LogHandler {
        let records: LogRecords
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            records.append(Record(level: event.level, message: "\(event.message)", metadata: metadata.merging(event.metadata ?? [:]) { $1 }))
        }
    }
}

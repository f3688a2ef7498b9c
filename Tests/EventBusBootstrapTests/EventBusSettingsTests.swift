import Configuration
import EventBus
import EventBusBootstrap
import EventBusJetStream
import NATS
import NATSTestSupport
import Testing

@Suite("Backend settings from the environment")
struct EventBusSettingsTests {
    func settings(_ variables: [String: String]) throws -> EventBusSettings {
        let reader = ConfigReader(provider: EnvironmentVariablesProvider(environmentVariables: variables))
        return try EventBusSettings(config: reader.scoped(to: "eventBus"))
    }

    func settingsError(_ variables: [String: String]) -> EventBusError? {
        do {
            _ = try settings(variables)
            return nil
        } catch {
            return error as? EventBusError
        }
    }

    @Test func defaultsToMemory() throws {
        let settings = try settings([:])
        #expect(settings.backend == .memory)
        #expect(settings.jetStream.streamName == "EVENTS")
    }

    @Test func readsEveryVariable() throws {
        let settings = try settings([
            "EVENT_BUS_BACKEND": "jetstream",
            "EVENT_BUS_NATS_SERVERS": "nats://10.0.0.1:4222, nats://10.0.0.2:4222,nats://10.0.0.3:4222",
            "EVENT_BUS_NATS_NAME": "billing-eu",
            "EVENT_BUS_NATS_RECONNECT_MAX_ATTEMPTS": "-1",
            "EVENT_BUS_NATS_RECONNECT_WAIT_MS": "500",
            "EVENT_BUS_NATS_RECONNECT_JITTER_MS": "50",
            "EVENT_BUS_NATS_RECONNECT_BUFFER_BYTES": "1048576",
            "EVENT_BUS_NATS_PING_INTERVAL_MS": "3000",
            "EVENT_BUS_NATS_WRITE_IMMEDIATELY_AFTER_IDLE_US": "0",
            "EVENT_BUS_NATS_USER": "svc",
            "EVENT_BUS_NATS_PASSWORD": "s3cret-pw",
            "EVENT_BUS_NATS_TLS_CA_FILE": "/etc/nats/ca.pem",
            "EVENT_BUS_JETSTREAM_STREAM": "ORDERS",
            "EVENT_BUS_JETSTREAM_SUBJECT_PREFIX": "shop",
            "EVENT_BUS_JETSTREAM_SUBJECTS": "shop.>",
            "EVENT_BUS_JETSTREAM_REPLICAS": "3",
            "EVENT_BUS_JETSTREAM_STORAGE": "memory",
            "EVENT_BUS_JETSTREAM_MAX_AGE_MS": "86400000",
            "EVENT_BUS_JETSTREAM_DUPLICATE_WINDOW_MS": "60000",
            "EVENT_BUS_JETSTREAM_ACK_WAIT_MS": "15000",
            "EVENT_BUS_JETSTREAM_MAX_DELIVER": "7",
            "EVENT_BUS_JETSTREAM_MAX_ACK_PENDING": "64",
            "EVENT_BUS_JETSTREAM_PUBLISH_TIMEOUT_MS": "12000",
            "EVENT_BUS_JETSTREAM_GROUP_CONSUMER": "push",
        ])
        #expect(settings.backend == .jetstream)
        let nats = settings.jetStream.connection
        #expect(nats.servers.map(\.host) == ["10.0.0.1", "10.0.0.2", "10.0.0.3"])
        #expect(nats.name == "billing-eu")
        #expect(nats.reconnect.maxAttempts == .unlimited)
        #expect(nats.reconnect.wait == .milliseconds(500))
        #expect(nats.reconnect.jitter == .milliseconds(50))
        #expect(nats.reconnect.bufferSize == 1_048_576)
        #expect(nats.pingInterval == .seconds(3))
        #expect(nats.writeImmediatelyAfterIdle == nil, "0 turns it off")
        #expect(nats.authentication == .userPassword(user: "svc", password: "s3cret-pw"))
        #expect(nats.tls?.caFile == "/etc/nats/ca.pem")
        let js = settings.jetStream
        #expect(js.streamName == "ORDERS" && js.subjectPrefix == "shop" && js.effectiveStreamSubjects == ["shop.>"])
        #expect(js.replicas == 3 && js.storage == .memory)
        #expect(js.maxAge == .seconds(86_400) && js.duplicateWindow == .seconds(60))
        #expect(js.ackWait == .seconds(15) && js.maxDeliver == 7 && js.maxAckPending == 64)
        #expect(js.publishTimeout == .seconds(12))
        #expect(js.groupConsumer == .push)
        #expect(!settings.description.contains("s3cret-pw"), "\(settings)")
    }

    @Test(arguments: [
        ("EVENT_BUS_BACKEND", "kafka", "memory, jetstream"),
        ("EVENT_BUS_NATS_SERVERS", "http://nats:4222", "scheme 'http' is not supported"),
        ("EVENT_BUS_NATS_SERVERS", "nats://host:99999", "out of range"),
        ("EVENT_BUS_NATS_RECONNECT_WAIT_MS", "soon", "whole milliseconds"),
        ("EVENT_BUS_NATS_PING_INTERVAL_MS", "0", "whole milliseconds ≥ 1"),
        ("EVENT_BUS_JETSTREAM_STREAM", "orders.v1", "must not contain '.'"),
        ("EVENT_BUS_JETSTREAM_REPLICAS", "7", "expected 1 to 5"),
        ("EVENT_BUS_JETSTREAM_REPLICAS", "three", "whole number"),
        ("EVENT_BUS_JETSTREAM_STORAGE", "disk", "file, memory"),
        ("EVENT_BUS_JETSTREAM_MAX_AGE_MS", "-1", "whole milliseconds ≥ 0"),
        ("EVENT_BUS_JETSTREAM_DUPLICATE_WINDOW_MS", "2m", "whole milliseconds"),
        ("EVENT_BUS_JETSTREAM_ACK_WAIT_MS", "0", "whole milliseconds ≥ 1"),
        ("EVENT_BUS_JETSTREAM_MAX_DELIVER", "0", "whole number ≥ 1"),
        ("EVENT_BUS_JETSTREAM_MAX_ACK_PENDING", "lots", "whole number ≥ 1"),
        ("EVENT_BUS_JETSTREAM_SUBJECTS", "a..b", "empty tokens"),
        ("EVENT_BUS_JETSTREAM_GROUP_CONSUMER", "queue", "pull, push"),
    ])
    func badValueNamesVariableValueAndRule(variable: String, value: String, rule: String) throws {
        var variables = ["EVENT_BUS_BACKEND": "jetstream"]
        variables[variable] = value
        let error = try #require(settingsError(variables))
        #expect(error.code == .invalidOption)
        #expect(error.message.contains(variable), "\(error.message)")
        #expect(error.message.contains(value) || variable == "EVENT_BUS_JETSTREAM_SUBJECTS", "\(error.message)")
        #expect(error.message.contains(rule), "\(error.message)")
    }

    @Test func secretsAreNeverPrinted() throws {
        let token = "tok-\(UInt64.random(in: 1...UInt64.max))"
        let settings = try settings([
            "EVENT_BUS_BACKEND": "jetstream", "EVENT_BUS_NATS_TOKEN": token,
            "EVENT_BUS_NATS_SERVERS": "nats://127.0.0.1:4222",
        ])
        #expect(settings.jetStream.connection.authentication == .token(token))
        let fromURL = try self.settings([
            "EVENT_BUS_BACKEND": "jetstream", "EVENT_BUS_NATS_SERVERS": "nats://user:pa55word@127.0.0.1:4222",
        ])
        #expect(try fromURL.jetStream.connection.resolvedAuthentication() == .userPassword(user: "user", password: "pa55word"))
        for settings in [settings, fromURL] {
            let printed = "\(settings) \(settings.jetStream.connection) \(String(reflecting: settings.jetStream.connection))"
            #expect(!printed.contains(token))
            #expect(!printed.contains("pa55word"))
        }
        // Also in the error of a bad value next to a secret.
        let error = try #require(settingsError(["EVENT_BUS_NATS_SERVERS": "http://user:pa55word@h:1"]))
        #expect(!error.description.contains("pa55word"), "\(error)")
    }

    @Test func credentialsInTheURLAndInVariablesFail() throws {
        let error = try #require(settingsError([
            "EVENT_BUS_BACKEND": "jetstream", "EVENT_BUS_NATS_TOKEN": "t0k-secret",
            "EVENT_BUS_NATS_SERVERS": "nats://user:pa55word@127.0.0.1:4222",
        ]))
        #expect(error.code == .invalidOption)
        #expect(error.message.contains("EVENT_BUS_NATS_SERVERS") && error.message.contains("EVENT_BUS_NATS_TOKEN"), "\(error)")
        #expect(!error.description.contains("pa55word") && !error.description.contains("t0k-secret"), "\(error)")
    }

    @Test func aCommaInAPasswordMustBePercentEncoded() throws {
        let error = try #require(settingsError([
            "EVENT_BUS_BACKEND": "jetstream", "EVENT_BUS_NATS_SERVERS": "nats://alice:Pa5s,w0rd@127.0.0.1:4222",
        ]))
        #expect(error.message.contains("%2C"), "\(error)")
        #expect(!error.description.contains("Pa5s") && !error.description.contains("w0rd"), "\(error)")
        let settings = try settings([
            "EVENT_BUS_BACKEND": "jetstream", "EVENT_BUS_NATS_SERVERS": "nats://alice:Pa5s%2Cw0rd@127.0.0.1:4222",
        ])
        #expect(try settings.jetStream.connection.resolvedAuthentication() == .userPassword(user: "alice", password: "Pa5s,w0rd"))
        #expect(!"\(settings)".contains("Pa5s"))
    }

    @Test func unreachableServerFailsAtStartWithTheURLRedacted() async throws {
        let port = try NATSServerProcess.freePort()
        let settings = try settings([
            "EVENT_BUS_BACKEND": "jetstream",
            "EVENT_BUS_NATS_SERVERS": "nats://alice:hunter2@127.0.0.1:\(port)",
            "EVENT_BUS_NATS_CONNECT_TIMEOUT_MS": "300",
        ])
        do {
            _ = try await EventBusFactory.makeEventBus(settings: settings)
            Issue.record("connecting to a closed port succeeded")
        } catch let error as EventBusError {
            #expect(error.code == .backendUnavailable)
            #expect(error.message.contains("127.0.0.1:\(port)"), "\(error.message)")
            #expect(!error.description.contains("hunter2"))
        }
    }

    @Test func factoryMakesTheChosenBackend() async throws {
        let memory = try await EventBusFactory.makeEventBus(settings: try settings([:]))
        #expect(memory is InMemoryEventBus)
        await memory.close()
        let server = try await NATSServerProcess.started()
        defer { server.kill() }
        let jetStream = try await EventBusFactory.makeEventBus(
            settings: try settings(["EVENT_BUS_BACKEND": "jetstream", "EVENT_BUS_NATS_SERVERS": server.url]))
        #expect(jetStream is JetStreamEventBus)
        let receipt = try await jetStream.publish(Event(subject: "bootstrap.check", type: "t", source: "/s"))
        #expect(receipt.stream == "EVENTS" && receipt.sequence == 1)
        await jetStream.close()
    }
}

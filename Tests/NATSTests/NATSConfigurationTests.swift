import Configuration
import Testing

@testable import NATS

@Suite("Configuration")
struct NATSConfigurationTests {
    @Test func defaults() throws {
        let configuration = try NATSConnectionConfiguration()
        #expect(configuration.servers.map(\.description) == ["nats://127.0.0.1:4222"])
        #expect(configuration.connectTimeout == .seconds(2))
        #expect(configuration.reconnect.maxAttempts == .limited(60))
        #expect(configuration.reconnect.bufferSize == 8 * 1024 * 1024)
        #expect(configuration.pingInterval == .seconds(2))
        #expect(configuration.writeImmediatelyAfterIdle == .microseconds(20))
        #expect(configuration.subscriptionLimits == .init(messages: 65_536, bytes: 64 * 1024 * 1024))
        try configuration.validate()
    }

    @Test func validateRejectsOutOfRange() throws {
        var configuration = try NATSConnectionConfiguration()
        configuration.maxPingsOut = 0
        #expect(throws: NATSError.self) { try configuration.validate() }
        configuration = try NATSConnectionConfiguration()
        configuration.reconnect.maxAttempts = .limited(-2)
        let error = #expect(throws: NATSError.self) { try configuration.validate() }
        #expect(error?.message.contains("reconnect.maxAttempts") == true)
        configuration = try NATSConnectionConfiguration()
        configuration.subscriptionLimits.messages = 0
        #expect(throws: NATSError.self) { try configuration.validate() }
        configuration = try NATSConnectionConfiguration()
        configuration.connectTimeout = .zero
        #expect(throws: NATSError.self) { try configuration.validate() }
        configuration = try NATSConnectionConfiguration()
        configuration.tls = .init(certificateFile: "cert.pem")
        #expect(throws: NATSError.self) { try configuration.validate() }
    }

    /// A typed provider (JSON, YAML, in memory) gives numbers and booleans as such; the typed
    /// readers take them (text read by hand used to skip them without a word).
    @Test func readsEveryKeyFromConfigReader() throws {
        let provider = InMemoryProvider(values: [
            "servers": "nats://a:4222, nats://b:4223",
            "name": "billing",
            "connectTimeoutMs": .init(.int(1500), isSecret: false),
            "discoverServers": .init(.bool(false), isSecret: false),
            "randomizeServers": .init(.bool(false), isSecret: false),
            "noEcho": .init(.bool(true), isSecret: false),
            "sendAsap": .init(.bool(true), isSecret: false),
            "reconnect.maxAttempts": .init(.int(-1), isSecret: false),
            "reconnect.waitMs": .init(.int(250), isSecret: false),
            "reconnect.jitterMs": .init(.int(20), isSecret: false),
            "reconnect.jitterTlsMs": .init(.int(300), isSecret: false),
            "reconnect.bufferBytes": .init(.int(1024), isSecret: false),
            "pingIntervalMs": .init(.int(3000), isSecret: false),
            "maxPingsOut": .init(.int(4), isSecret: false),
            "maxControlLine": .init(.int(8192), isSecret: false),
            "pending.messages": .init(.int(100), isSecret: false),
            "pending.bytes": .init(.int(2048), isSecret: false),
            "user": "svc",
            "password": "pw",
        ])
        let configuration = try NATSConnectionConfiguration(config: ConfigReader(provider: provider))
        #expect(configuration.servers.map(\.host) == ["a", "b"])
        #expect(configuration.name == "billing")
        #expect(configuration.connectTimeout == .milliseconds(1500))
        #expect(!configuration.discoverServers && !configuration.randomizeServers)
        #expect(configuration.noEcho && configuration.sendAsap)
        #expect(configuration.reconnect.maxAttempts == .unlimited)
        #expect(configuration.reconnect.wait == .milliseconds(250))
        #expect(configuration.reconnect.jitter == .milliseconds(20))
        #expect(configuration.reconnect.jitterTLS == .milliseconds(300))
        #expect(configuration.reconnect.bufferSize == 1024)
        #expect(configuration.pingInterval == .seconds(3))
        #expect(configuration.maxPingsOut == 4)
        #expect(configuration.maxControlLine == 8192)
        #expect(configuration.subscriptionLimits == .init(messages: 100, bytes: 2048))
        #expect(configuration.authentication == .userPassword(user: "svc", password: "pw"))
        #expect(!configuration.description.contains("pw)"))
        #expect(configuration.description.contains("password: ***"))
    }

    @Test(arguments: [
        ("maxPingsOut", "zero", "EVENT_BUS_NATS_MAX_PINGS_OUT", "whole number ≥ 1"),
        ("reconnect.waitMs", "-5", "EVENT_BUS_NATS_RECONNECT_WAIT_MS", "whole milliseconds ≥ 0"),
        ("maxControlLine", "100", "EVENT_BUS_NATS_MAX_CONTROL_LINE", "≥ 256"),
        ("noEcho", "maybe", "EVENT_BUS_NATS_NO_ECHO", "true, false"),
        ("servers", "http://x:1", "EVENT_BUS_NATS_SERVERS", "scheme 'http' is not supported"),
    ])
    func badValuesNameTheVariable(key: String, value: String, variable: String, rule: String) {
        let provider = InMemoryProvider(values: [AbsoluteConfigKey(stringLiteral: key): ConfigValue(stringLiteral: value)])
        let error = #expect(throws: NATSError.self) {
            try NATSConnectionConfiguration(config: ConfigReader(provider: provider), keyPrefix: "EVENT_BUS_NATS_")
        }
        #expect(error?.message.contains(rule) == true, "\(error?.message ?? "")")
        #expect(error?.message.contains(variable) == true, "\(error?.message ?? "")")
        #expect(error?.message.contains(value) == true, "\(error?.message ?? "")")
    }

    @Test func secretsStayOutOfDescriptionsAndDumps() throws {
        let provider = InMemoryProvider(values: ["token": "t0k3n-secret"])
        let configuration = try NATSConnectionConfiguration(config: ConfigReader(provider: provider))
        #expect(configuration.authentication == .token("t0k3n-secret"))
        #expect(!configuration.description.contains("t0k3n-secret"))
        var dumped = ""
        dump(configuration.authentication, to: &dumped)
        #expect(!dumped.contains("t0k3n-secret"), "\(dumped)")
    }

    @Test func conflictingAuthenticationIsRejected() {
        let provider = InMemoryProvider(values: ["token": "x", "user": "u", "password": "p"])
        let error = #expect(throws: NATSError.self) { try NATSConnectionConfiguration(config: ConfigReader(provider: provider)) }
        #expect(error?.message.contains("more than one authentication method") == true)
        let lonely = InMemoryProvider(values: ["user": "u"])
        #expect(throws: NATSError.self) { try NATSConnectionConfiguration(config: ConfigReader(provider: lonely)) }
    }
}

@Suite("Errors")
struct NATSErrorTests {
    @Test func nativeStatusesMapToCodes() {
        let timeout = NativeStatus.error(raw: NATSError.NativeStatus.timeout.rawValue, "waiting")
        #expect(timeout.code == .timeout)
        #expect(timeout.isRetriable)
        #expect(timeout.nativeStatus == .timeout)
        #expect(timeout.description.contains("waiting"))
        #expect(NativeStatus.error(raw: NATSError.NativeStatus.connectionClosed.rawValue, "x").code == .connectionClosed)
        #expect(NativeStatus.error(raw: NATSError.NativeStatus.noServer.rawValue, "x").code == .noServers)
        #expect(NativeStatus.error(raw: NATSError.NativeStatus.slowConsumer.rawValue, "x").code == .slowConsumer)
        #expect(NativeStatus.error(raw: NATSError.NativeStatus.noResponders.rawValue, "x").code == .noResponders)
        #expect(NativeStatus.error(raw: NATSError.NativeStatus.authenticationFailed.rawValue, "x").code == .authenticationFailed)
        #expect(NativeStatus.error(raw: NATSError.NativeStatus.notPermitted.rawValue, "x").code == .permissionDenied)
    }

    @Test func codesAreComparableAndDescribed() {
        let error = NATSError(.noResponders, "no responders on 'svc.echo'", isRetriable: true)
        #expect(error.code == .noResponders)
        #expect(error.code != .timeout)
        #expect(error.description == "NATSError.noResponders: no responders on 'svc.echo'")
    }
}

import Configuration
import Foundation
import Logging
import NATSTestSupport
import Testing

@testable import NATS

/// Keeps every log line, with its metadata, as text.
struct CapturingLogHandler: LogHandler {
    let lines: Collected<String>
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let all = metadata.merging(event.metadata ?? [:]) { $1 }
        lines.append("\(event.level) \(event.message) \(all.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" })")
    }
}

/// Everything a user could see of a server URL text, through every way it enters the library.
func everythingPrinted(from text: String) -> [String] {
    var printed = [NATSServerURL.redact(text)]
    func showURL(_ url: NATSServerURL) {
        var dumped = ""
        dump(url, to: &dumped)
        printed += [url.description, url.debugDescription, "\(url)", String(reflecting: url), dumped]
    }
    func showConfiguration(_ configuration: NATSConnectionConfiguration) {
        var dumped = ""
        dump(configuration, to: &dumped)
        printed += [configuration.description, configuration.debugDescription, String(reflecting: configuration), dumped]
        do { try configuration.validate() } catch { printed += [error.description, error.message] }
    }
    do { showURL(try NATSServerURL(text)) } catch { printed += [error.description, "\(error)"] }
    do { try NATSServerURL.parseList(text).forEach(showURL) } catch { printed += [error.description] }
    do { showConfiguration(try NATSConnectionConfiguration(servers: [text])) } catch { printed += [error.description] }
    do {
        let provider = InMemoryProvider(values: ["servers": ConfigValue(stringLiteral: text)])
        showConfiguration(try NATSConnectionConfiguration(config: ConfigReader(provider: provider), keyPrefix: "EVENT_BUS_NATS_"))
    } catch {
        printed += [error.description]
    }
    return printed
}

@Suite("Server URL security")
struct ServerURLSecurityTests {
    /// URL texts and the secrets in them (raw and decoded) that must never be printed.
    static let corpus: [(text: String, secrets: [String])] = [
        ("nats://alice:S3cretPW@127.0.0.1:4222", ["S3cretPW"]),
        ("nats://:PwOnly77@127.0.0.1:4222", ["PwOnly77"]),
        ("nats://T0kenXY@host:4222", ["T0kenXY"]),
        ("T0kenNoScheme@host", ["T0kenNoScheme"]),
        ("carol:NoSchemePW@host:4333", ["NoSchemePW"]),
        ("nats://alice:Pct%2CComma@host:4222", ["Pct%2CComma", "Pct,Comma"]),
        ("nats://alice:Ma1Xq,Zr8Wv@host:4222", ["Ma1Xq", "Zr8Wv"]),
        ("nats://alice:Kq12,34Lm@h1:4222", ["Kq12", "34Lm"]),
        ("nats://alice:12,34@h1", ["12,34", "34@"]),
        ("nats://alice:Enc%40od%3Aed%2Fx@host", ["Enc%40od%3Aed%2Fx", "Enc@od:ed/x"]),
        ("nats://alice:Raw@At@host", ["Raw@At"]),
        ("nats://alice:Rs/v?d#Qx@host", ["Rs/v?d#Qx"]),
        ("tls://bob:V6secret@[::1]:4443", ["V6secret"]),
        ("nats://alice:BadPort1@host:abc", ["BadPort1"]),
        ("nats://alice:BadPort2@host:99999", ["BadPort2"]),
        ("http://alice:BadScheme@host", ["BadScheme"]),
        ("nats://alice:Spx ace@host", ["Spx ace", "Spx", "ace@"]),
        ("nats://alice:BadEsc%zz@host", ["BadEsc"]),
        ("nats://alice:Ctl%0Aline@host", ["Ctl%0Aline", "Ctl"]),
        ("nats://alice:NoHostPW", ["NoHostPW"]),
        ("nats://:LostAt99127.0.0.1:4222", ["LostAt99"]),
        ("nats://alice:Path1PW@host:4222/path", ["Path1PW"]),
        ("nats://tok%2CEnc9@host", ["tok%2CEnc9", "tok,Enc9"]),
        ("nats://h1:4222,nats://alice:L1stPW@h2:4222", ["L1stPW"]),
        ("nats://alice:Sp1it,Part2@h1:4222,nats://h2:4222", ["Sp1it", "Part2"]),
        ("nats://h1:4222, nats://alice:Br0ken@h2:abc", ["Br0ken"]),
        ("nats://alice:Diff1PW@h1,nats://alice:Diff2PW@h2", ["Diff1PW", "Diff2PW"]),
        ("nats://Tok1Aa@h1,nats://Tok2Bb@h2", ["Tok1Aa", "Tok2Bb"]),
        ("nats://alice:Same0PW@h1, nats://alice:Same0PW@h2", ["Same0PW"]),
        ("nats://alice:Tr@il,", ["Tr@il"]),
        ("alice:Sc4://hm@h:abc", ["Sc4", "hm@"]),
        ("nats://alice:Sc5://hm@h:abc", ["Sc5", "hm@"]),
        ("bob:Sc6://q@h", ["Sc6"]),
    ]

    @Test(arguments: corpus)
    func secretNeverPrinted(text: String, secrets: [String]) {
        for printed in everythingPrinted(from: text) {
            for secret in secrets {
                #expect(!printed.contains(secret), "'\(secret)' printed: \(printed)")
            }
        }
    }

    @Test func redactionOfMessagesAndBrokenText() {
        let cases: [(String, String)] = [
            // cnats drops the '@' of an empty user when it prints a URL.
            ("nats://:S3cretPW127.0.0.1:4222", "S3cretPW"),
            ("connection to nats://alice:Msg1PW@host:4222 failed", "Msg1PW"),
            ("error: 'nats://alice:Msg2,PW@host:4222'", "Msg2"),
            ("servers nats://a:Msg3PW@h1:1, tls://b:Msg4PW@h2:2", "Msg3PW"),
            ("servers nats://a:Msg3PW@h1:1, tls://b:Msg4PW@h2:2", "Msg4PW"),
            ("nats://alice:In://ner@h:abc", "ner"),
            ("Scheme1ess:Pw9@h1,h2", "Pw9"),
        ]
        for (text, secret) in cases {
            #expect(!NATSServerURL.redact(text).contains(secret), "\(NATSServerURL.redact(text))")
        }
        // Clean text keeps its shape; users stay visible.
        #expect(NATSServerURL.redact("nats://h1:4222, nats://h2:4222") == "nats://h1:4222, nats://h2:4222")
        #expect(NATSServerURL.redact("nats://a:b@h1:1,nats://tok@h2:2") == "nats://a:***@h1:1,nats://***@h2:2")
        #expect(NATSServerURL.redact("nats://:pw@h:1") == "nats://:***@h:1")
        #expect(NATSServerURL.redact("nats://al%40ice:p%2Cw@h:1") == "nats://al%40ice:***@h:1")
        #expect(NATSServerURL.redact("nats: no server available for connection") == "nats: no server available for connection")
        #expect(NATSServerURL.redact("nats://[::1]:4222") == "nats://[::1]:4222")
    }

    @Test func parsesEveryCredentialForm() throws {
        let both = try NATSServerURL("nats://alice:s3cret@host:4222")
        #expect(both.user == "alice" && both.password == "s3cret")
        #expect(both.credentials == .userPassword(user: "alice", password: "s3cret"))
        let passwordOnly = try NATSServerURL("nats://:s3cret@host")
        #expect(passwordOnly.credentials == .userPassword(user: "", password: "s3cret"))
        #expect(passwordOnly.description == "nats://:***@host:4222")
        let emptyPassword = try NATSServerURL("nats://alice:@host")
        #expect(emptyPassword.credentials == .userPassword(user: "alice", password: ""))
        let token = try NATSServerURL("tls://t0k3n@host:4443")
        #expect(token.credentials == .token("t0k3n"))
        #expect(token.description == "tls://***@host:4443")
        let encoded = try NATSServerURL("nats://al%40ice%3Ax:S3c%2Cret%40PW%3A%2F%25%20%C3%A9@[::1]:5222")
        #expect(encoded.user == "al@ice:x")
        #expect(encoded.password == "S3c,ret@PW:/% é")
        #expect(encoded.host == "::1" && encoded.port == 5222)
        #expect(encoded.description == "nats://al%40ice%3Ax:***@[::1]:5222")
        let raw = try NATSServerURL("nats://alice:p@ss:w/o?r#d@host")
        #expect(raw.password == "p@ss:w/o?r#d" && raw.host == "host")
        let tokenWithComma = try NATSServerURL("nats://t0k%2Cen@host")
        #expect(tokenWithComma.credentials == .token("t0k,en"))
        // cnats gets no credentials in the URL.
        for url in [both, passwordOnly, emptyPassword, token, encoded, raw] {
            #expect(!url.connectString.contains("@"), "\(url.connectString)")
        }
        #expect(encoded.connectString == "nats://[::1]:5222")
        #expect(try NATSServerURL("host").credentials == nil)
    }

    @Test(arguments: [
        ("nats://@host", "empty credentials"),
        ("nats://:@host", "empty credentials"),
        ("nats://alice:pw%2@host", "percent-encoding"),
        ("nats://alice:pw%@host", "percent-encoding"),
        ("nats://alice:pw%00x@host", "control characters"),
        ("nats://alice:pw%FF@host", "UTF-8"),
        ("nats://alice:a,b@host", "%2C"),
        ("nats://ho_st.example-1:4222", ""),
        ("nats://:x127.0.0.1:4222", "host may hold only"),
        ("nats://h[ost:4222", "host may hold only"),
        ("nats://[::1", "closing ']'"),
        ("nats://[::1]x", "after the IPv6 host"),
        ("nats://host:", "not a number"),
    ])
    func credentialAndHostRules(url: String, rule: String) {
        do {
            _ = try NATSServerURL(url)
            #expect(rule.isEmpty, "\(url) parsed")
        } catch {
            #expect(error.code == .invalidURL)
            #expect(error.message.contains(rule), "\(error.message)")
        }
    }

    @Test func parseListHandlesSpacesEmptiesAndIPv6() throws {
        let list = try NATSServerURL.parseList(" nats://a:p%2Cw@h1:1 ,, tls://[::1]:2,h3 ,")
        #expect(list.map(\.description) == ["nats://a:***@h1:1", "tls://[::1]:2", "nats://h3:4222"])
        #expect(list[0].password == "p,w")
        let empty = #expect(throws: NATSError.self) { try NATSServerURL.parseList(" , ") }
        #expect(empty?.code == .invalidURL)
        let broken = #expect(throws: NATSError.self) { try NATSServerURL.parseList("nats://h1:1,nats://h2:x") }
        #expect(broken?.message.contains("server 2 of 2") == true, "\(broken?.message ?? "")")
    }

    /// Finding 2: a comma in a password split the list, and the error showed the first part.
    @Test func commaInPasswordFailsClearlyWithoutTheSecret() throws {
        for text in ["nats://alice:S3c,retPW@host:4222", "nats://alice:12,34@h1", "nats://h0:1,nats://alice:S3c,retPW@host:4222"] {
            let provider = InMemoryProvider(values: ["servers": ConfigValue(stringLiteral: text)])
            let error = #expect(throws: NATSError.self) {
                try NATSConnectionConfiguration(config: ConfigReader(provider: provider), keyPrefix: "EVENT_BUS_NATS_")
            }
            #expect(error?.code == .invalidURL)
            #expect(error?.message.contains("EVENT_BUS_NATS_SERVERS") == true)
            #expect(error?.message.contains("%2C") == true, "\(error?.message ?? "")")
            for part in ["S3c", "retPW", "12", "34@"] {
                #expect(error?.description.contains(part) == false, "\(error?.description ?? "")")
            }
            let listError = #expect(throws: NATSError.self) { try NATSServerURL.parseList(text) }
            #expect(listError?.code == .invalidURL)
            #expect(listError?.message.contains("%2C") == true)
        }
        // Encoded, the same password is read whole.
        let provider = InMemoryProvider(values: ["servers": "nats://alice:S3c%2CretPW@host:4222"])
        let configuration = try NATSConnectionConfiguration(config: ConfigReader(provider: provider))
        #expect(try configuration.resolvedAuthentication() == .userPassword(user: "alice", password: "S3c,retPW"))
    }

    /// Finding 1: a password-only URL was printed with its password.
    @Test func passwordOnlyURLIsRedactedEverywhere() throws {
        let url = try NATSServerURL("nats://:S3cretPW@127.0.0.1:4222")
        #expect(!url.connectString.contains("S3cretPW"))
        // What cnats prints for such a URL: its '@' lost.
        #expect(!NATSServerURL.redact("nats://:S3cretPW127.0.0.1:4222").contains("S3cretPW"))
        #expect(!"\(url)".contains("S3cretPW"))
    }

    /// Finding 4: credentials in a URL and in the configuration at once were accepted, the URL's silently winning.
    @Test func urlCredentialsAndAuthenticationTogetherFail() throws {
        let others: [NATSConnectionConfiguration.Authentication] = [
            .userPassword(user: "bob", password: "Cfg1PW"), .token("CfgT0k"), .credentialsFile(path: "/x.creds"),
            .nkeySeedFile(publicKey: "UABC", seedFile: "/seed"),
        ]
        for other in others {
            var configuration = try NATSConnectionConfiguration(servers: ["nats://alice:Url1PW@127.0.0.1:4222"])
            configuration.authentication = other
            let error = #expect(throws: NATSError.self) { try configuration.validate() }
            #expect(error?.code == .invalidConfiguration)
            #expect(error?.message.contains("choose one") == true, "\(error?.message ?? "")")
            #expect(error?.message.contains("nats://alice:***@127.0.0.1:4222") == true, "\(error?.message ?? "")")
            for secret in ["Url1PW", "Cfg1PW", "CfgT0k"] {
                #expect(error?.description.contains(secret) == false)
            }
        }
        // Different credentials in two URLs.
        let differing = try NATSConnectionConfiguration(servers: ["nats://alice:Pw1@h1", "nats://alice:Pw2@h2"])
        let error = #expect(throws: NATSError.self) { try differing.validate() }
        #expect(error?.code == .invalidConfiguration)
        #expect(error?.description.contains("Pw1") == false && error?.description.contains("Pw2") == false)
        // The same credentials in every URL, or some without: one authentication.
        let same = try NATSConnectionConfiguration(servers: ["nats://alice:Pw1@h1", "nats://h2", "nats://alice:Pw1@h3"])
        #expect(try same.resolvedAuthentication() == .userPassword(user: "alice", password: "Pw1"))
        // From environment-style configuration, naming both variables.
        for (key, value) in [("user", "bob"), ("token", "EnvT0k"), ("credentialsFile", "/x.creds")] {
            var values: [AbsoluteConfigKey: ConfigValue] = ["servers": "nats://alice:Url2PW@h1:4222", AbsoluteConfigKey(stringLiteral: key): ConfigValue(stringLiteral: value)]
            if key == "user" { values["password"] = "EnvPW" }
            let provider = InMemoryProvider(values: values)
            let envError = #expect(throws: NATSError.self) {
                try NATSConnectionConfiguration(config: ConfigReader(provider: provider), keyPrefix: "EVENT_BUS_NATS_")
            }
            #expect(envError?.code == .invalidConfiguration)
            #expect(envError?.message.contains("EVENT_BUS_NATS_SERVERS") == true, "\(envError?.message ?? "")")
            #expect(envError?.message.contains("choose one") == true)
            for secret in ["Url2PW", "EnvT0k", "EnvPW"] { #expect(envError?.description.contains(secret) == false) }
        }
    }

    @Test func conflictFailsBeforeConnecting() async throws {
        // No server listens there: only a check before the wire gives this error.
        let port = try NATSServerProcess.freePort()
        var configuration = try NATSConnectionConfiguration(servers: ["nats://alice:Url3PW@127.0.0.1:\(port)"])
        configuration.authentication = .userPassword(user: "bob", password: "Cfg3PW")
        configuration.connectTimeout = .milliseconds(300)
        do {
            _ = try await NATSConnection.connect(configuration: configuration)
            Issue.record("connected")
        } catch {
            #expect(error.code == .invalidConfiguration, "\(error)")
            #expect(!error.description.contains("Url3PW") && !error.description.contains("Cfg3PW"))
        }
    }
}

@Suite("Server URL credentials against a real server", .serialized)
struct ServerURLCredentialsServerTests {
    static let password = "S3c,ret@PW"
    static let encodedPassword = "S3c%2Cret%40PW"

    /// Strings that would reveal the password, whole or in part.
    static let leaks = [password, encodedPassword, "S3c,", "ret@PW", "S3c%2C"]

    @Test func percentEncodedPasswordConnects() async throws {
        let server = try await NATSServerProcess.started(jetStream: false, arguments: ["--user", "alice", "--pass", Self.password])
        defer { server.kill() }
        var configuration = try NATSConnectionConfiguration(
            servers: ["nats://alice:\(Self.encodedPassword)@127.0.0.1:\(server.port)"])
        configuration.connectTimeout = .seconds(2)
        let connection = try await NATSConnection.connect(configuration: configuration)
        try connection.publish(subject: "check", payload: "x")
        try await connection.flush()
        let connected = try #require(connection.connectedServer)
        #expect(connected.contains("127.0.0.1:\(server.port)"))
        for leak in Self.leaks { #expect(!connected.contains(leak)) }
        await connection.close()

        // The server really checks: the raw, undecoded text is the wrong password.
        var wrong = try NATSConnectionConfiguration(servers: ["nats://alice:S3c%252Cret%2540PW@127.0.0.1:\(server.port)"])
        wrong.reconnect.maxAttempts = .limited(0)
        do {
            _ = try await NATSConnection.connect(configuration: wrong)
            Issue.record("connected with a wrong password")
        } catch {
            #expect(error.code == .authenticationFailed, "\(error)")
            for leak in Self.leaks { #expect(!error.description.contains(leak)) }
        }
    }

    @Test func tokenInURLConnects() async throws {
        let server = try await NATSServerProcess.started(jetStream: false, arguments: ["--auth", "T0k,en@1"])
        defer { server.kill() }
        let configuration = try NATSConnectionConfiguration(servers: ["nats://T0k%2Cen%401@127.0.0.1:\(server.port)"])
        let connection = try await NATSConnection.connect(configuration: configuration)
        try await connection.flush()
        await connection.close()
    }

    /// Connection logs at trace level, including a reconnect, never hold the password.
    @Test func logsNeverHoldThePassword() async throws {
        let lines = Collected<String>()
        var logger = Logger(label: "secret-test") { _ in CapturingLogHandler(lines: lines) }
        logger.logLevel = .trace

        let server = try await NATSServerProcess.started(jetStream: false, arguments: ["--user", "alice", "--pass", Self.password])
        defer { server.kill() }
        var configuration = try NATSConnectionConfiguration(
            servers: ["nats://alice:\(Self.encodedPassword)@127.0.0.1:\(server.port)"])
        configuration.reconnect.wait = .milliseconds(100)
        configuration.reconnect.maxAttempts = .unlimited
        let connection = try await NATSConnection.connect(configuration: configuration, logger: logger)
        let events = await EventRecorder(connection)
        await server.stopped()
        try await server.restarted()
        #expect(await events.waitFor { if case .reconnected = $0 { true } else { false } })
        try await connection.flush()
        await connection.close()

        // Finding 1's form: a password-only URL (this server has no authentication).
        let open = try await NATSServerProcess.started(jetStream: false)
        defer { open.kill() }
        let passwordOnly = try NATSConnectionConfiguration(servers: ["nats://:S3cretPW@127.0.0.1:\(open.port)"])
        let second = try await NATSConnection.connect(configuration: passwordOnly, logger: logger)
        #expect(second.connectedServer.map { !$0.contains("S3cretPW") } == true)
        await second.close()

        let logged = lines.values
        #expect(logged.contains { $0.contains("NATS connected") }, "\(logged)")
        #expect(logged.contains { $0.contains("NATS reconnected") }, "\(logged)")
        for line in logged {
            for leak in Self.leaks + ["S3cretPW"] { #expect(!line.contains(leak), "\(line)") }
        }
    }
}

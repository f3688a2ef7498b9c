public import Configuration

extension NATSConnectionConfiguration {
    /// Reads a configuration from swift-configuration, for example from environment variables.
    ///
    /// The library does not scope its keys: the application does (for example
    /// `config.scoped(to: "nats")` reads `NATS_SERVERS` from the environment). Missing keys keep
    /// their defaults. Keys, relative to the reader's scope:
    ///
    /// | key | meaning |
    /// | --- | --- |
    /// | `servers` | comma-separated server URLs (``NATSServerURL/parseList(_:)``; a comma in credentials is written `%2C`) |
    /// | `name` | connection name |
    /// | `connectTimeoutMs` | connect timeout |
    /// | `discoverServers`, `randomizeServers`, `noEcho`, `sendAsap` | booleans |
    /// | `reconnect.maxAttempts` | attempts per server, `-1` for unlimited |
    /// | `reconnect.waitMs`, `reconnect.jitterMs`, `reconnect.jitterTlsMs` | reconnect timing |
    /// | `reconnect.bufferBytes` | publish buffer while disconnected |
    /// | `pingIntervalMs`, `maxPingsOut` | dead-connection detection |
    /// | `writeImmediatelyAfterIdleUs` | microseconds of quiet after which a publish is written at once; `0` turns it off |
    /// | `maxControlLine` | the servers' `max_control_line` in bytes (default 4,096) |
    /// | `pending.messages`, `pending.bytes` | subscription buffer limits |
    /// | `token` (secret), `user`, `password` (secret), `credentialsFile`, `nkey.publicKey` + `nkey.seedFile`, `nkey.seed` (secret) | authentication: one method |
    /// | `tls.caFile`, `tls.certificateFile`, `tls.keyFile`, `tls.expectedHostname` | TLS |
    /// | `tls.serverVerification` | `full` (default), `certificateOnly` or `none` |
    ///
    /// - Parameters:
    ///   - config: The reader, already scoped by the application.
    ///   - keyPrefix: How errors name the keys' scope (for example `"EVENT_BUS_NATS_"` so that an
    ///     error names the environment variable a user has to fix). Empty by default.
    /// - Throws: ``NATSError`` with code ``NATSError/Code/invalidConfiguration`` naming the key,
    ///   the value and what is accepted, or ``NATSError/Code/invalidURL``.
    public init(config: ConfigReader, keyPrefix: String = "") throws(NATSError) {
        let values = ConfigValues(config: config, keyPrefix: keyPrefix)
        // Secret: URLs may carry credentials.
        let serverList = values.string("servers", isSecret: true) ?? "nats://127.0.0.1:4222"
        if serverList.split(separator: ",").allSatisfy({ $0.trimmingSpaces.isEmpty }) {
            throw NATSError(.invalidConfiguration, "\(values.name("servers")) is empty: give at least one server URL")
        }
        let servers: [NATSServerURL]
        do {
            servers = try NATSServerURL.parseList(serverList)
        } catch {
            throw NATSError(.invalidURL, "invalid value for \(values.name("servers")): \(error.message)")
        }
        self.init(servers: servers)
        if let value = try values.bool("discoverServers") { discoverServers = value }
        if let value = try values.bool("randomizeServers") { randomizeServers = value }
        if let value = try values.bool("noEcho") { noEcho = value }
        if let value = try values.bool("sendAsap") { sendAsap = value }
        name = values.string("name")
        if let value = try values.milliseconds("connectTimeoutMs", minimum: 1) { connectTimeout = value }
        if let value = try values.int("reconnect.maxAttempts", minimum: -1) {
            reconnect.maxAttempts = value < 0 ? .unlimited : .limited(value)
        }
        if let value = try values.milliseconds("reconnect.waitMs", minimum: 0) { reconnect.wait = value }
        if let value = try values.milliseconds("reconnect.jitterMs", minimum: 0) { reconnect.jitter = value }
        if let value = try values.milliseconds("reconnect.jitterTlsMs", minimum: 0) { reconnect.jitterTLS = value }
        if let value = try values.int("reconnect.bufferBytes", minimum: 0) { reconnect.bufferSize = value }
        if let value = try values.milliseconds("pingIntervalMs", minimum: 1) { pingInterval = value }
        if let value = try values.int("maxPingsOut", minimum: 1) { maxPingsOut = value }
        if let value = try values.int("writeImmediatelyAfterIdleUs", minimum: 0) {
            writeImmediatelyAfterIdle = value == 0 ? nil : .microseconds(value)
        }
        if let value = try values.int("maxControlLine", minimum: NATSValidation.minimumMaxControlLine) {
            maxControlLine = value
        }
        if let value = try values.int("pending.messages", minimum: 1) { subscriptionLimits.messages = value }
        if let value = try values.int("pending.bytes", minimum: 1) { subscriptionLimits.bytes = value }

        let token = values.string("token", isSecret: true)
        let user = values.string("user")
        let password = values.string("password", isSecret: true)
        let credentialsFile = values.string("credentialsFile")
        let nkeyPublicKey = values.string("nkey.publicKey")
        let nkeySeedFile = values.string("nkey.seedFile")
        let nkeySeed = values.string("nkey.seed", isSecret: true)
        var chosen: [String] = []
        if let token {
            authentication = .token(token)
            chosen.append(values.name("token"))
        }
        if user != nil || password != nil {
            guard let user, let password else {
                throw NATSError(
                    .invalidConfiguration,
                    "\(values.name("user")) and \(values.name("password")) must be given together")
            }
            authentication = .userPassword(user: user, password: password)
            chosen.append(values.name("user"))
        }
        if let credentialsFile {
            authentication = .credentialsFile(path: credentialsFile)
            chosen.append(values.name("credentialsFile"))
        }
        if nkeyPublicKey != nil || nkeySeedFile != nil {
            guard let nkeyPublicKey, let nkeySeedFile else {
                throw NATSError(
                    .invalidConfiguration,
                    "\(values.name("nkey.publicKey")) and \(values.name("nkey.seedFile")) must be given together")
            }
            authentication = .nkeySeedFile(publicKey: nkeyPublicKey, seedFile: nkeySeedFile)
            chosen.append(values.name("nkey.seedFile"))
        }
        if let nkeySeed {
            authentication = .nkeySeed(nkeySeed)
            chosen.append(values.name("nkey.seed"))
        }
        if chosen.count > 1 {
            throw NATSError(
                .invalidConfiguration,
                "more than one authentication method is configured (\(chosen.joined(separator: ", "))): choose one")
        }
        if let withCredentials = servers.first(where: { $0.credentials != nil }), let other = chosen.first {
            throw NATSError(
                .invalidConfiguration,
                "credentials in server URL \(withCredentials) (\(values.name("servers"))) and \(other) are both set: choose one")
        }
        var verification = TLS.ServerVerification.full
        if let text = values.string("tls.serverVerification") {
            guard let value = TLS.ServerVerification(rawValue: text) else {
                throw NATSError(
                    .invalidConfiguration,
                    "invalid value '\(text)' for \(values.name("tls.serverVerification")): use one of "
                        + TLS.ServerVerification.allCases.map(\.rawValue).joined(separator: ", "))
            }
            verification = value
        }
        let tls = TLS(
            caFile: values.string("tls.caFile"),
            certificateFile: values.string("tls.certificateFile"),
            keyFile: values.string("tls.keyFile"),
            expectedHostname: values.string("tls.expectedHostname"),
            serverVerification: verification)
        if tls != TLS() { self.tls = tls }
        try validate()
    }
}

/// Reads configuration values as strings and parses them itself, so that a bad value fails with
/// a message naming the key, the value and what is accepted.
package struct ConfigValues {
    package let config: ConfigReader
    package let keyPrefix: String

    package init(config: ConfigReader, keyPrefix: String) {
        self.config = config
        self.keyPrefix = keyPrefix
    }

    /// The key as the user sees it: with the prefix, in environment-variable spelling when the
    /// prefix looks like one.
    package func name(_ key: String) -> String {
        guard !keyPrefix.isEmpty else { return "'\(key)'" }
        if keyPrefix.uppercased() == keyPrefix {
            var spelled = ""
            for character in key {
                if character == "." {
                    spelled.append("_")
                } else if character.isUppercase {
                    spelled.append("_")
                    spelled.append(character)
                } else {
                    spelled.append(contentsOf: character.uppercased())
                }
            }
            return keyPrefix + spelled
        }
        return "'\(keyPrefix)\(key)'"
    }

    package func string(_ key: String, isSecret: Bool = false) -> String? {
        guard let value = config.string(forKey: ConfigKey(key), isSecret: isSecret) else { return nil }
        let trimmed = value.trimmingSpaces
        return trimmed.isEmpty ? nil : trimmed
    }

    package func int(_ key: String, minimum: Int) throws(NATSError) -> Int? {
        guard let text = string(key) else { return nil }
        guard let value = Int(text), value >= minimum else {
            throw NATSError(
                .invalidConfiguration,
                "invalid value '\(text)' for \(name(key)): expected a whole number ≥ \(minimum)")
        }
        return value
    }

    package func milliseconds(_ key: String, minimum: Int) throws(NATSError) -> Duration? {
        guard let text = string(key) else { return nil }
        guard let value = Int(text), value >= minimum else {
            throw NATSError(
                .invalidConfiguration,
                "invalid value '\(text)' for \(name(key)): expected whole milliseconds ≥ \(minimum)")
        }
        return .milliseconds(value)
    }

    package func bool(_ key: String) throws(NATSError) -> Bool? {
        guard let text = string(key) else { return nil }
        switch text.lowercased() {
        case "true", "yes", "1", "on": return true
        case "false", "no", "0", "off": return false
        default:
            throw NATSError(
                .invalidConfiguration,
                "invalid value '\(text)' for \(name(key)): expected one of true, false, yes, no, 1, 0, on, off")
        }
    }
}

extension StringProtocol {
    /// The text without leading and trailing spaces, tabs and newlines.
    package var trimmingSpaces: String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }
        guard let first = firstIndex(where: { !isSpace($0) }) else { return "" }
        let last = lastIndex(where: { !isSpace($0) })!
        return String(self[first...last])
    }
}

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
    /// ``configurationKeys`` lists every key read here.
    ///
    /// - Throws: ``NATSError`` with code ``NATSError/Code/invalidConfiguration`` naming the key,
    ///   the value and what is accepted, or ``NATSError/Code/invalidURL``.
    public init(config: ConfigReader, keyPrefix: String = "") throws(NATSError) {
        let values = ConfigValues<ConfigurationKey>(config: config, keyPrefix: keyPrefix)
        let serverList = values.string(.servers) ?? "nats://127.0.0.1:4222"
        if serverList.split(separator: ",").allSatisfy({ $0.trimmingSpaces.isEmpty }) {
            throw NATSError(.invalidConfiguration, "\(values.name(.servers)) is empty: give at least one server URL")
        }
        let servers: [NATSServerURL]
        do {
            servers = try NATSServerURL.parseList(serverList)
        } catch {
            throw NATSError(.invalidURL, "invalid value for \(values.name(.servers)): \(error.message)")
        }
        self.init(servers: servers)
        if let value = try values.bool(.discoverServers) { discoverServers = value }
        if let value = try values.bool(.randomizeServers) { randomizeServers = value }
        if let value = try values.bool(.noEcho) { noEcho = value }
        if let value = try values.bool(.sendAsap) { sendAsap = value }
        name = values.string(.name)
        if let value = try values.milliseconds(.connectTimeoutMs, minimum: 1) { connectTimeout = value }
        if let value = try values.int(.reconnectMaxAttempts, minimum: -1) {
            reconnect.maxAttempts = value < 0 ? .unlimited : .limited(value)
        }
        if let value = try values.milliseconds(.reconnectWaitMs, minimum: 0) { reconnect.wait = value }
        if let value = try values.milliseconds(.reconnectJitterMs, minimum: 0) { reconnect.jitter = value }
        if let value = try values.milliseconds(.reconnectJitterTlsMs, minimum: 0) { reconnect.jitterTLS = value }
        if let value = try values.int(.reconnectBufferBytes, minimum: 0) { reconnect.bufferSize = value }
        if let value = try values.milliseconds(.pingIntervalMs, minimum: 1) { pingInterval = value }
        if let value = try values.int(.maxPingsOut, minimum: 1) { maxPingsOut = value }
        if let value = try values.int(.writeImmediatelyAfterIdleUs, minimum: 0) {
            writeImmediatelyAfterIdle = value == 0 ? nil : .microseconds(value)
        }
        if let value = try values.int(.maxControlLine, minimum: NATSValidation.minimumMaxControlLine) {
            maxControlLine = value
        }
        if let value = try values.int(.pendingMessages, minimum: 1) { subscriptionLimits.messages = value }
        if let value = try values.int(.pendingBytes, minimum: 1) { subscriptionLimits.bytes = value }

        let token = values.string(.token)
        let user = values.string(.user)
        let password = values.string(.password)
        let credentialsFile = values.string(.credentialsFile)
        let nkeyPublicKey = values.string(.nkeyPublicKey)
        let nkeySeedFile = values.string(.nkeySeedFile)
        let nkeySeed = values.string(.nkeySeed)
        var chosen: [String] = []
        if let token {
            authentication = .token(token)
            chosen.append(values.name(.token))
        }
        if user != nil || password != nil {
            guard let user, let password else {
                throw NATSError(
                    .invalidConfiguration,
                    "\(values.name(.user)) and \(values.name(.password)) must be given together")
            }
            authentication = .userPassword(user: user, password: password)
            chosen.append(values.name(.user))
        }
        if let credentialsFile {
            authentication = .credentialsFile(path: credentialsFile)
            chosen.append(values.name(.credentialsFile))
        }
        if nkeyPublicKey != nil || nkeySeedFile != nil {
            guard let nkeyPublicKey, let nkeySeedFile else {
                throw NATSError(
                    .invalidConfiguration,
                    "\(values.name(.nkeyPublicKey)) and \(values.name(.nkeySeedFile)) must be given together")
            }
            authentication = .nkeySeedFile(publicKey: nkeyPublicKey, seedFile: nkeySeedFile)
            chosen.append(values.name(.nkeySeedFile))
        }
        if let nkeySeed {
            authentication = .nkeySeed(nkeySeed)
            chosen.append(values.name(.nkeySeed))
        }
        if chosen.count > 1 {
            throw NATSError(
                .invalidConfiguration,
                "more than one authentication method is configured (\(chosen.joined(separator: ", "))): choose one")
        }
        if let withCredentials = servers.first(where: { $0.credentials != nil }), let other = chosen.first {
            throw NATSError(
                .invalidConfiguration,
                "credentials in server URL \(withCredentials) (\(values.name(.servers))) and \(other) are both set: choose one")
        }
        var verification = TLS.ServerVerification.full
        if let text = values.string(.tlsServerVerification) {
            guard let value = TLS.ServerVerification(rawValue: text) else {
                throw NATSError(
                    .invalidConfiguration,
                    "invalid value '\(text)' for \(values.name(.tlsServerVerification)): use one of "
                        + TLS.ServerVerification.allCases.map(\.rawValue).joined(separator: ", "))
            }
            verification = value
        }
        let tls = TLS(
            caFile: values.string(.tlsCaFile),
            certificateFile: values.string(.tlsCertificateFile),
            keyFile: values.string(.tlsKeyFile),
            expectedHostname: values.string(.tlsExpectedHostname),
            serverVerification: verification)
        if tls != TLS() { self.tls = tls }
        try validate()
    }

    /// The keys ``init(config:keyPrefix:)`` reads, relative to the reader's scope (for example
    /// `reconnect.waitMs`). It is the list the reader itself reads from, so an application can
    /// check its configuration for keys this version does not know.
    public static var configurationKeys: [String] { ConfigurationKey.allCases.map(\.rawValue) }

    /// The keys of the connection: the one table ``init(config:keyPrefix:)`` reads and
    /// ``configurationKeys`` lists.
    package enum ConfigurationKey: String, ConfigurationKeyTable {
        case servers
        case name
        case connectTimeoutMs
        case discoverServers
        case randomizeServers
        case noEcho
        case sendAsap
        case reconnectMaxAttempts = "reconnect.maxAttempts"
        case reconnectWaitMs = "reconnect.waitMs"
        case reconnectJitterMs = "reconnect.jitterMs"
        case reconnectJitterTlsMs = "reconnect.jitterTlsMs"
        case reconnectBufferBytes = "reconnect.bufferBytes"
        case pingIntervalMs
        case writeImmediatelyAfterIdleUs
        case maxPingsOut
        case maxControlLine
        case pendingMessages = "pending.messages"
        case pendingBytes = "pending.bytes"
        case token
        case user
        case password
        case credentialsFile
        case nkeyPublicKey = "nkey.publicKey"
        case nkeySeedFile = "nkey.seedFile"
        case nkeySeed = "nkey.seed"
        case tlsCaFile = "tls.caFile"
        case tlsCertificateFile = "tls.certificateFile"
        case tlsKeyFile = "tls.keyFile"
        case tlsExpectedHostname = "tls.expectedHostname"
        case tlsServerVerification = "tls.serverVerification"

        package var isSecret: Bool {
            switch self {
            // URLs may carry credentials.
            case .servers, .token, .password, .nkeySeed: true
            default: false
            }
        }
    }
}

/// A module's table of configuration keys (relative to the reader's scope): the readers take only
/// its cases, and its `allCases` is the list of known keys, so the two cannot drift apart.
package protocol ConfigurationKeyTable: RawRepresentable<String>, CaseIterable, Sendable {
    /// Whether the value is a secret: read with `isSecret`, never printed or logged.
    var isSecret: Bool { get }
}

/// A duration written as whole milliseconds, the unit of the `...Ms` keys (swift-configuration
/// reads a `Duration` as whole seconds).
package struct ConfigMilliseconds: ExpressibleByConfigInt {
    package let configInt: Int

    package init?(configInt: Int) {
        self.configInt = configInt
    }

    package var duration: Duration { .milliseconds(configInt) }
}

/// Reads a key table's values with swift-configuration's typed readers, and turns a value they
/// cannot convert into an error naming the key, the value and what is accepted (the typed readers
/// answer `nil` both for a missing key and for a value they cannot convert).
package struct ConfigValues<Key: ConfigurationKeyTable> {
    package let config: ConfigReader
    package let keyPrefix: String

    package init(config: ConfigReader, keyPrefix: String) {
        self.config = config
        self.keyPrefix = keyPrefix
    }

    /// The key as the user sees it: with the prefix, in environment-variable spelling when the
    /// prefix looks like one.
    package func name(_ key: Key) -> String {
        Self.name(key.rawValue, keyPrefix: keyPrefix)
    }

    /// `key` (relative) as the user sees it under `keyPrefix`: `EVENT_BUS_NATS_` + `reconnect.waitMs`
    /// is `EVENT_BUS_NATS_RECONNECT_WAIT_MS`, the name swift-configuration's environment provider
    /// looks up; a lower-case prefix gives `'prefix.key'`.
    package static func name(_ key: String, keyPrefix: String) -> String {
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

    private func configKey(_ key: Key) -> ConfigKey { ConfigKey(key.rawValue) }

    /// The value as text, `nil` when missing or blank (an empty variable counts as not set).
    package func string(_ key: Key) -> String? {
        guard let value = config.string(forKey: configKey(key), isSecret: key.isSecret) else { return nil }
        let trimmed = value.trimmingSpaces
        return trimmed.isEmpty ? nil : trimmed
    }

    /// Whether the key has a value of any type (a typed provider may hold an int or a list).
    package func isSet(_ key: Key) -> Bool {
        // Secret keys stay secret here too: an access reporter sees every read.
        let (name, secret) = (configKey(key), key.isSecret)
        if let text = config.string(forKey: name, isSecret: secret) { return !text.trimmingSpaces.isEmpty }
        return config.int(forKey: name, isSecret: secret) != nil || config.bool(forKey: name, isSecret: secret) != nil
            || config.double(forKey: name, isSecret: secret) != nil || config.stringArray(forKey: name, isSecret: secret) != nil
    }

    /// Throws when the key holds a value the typed reader could not convert; `nil` when it is missing.
    private func unconvertible<Value>(_ key: Key, expected: String) throws(NATSError) -> Value? {
        guard let raw = config.string(forKey: configKey(key), isSecret: key.isSecret),
            !raw.trimmingSpaces.isEmpty
        else { return nil }
        let shown = key.isSecret ? "***" : raw
        throw NATSError(.invalidConfiguration, "invalid value '\(shown)' for \(name(key)): expected \(expected)")
    }

    package func int(_ key: Key, minimum: Int) throws(NATSError) -> Int? {
        let expected = "a whole number ≥ \(minimum)"
        guard let value = config.int(forKey: configKey(key), isSecret: key.isSecret) else {
            return try unconvertible(key, expected: expected)
        }
        guard value >= minimum else {
            throw NATSError(.invalidConfiguration, "invalid value '\(value)' for \(name(key)): expected \(expected)")
        }
        return value
    }

    package func milliseconds(_ key: Key, minimum: Int) throws(NATSError) -> Duration? {
        let expected = "whole milliseconds ≥ \(minimum)"
        guard let value = config.int(forKey: configKey(key), as: ConfigMilliseconds.self, isSecret: key.isSecret) else {
            return try unconvertible(key, expected: expected)
        }
        guard value.configInt >= minimum else {
            throw NATSError(.invalidConfiguration, "invalid value '\(value.configInt)' for \(name(key)): expected \(expected)")
        }
        return value.duration
    }

    package func bool(_ key: Key) throws(NATSError) -> Bool? {
        if let value = config.bool(forKey: configKey(key), isSecret: key.isSecret) { return value }
        // swift-configuration reads true/false/yes/no/1/0; on/off were always accepted too.
        switch string(key)?.lowercased() {
        case "on": return true
        case "off": return false
        default: return try unconvertible(key, expected: "one of true, false, yes, no, 1, 0, on, off")
        }
    }

    /// A comma list (or a provider's string array); blank entries are dropped.
    package func stringArray(_ key: Key) throws(NATSError) -> [String]? {
        guard let value = config.stringArray(forKey: configKey(key), isSecret: key.isSecret) else {
            return try unconvertible(key, expected: "a comma-separated list")
        }
        return value.map(\.trimmingSpaces).filter { !$0.isEmpty }
    }

    /// One of an enumeration's raw values, case-insensitively.
    package func choice<Value: RawRepresentable<String> & CaseIterable>(_ key: Key, as type: Value.Type) throws(NATSError) -> Value? {
        guard let text = string(key) else { return nil }
        guard let value = Value.allCases.first(where: { $0.rawValue.lowercased() == text.lowercased() }) else {
            throw NATSError(
                .invalidConfiguration,
                "invalid value '\(key.isSecret ? "***" : text)' for \(name(key)): expected one of \(Value.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return value
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

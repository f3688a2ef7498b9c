public import Configuration
public import EventBus
public import NATS

extension JetStreamEventBus.Configuration {
    /// Reads the JetStream settings from swift-configuration, for example from environment
    /// variables, for the given connection.
    ///
    /// The library does not scope its keys: the application does (`EventBusSettings` reads them
    /// under `jetstream`, so that `EVENT_BUS_JETSTREAM_STREAM` sets ``streamName``). Missing keys
    /// keep their defaults. Keys, relative to the reader's scope (``configurationKeys`` lists them):
    ///
    /// | key | property | accepted |
    /// | --- | --- | --- |
    /// | `stream` | ``streamName`` | a stream name (no `.`, `*`, `>`, `/`, whitespace) |
    /// | `subjectPrefix` | ``subjectPrefix`` | a literal subject |
    /// | `subjects` | ``streamSubjects`` | comma list of subjects, at least one covering `<subjectPrefix>.>` |
    /// | `replicas` | ``replicas`` | 1-5 |
    /// | `storage` | ``storage`` | `file`, `memory` |
    /// | `maxAgeMs` | ``maxAge`` | whole milliseconds ≥ 0 (0: forever) |
    /// | `duplicateWindowMs` | ``duplicateWindow`` | whole milliseconds ≥ 1 |
    /// | `ackWaitMs` | ``ackWait`` | whole milliseconds ≥ 1 |
    /// | `maxDeliver` | ``maxDeliver`` | ≥ 1 |
    /// | `maxAckPending` | ``maxAckPending`` | ≥ 1 |
    /// | `publishTimeoutMs` | ``publishTimeout`` | whole milliseconds ≥ 1 |
    /// | `groupConsumer` | ``groupConsumer`` | `pull`, `push` |
    /// | `streamUpdate` | ``streamUpdatePolicy`` | `never`, `update` |
    /// | `consumerIdleHeartbeatMs` | ``consumerIdleHeartbeat`` | whole milliseconds, 100-15000 |
    ///
    /// - Parameters:
    ///   - config: The reader, already scoped by the application.
    ///   - connection: The NATS connection (read with
    ///     `NATSConnectionConfiguration(config:keyPrefix:)` under its own scope).
    ///   - keyPrefix: How errors name the keys' scope, for example `"EVENT_BUS_JETSTREAM_"` so that
    ///     an error names the environment variable to fix. Empty by default.
    /// - Throws: `EventBusError` `.invalidOption` naming the key, the value and what is
    ///   accepted, or the settings that cannot work together and why (see ``validate()``).
    public init(config: ConfigReader, connection: NATSConnectionConfiguration, keyPrefix: String = "") throws(EventBusError) {
        self.init(connection: connection)
        let values = ConfigValues<ConfigurationKey>(config: config, keyPrefix: keyPrefix)
        do throws(NATSError) {
            if let stream = values.string(.stream) {
                do throws(NATSError) {
                    try NATSJetStream.validateName(stream, what: "stream name")
                } catch {
                    throw NATSError(.invalidConfiguration, "invalid value for \(values.name(.stream)): \(error.message)")
                }
                streamName = stream
            }
            if let prefix = values.string(.subjectPrefix) {
                if let rule = NATSValidation.subjectViolation(prefix, for: .publish) {
                    throw NATSError(.invalidConfiguration, "invalid value '\(prefix)' for \(values.name(.subjectPrefix)): \(rule)")
                }
                subjectPrefix = prefix
            }
            if let subjects = try values.stringArray(.subjects) {
                for subject in subjects {
                    if let rule = NATSValidation.subjectViolation(subject, for: .subscribe) {
                        throw NATSError(.invalidConfiguration, "invalid subject '\(subject)' in \(values.name(.subjects)): \(rule)")
                    }
                }
                if subjects.isEmpty {
                    throw NATSError(.invalidConfiguration, "\(values.name(.subjects)) is empty: give at least one subject")
                }
                streamSubjects = subjects
            }
            if let value = try values.int(.replicas, minimum: 1) {
                guard value <= 5 else {
                    throw NATSError(.invalidConfiguration, "invalid value '\(value)' for \(values.name(.replicas)): expected 1 to 5")
                }
                replicas = value
            }
            if let value = try values.choice(.storage, as: NATSStreamConfiguration.Storage.self) { storage = value }
            if let value = try values.milliseconds(.maxAgeMs, minimum: 0) { maxAge = value }
            if let value = try values.milliseconds(.duplicateWindowMs, minimum: 1) { duplicateWindow = value }
            if let value = try values.milliseconds(.ackWaitMs, minimum: 1) { ackWait = value }
            if let value = try values.int(.maxDeliver, minimum: 1) { maxDeliver = value }
            if let value = try values.int(.maxAckPending, minimum: 1) { maxAckPending = value }
            if let value = try values.milliseconds(.publishTimeoutMs, minimum: 1) { publishTimeout = value }
            if let value = try values.choice(.groupConsumer, as: JetStreamEventBus.GroupConsumerKind.self) { groupConsumer = value }
            if let value = try values.choice(.streamUpdate, as: JetStreamEventBus.StreamUpdatePolicy.self) { streamUpdatePolicy = value }
            if let value = try values.milliseconds(.consumerIdleHeartbeatMs, minimum: 100) {
                guard value <= .seconds(15) else {
                    throw NATSError(
                        .invalidConfiguration,
                        "invalid value '\(value)' for \(values.name(.consumerIdleHeartbeatMs)): expected 100 to 15000 (half of a pull request's 30 s)")
                }
                consumerIdleHeartbeat = value
            }
            try checkCombinations(naming: { values.name($0) })
            try validate()
        } catch {
            throw EventBusError(.invalidOption, error.message, underlying: error)
        }
    }

    /// The keys ``init(config:connection:keyPrefix:)`` reads, relative to the reader's scope. It
    /// is the list the reader itself reads from, so an application can check its configuration
    /// for keys this version does not know.
    public static var configurationKeys: [String] { ConfigurationKey.allCases.map(\.rawValue) }

    /// The JetStream keys: the one table ``init(config:connection:keyPrefix:)`` reads and
    /// ``configurationKeys`` lists.
    package enum ConfigurationKey: String, ConfigurationKeyTable {
        case stream
        case subjectPrefix
        case subjects
        case replicas
        case storage
        case maxAgeMs
        case duplicateWindowMs
        case ackWaitMs
        case maxDeliver
        case maxAckPending
        case publishTimeoutMs
        case groupConsumer
        case streamUpdate
        case consumerIdleHeartbeatMs

        package var isSecret: Bool { false }

        /// The property the key sets, for messages about a configuration made in code.
        var property: String {
            switch self {
            case .stream: "streamName"
            case .subjects: "streamSubjects"
            case .maxAgeMs: "maxAge"
            case .duplicateWindowMs: "duplicateWindow"
            case .ackWaitMs: "ackWait"
            case .publishTimeoutMs: "publishTimeout"
            case .streamUpdate: "streamUpdatePolicy"
            case .consumerIdleHeartbeatMs: "consumerIdleHeartbeat"
            default: rawValue
            }
        }
    }

    /// Rejects settings that are each valid but cannot work together, naming them with `name`.
    ///
    /// - The stream's subjects must cover `<subjectPrefix>.>`: events (and their dead letters) are
    ///   published there, and a subject no stream captures fails every publish.
    /// - The duplicate window must be at least the ack wait and the publish timeout. The bus
    ///   publishes every event with its id as `Nats-Msg-Id`, so a publish is always retried by id:
    ///   by the caller after a publish timeout, or by a handler that is redelivered after the ack
    ///   wait and publishes its follow-up event again. A retry after the window is stored twice.
    ///   A max age shorter than the ack wait lifts the second rule: an event older than the max
    ///   age is gone and never redelivered.
    func checkCombinations(naming name: (ConfigurationKey) -> String) throws(NATSError) {
        let capture = "\(subjectPrefix).>"
        let subjects = effectiveStreamSubjects
        if !subjects.contains(where: { JetStreamEventBus.StreamCheck.subject($0, covers: capture) }) {
            throw NATSError(
                .invalidConfiguration,
                "\(name(.subjects)) (\(subjects.joined(separator: ","))) do not cover \(name(.subjectPrefix)) '\(subjectPrefix)': events are published to '\(capture)' and no stream subject would store them; add '\(capture)' to \(name(.subjects)) or change the prefix")
        }
        let window = duplicateWindow
        if ackWait > window && (maxAge == .zero || ackWait < maxAge) {
            throw NATSError(
                .invalidConfiguration,
                "\(name(.ackWaitMs)) (\(Self.milliseconds(ackWait))) is longer than \(name(.duplicateWindowMs)) (\(Self.milliseconds(window))): events are published with their id as Nats-Msg-Id, and a handler redelivered after the ack wait that publishes its next event again (same id) would have it stored twice; make the duplicate window at least the ack wait")
        }
        if publishTimeout > window {
            throw NATSError(
                .invalidConfiguration,
                "\(name(.publishTimeoutMs)) (\(Self.milliseconds(publishTimeout))) is longer than \(name(.duplicateWindowMs)) (\(Self.milliseconds(window))): a publish that timed out is retried with the same id, and a retry after the window would be stored twice; make the duplicate window at least the publish timeout")
        }
    }

    private static func milliseconds(_ duration: Duration) -> String {
        let (seconds, attoseconds) = duration.components
        return "\(seconds * 1_000 + attoseconds / 1_000_000_000_000_000) ms"
    }
}

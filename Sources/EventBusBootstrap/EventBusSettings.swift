public import Configuration
import EventBus
public import EventBusJetStream
import NATS

/// Which ``EventBus`` backend a service uses, and how it is configured, read from
/// swift-configuration (for example environment variables).
///
/// The library does not scope its keys; the application does, usually
/// `config.scoped(to: "eventBus")`, so that the keys below are read from `EVENT_BUS_...`
/// variables. ``fromEnvironment()`` does exactly that.
///
/// | key (variable) | default | meaning |
/// | --- | --- | --- |
/// | `backend` (`EVENT_BUS_BACKEND`) | `memory` | `memory` or `jetstream` |
/// | `nats.*` (`EVENT_BUS_NATS_*`) | | the NATS connection, see ``NATSConnectionConfiguration/init(config:keyPrefix:)`` |
/// | `jetstream.stream` (`EVENT_BUS_JETSTREAM_STREAM`) | `EVENTS` | stream name |
/// | `jetstream.subjectPrefix` (`EVENT_BUS_JETSTREAM_SUBJECT_PREFIX`) | `events` | NATS subject prefix of events |
/// | `jetstream.subjects` (`EVENT_BUS_JETSTREAM_SUBJECTS`) | `<prefix>.>` | the stream's subjects, comma list |
/// | `jetstream.replicas` (`EVENT_BUS_JETSTREAM_REPLICAS`) | `1` | 1-5 |
/// | `jetstream.storage` (`EVENT_BUS_JETSTREAM_STORAGE`) | `file` | `file` or `memory` |
/// | `jetstream.maxAgeMs` (`EVENT_BUS_JETSTREAM_MAX_AGE_MS`) | 7 days | retention, 0 = unlimited |
/// | `jetstream.duplicateWindowMs` (`EVENT_BUS_JETSTREAM_DUPLICATE_WINDOW_MS`) | 120000 | dedupe window |
/// | `jetstream.ackWaitMs` (`EVENT_BUS_JETSTREAM_ACK_WAIT_MS`) | 30000 | default ack wait |
/// | `jetstream.maxDeliver` (`EVENT_BUS_JETSTREAM_MAX_DELIVER`) | 5 | default attempts before dead letter |
/// | `jetstream.maxAckPending` (`EVENT_BUS_JETSTREAM_MAX_ACK_PENDING`) | 1000 | default max in flight per group |
/// | `jetstream.publishTimeoutMs` (`EVENT_BUS_JETSTREAM_PUBLISH_TIMEOUT_MS`) | 10000 | how long a publish waits for its ack |
/// | `jetstream.groupConsumer` (`EVENT_BUS_JETSTREAM_GROUP_CONSUMER`) | `pull` | `pull` or `push` (deliver group) |
/// | `jetstream.streamUpdate` (`EVENT_BUS_JETSTREAM_STREAM_UPDATE`) | `never` | `never` (check an existing stream, change nothing) or `update` (apply the settings above to it, never lowering replicas) |
public struct EventBusSettings: Sendable, CustomStringConvertible {
    /// The backends.
    public enum Backend: String, Sendable, CaseIterable {
        /// ``InMemoryEventBus``: one process, nothing to set up.
        case memory
        /// ``JetStreamEventBus``: NATS JetStream.
        case jetstream
    }

    /// The chosen backend.
    public var backend: Backend
    /// The JetStream settings (also read when the backend is `memory`, so that a bad value is
    /// reported whichever backend is chosen).
    public var jetStream: JetStreamEventBus.Configuration

    /// Settings for the in-memory backend.
    public static var memory: EventBusSettings {
        // The default server list always parses.
        EventBusSettings(backend: .memory, jetStream: .init(connection: try! NATSConnectionConfiguration()))
    }

    /// Creates settings.
    public init(backend: Backend, jetStream: JetStreamEventBus.Configuration) {
        self.backend = backend
        self.jetStream = jetStream
    }

    /// Reads the settings from the environment: `EVENT_BUS_*` variables.
    public static func fromEnvironment() throws -> EventBusSettings {
        let reader = ConfigReader(provider: EnvironmentVariablesProvider())
        return try EventBusSettings(config: reader.scoped(to: "eventBus"), variablePrefix: "EVENT_BUS_")
    }

    /// Reads the settings from a reader the application scoped (for example to `eventBus`).
    ///
    /// - Parameter variablePrefix: How errors name the keys (default `EVENT_BUS_`, matching a
    ///   reader scoped to `eventBus` over environment variables).
    /// - Throws: ``EventBusError`` `.invalidOption` naming the variable, the value and what is
    ///   accepted.
    public init(config: ConfigReader, variablePrefix: String = "EVENT_BUS_") throws {
        let values = ConfigValues(config: config, keyPrefix: variablePrefix)
        func invalid(_ error: NATSError) -> EventBusError {
            EventBusError(.invalidOption, error.message, underlying: error)
        }
        let backendText = values.string("backend")?.lowercased() ?? Backend.memory.rawValue
        guard let backend = Backend(rawValue: backendText) else {
            throw EventBusError(
                .invalidOption,
                "invalid value '\(backendText)' for \(values.name("backend")): expected one of \(Backend.allCases.map(\.rawValue).joined(separator: ", "))"
            )
        }
        self.backend = backend
        let connection: NATSConnectionConfiguration
        do {
            connection = try NATSConnectionConfiguration(config: config.scoped(to: "nats"), keyPrefix: variablePrefix + "NATS_")
        } catch {
            throw invalid(error)
        }
        var jetStream = JetStreamEventBus.Configuration(connection: connection)
        let js = ConfigValues(config: config.scoped(to: "jetstream"), keyPrefix: variablePrefix + "JETSTREAM_")
        do throws(NATSError) {
            if let stream = js.string("stream") {
                do throws(NATSError) {
                    try NATSJetStream.validateName(stream, what: "stream name")
                } catch {
                    throw NATSError(.invalidConfiguration, "invalid value for \(js.name("stream")): \(error.message)")
                }
                jetStream.streamName = stream
            }
            if let prefix = js.string("subjectPrefix") {
                if let rule = NATSValidation.subjectViolation(prefix, for: .publish) {
                    throw NATSError(.invalidConfiguration, "invalid value '\(prefix)' for \(js.name("subjectPrefix")): \(rule)")
                }
                jetStream.subjectPrefix = prefix
            }
            if let subjects = js.string("subjects") {
                let list = subjects.split(separator: ",").map { $0.trimmingSpaces }.filter { !$0.isEmpty }
                for subject in list {
                    if let rule = NATSValidation.subjectViolation(subject, for: .subscribe) {
                        throw NATSError(.invalidConfiguration, "invalid subject '\(subject)' in \(js.name("subjects")): \(rule)")
                    }
                }
                if list.isEmpty {
                    throw NATSError(.invalidConfiguration, "\(js.name("subjects")) is empty: give at least one subject")
                }
                jetStream.streamSubjects = list
            }
            if let replicas = try js.int("replicas", minimum: 1) {
                guard replicas <= 5 else {
                    throw NATSError(.invalidConfiguration, "invalid value '\(replicas)' for \(js.name("replicas")): expected 1 to 5")
                }
                jetStream.replicas = replicas
            }
            if let storage = js.string("storage")?.lowercased() {
                guard let value = NATSStreamConfiguration.Storage(rawValue: storage) else {
                    throw NATSError(
                        .invalidConfiguration,
                        "invalid value '\(storage)' for \(js.name("storage")): expected one of \(NATSStreamConfiguration.Storage.allCases.map(\.rawValue).joined(separator: ", "))"
                    )
                }
                jetStream.storage = value
            }
            if let maxAge = try js.milliseconds("maxAgeMs", minimum: 0) { jetStream.maxAge = maxAge }
            if let window = try js.milliseconds("duplicateWindowMs", minimum: 1) { jetStream.duplicateWindow = window }
            if let ackWait = try js.milliseconds("ackWaitMs", minimum: 1) { jetStream.ackWait = ackWait }
            if let maxDeliver = try js.int("maxDeliver", minimum: 1) { jetStream.maxDeliver = maxDeliver }
            if let maxAckPending = try js.int("maxAckPending", minimum: 1) { jetStream.maxAckPending = maxAckPending }
            if let timeout = try js.milliseconds("publishTimeoutMs", minimum: 1) { jetStream.publishTimeout = timeout }
            if let kind = js.string("groupConsumer")?.lowercased() {
                guard let value = JetStreamEventBus.GroupConsumerKind(rawValue: kind) else {
                    throw NATSError(
                        .invalidConfiguration,
                        "invalid value '\(kind)' for \(js.name("groupConsumer")): expected one of \(JetStreamEventBus.GroupConsumerKind.allCases.map(\.rawValue).joined(separator: ", "))"
                    )
                }
                jetStream.groupConsumer = value
            }
            if let policy = js.string("streamUpdate")?.lowercased() {
                guard let value = JetStreamEventBus.StreamUpdatePolicy(rawValue: policy) else {
                    throw NATSError(
                        .invalidConfiguration,
                        "invalid value '\(policy)' for \(js.name("streamUpdate")): expected one of \(JetStreamEventBus.StreamUpdatePolicy.allCases.map(\.rawValue).joined(separator: ", "))"
                    )
                }
                jetStream.streamUpdatePolicy = value
            }
            try jetStream.validate()
        } catch {
            throw invalid(error)
        }
        self.jetStream = jetStream
    }

    public var description: String {
        switch backend {
        case .memory:
            return "EventBusSettings(backend: memory)"
        case .jetstream:
            return "EventBusSettings(backend: jetstream, servers: \(jetStream.connection.servers.map(\.description)), stream: \(jetStream.streamName), subjects: \(jetStream.effectiveStreamSubjects), replicas: \(jetStream.replicas), storage: \(jetStream.storage.rawValue), stream update: \(jetStream.streamUpdatePolicy.rawValue), authentication: \(jetStream.connection.authentication))"
        }
    }
}

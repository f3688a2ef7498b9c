public import Configuration
import EventBus
public import EventBusJetStream
import Foundation
public import Logging
import NATS

/// Which `EventBus` backend a service uses, and how it is configured, read from
/// swift-configuration (for example environment variables).
///
/// The library does not scope its keys; the application does, usually
/// `config.scoped(to: "eventBus")`, so that the keys below are read from `EVENT_BUS_...`
/// variables. ``fromEnvironment(applicationVariables:)`` does exactly that. Each module reads its own keys: this type
/// reads `backend` and hands `nats.*` to `NATSConnectionConfiguration(config:keyPrefix:)`
/// and `jetstream.*` to `JetStreamEventBus.Configuration(config:connection:keyPrefix:)`
/// (their documentation lists the keys; docs/configuration.md lists the variables).
///
/// | key (variable) | default | meaning |
/// | --- | --- | --- |
/// | `backend` (`EVENT_BUS_BACKEND`) | `memory` | `memory` or `jetstream` |
/// | `nats.*` (`EVENT_BUS_NATS_*`) | | the NATS connection |
/// | `jetstream.*` (`EVENT_BUS_JETSTREAM_*`) | | the stream and subscription defaults |
///
/// Rejected at start, with the reason: an `EVENT_BUS_*` variable no module reads (only
/// ``fromEnvironment(applicationVariables:)`` can look for those, see there), `nats.*` or `jetstream.*` settings with
/// the `memory` backend (they would be ignored), and JetStream settings that cannot work together
/// (see `JetStreamEventBus.Configuration.validate()`).
public struct EventBusSettings: Sendable, CustomStringConvertible {
    /// The backends.
    public enum Backend: String, Sendable, CaseIterable {
        /// `InMemoryEventBus`: one process, nothing to set up.
        case memory
        /// `JetStreamEventBus`: NATS JetStream.
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

    /// The keys this type reads itself; `nats.*` and `jetstream.*` belong to their modules.
    enum ConfigurationKey: String, ConfigurationKeyTable {
        case backend

        var isSecret: Bool { false }
    }

    /// Every key the settings read, relative to the application's scope (`backend`,
    /// `nats.servers`, `jetstream.stream`, ...): gathered from each module's own table of keys.
    public static var configurationKeys: [String] {
        ConfigurationKey.allCases.map(\.rawValue)
            + NATSConnectionConfiguration.configurationKeys.map { "nats.\($0)" }
            + JetStreamEventBus.Configuration.configurationKeys.map { "jetstream.\($0)" }
    }

    /// Every variable ``fromEnvironment(applicationVariables:)`` reads (`EVENT_BUS_BACKEND`, `EVENT_BUS_NATS_SERVERS`, ...).
    public static var environmentVariables: [String] {
        configurationKeys.map { ConfigValues<ConfigurationKey>.name($0, keyPrefix: environmentPrefix) }
    }

    static let environmentPrefix = "EVENT_BUS_"

    /// Reads the settings from the environment: `EVENT_BUS_*` variables.
    ///
    /// - Throws: `EventBusError` `.invalidOption` for an `EVENT_BUS_*` variable that no setting
    ///   reads (a typo would otherwise leave the default in place without a word), with the
    ///   closest known name, and for everything ``init(config:variablePrefix:)`` rejects.
    ///
    /// - Parameter applicationVariables: `EVENT_BUS_*` variables the application reads itself (the
    ///   demo's `EVENT_BUS_DEMO_OPS_PORT`, say), which are therefore not unknown.
    public static func fromEnvironment(applicationVariables: Set<String> = []) throws -> EventBusSettings {
        try fromEnvironment(ProcessInfo.processInfo.environment, applicationVariables: applicationVariables)
    }

    /// Reads the settings from these environment variables, as ``fromEnvironment(applicationVariables:)``
    /// reads the process's.
    public static func fromEnvironment(
        _ environment: [String: String], applicationVariables: Set<String> = []
    ) throws -> EventBusSettings {
        try checkForUnknownVariables(environment.keys, applicationVariables: applicationVariables)
        let reader = ConfigReader(provider: EnvironmentVariablesProvider(environmentVariables: environment))
        return try EventBusSettings(config: reader.scoped(to: "eventBus"), variablePrefix: environmentPrefix)
    }

    /// Throws for `EVENT_BUS_*` names that are not settings, suggesting the closest known one.
    static func checkForUnknownVariables(
        _ names: some Sequence<String>, applicationVariables: Set<String> = []
    ) throws(EventBusError) {
        // The application's own variables are known too, and so suggested for their typos.
        let known = Set(environmentVariables).union(applicationVariables)
        let unknown = names.filter { $0.hasPrefix(environmentPrefix) && !known.contains($0) }.sorted()
        guard !unknown.isEmpty else { return }
        let described = unknown.map { name -> String in
            let closest = known.map { (name: $0, distance: editDistance(name, $0)) }
                .min { ($0.distance, $0.name) < ($1.distance, $1.name) }
            // Close enough to be a typo: a few edits, fewer for short names.
            if let closest, closest.distance <= max(2, name.count / 6) {
                return "unknown variable \(name); did you mean \(closest.name)?"
            }
            return "unknown variable \(name); it is not one of the EVENT_BUS_* settings (docs/configuration.md lists them)"
        }
        throw EventBusError(.invalidOption, described.joined(separator: "; "))
    }

    /// The Levenshtein distance: the fewest insertions, deletions and substitutions from one to the other.
    static func editDistance(_ first: String, _ second: String) -> Int {
        let a = Array(first.utf8)
        let b = Array(second.utf8)
        var previous = Array(0...b.count)
        var current = [Int](repeating: 0, count: b.count + 1)
        for i in 1...max(a.count, 1) where !a.isEmpty {
            current[0] = i
            for j in 1...max(b.count, 1) where !b.isEmpty {
                let substitution = previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)
                current[j] = min(previous[j] + 1, current[j - 1] + 1, substitution)
            }
            swap(&previous, &current)
        }
        return a.isEmpty ? b.count : previous[b.count]
    }

    /// Reads the settings from a reader the application scoped (for example to `eventBus`).
    ///
    /// A reader given here is not searched for unknown keys (swift-configuration has no way to
    /// list a provider's keys); only ``fromEnvironment(applicationVariables:)`` rejects unknown `EVENT_BUS_*` variables.
    /// ``configurationKeys`` lists the keys for an application that wants to check its own source.
    ///
    /// - Parameters:
    ///   - config: The reader, already scoped by the application (usually to `eventBus`).
    ///   - variablePrefix: How errors name the keys (default `EVENT_BUS_`, matching a
    ///     reader scoped to `eventBus` over environment variables).
    /// - Throws: `EventBusError` `.invalidOption` naming the variable, the value and what is
    ///   accepted; naming the `nats.*`/`jetstream.*` settings given with the `memory` backend,
    ///   which would be ignored; or naming JetStream settings that cannot work together and why.
    public init(config: ConfigReader, variablePrefix: String = "EVENT_BUS_") throws {
        let values = ConfigValues<ConfigurationKey>(config: config, keyPrefix: variablePrefix)
        do throws(NATSError) {
            backend = try values.choice(.backend, as: Backend.self) ?? .memory
        } catch {
            throw EventBusError(.invalidOption, error.message, underlying: error)
        }
        let natsConfig = config.scoped(to: "nats")
        let jetStreamConfig = config.scoped(to: "jetstream")
        let connection: NATSConnectionConfiguration
        do {
            connection = try NATSConnectionConfiguration(config: natsConfig, keyPrefix: variablePrefix + "NATS_")
        } catch {
            throw EventBusError(.invalidOption, error.message, underlying: error)
        }
        jetStream = try JetStreamEventBus.Configuration(
            config: jetStreamConfig, connection: connection, keyPrefix: variablePrefix + "JETSTREAM_")
        if backend == .memory {
            let nats = ConfigValues<NATSConnectionConfiguration.ConfigurationKey>(config: natsConfig, keyPrefix: variablePrefix + "NATS_")
            let js = ConfigValues<JetStreamEventBus.Configuration.ConfigurationKey>(config: jetStreamConfig, keyPrefix: variablePrefix + "JETSTREAM_")
            let ignored = NATSConnectionConfiguration.ConfigurationKey.allCases.filter(nats.isSet).map(nats.name)
                + JetStreamEventBus.Configuration.ConfigurationKey.allCases.filter(js.isSet).map(js.name)
            if !ignored.isEmpty {
                throw EventBusError(
                    .invalidOption,
                    "\(values.name(.backend)) is memory\(values.string(.backend) == nil ? " (the default)" : ""), so \(ignored.joined(separator: ", ")) would be ignored: set \(values.name(.backend))=jetstream to use them, or remove them")
            }
        }
    }

    public var description: String {
        switch backend {
        case .memory:
            return "EventBusSettings(backend: memory)"
        case .jetstream:
            return "EventBusSettings(backend: jetstream, servers: \(jetStream.connection.servers.map(\.description)), stream: \(jetStream.streamName), subjects: \(jetStream.effectiveStreamSubjects), replicas: \(jetStream.replicas), storage: \(jetStream.storage.rawValue), stream update: \(jetStream.streamUpdatePolicy.rawValue), authentication: \(jetStream.connection.authentication))"
        }
    }

    /// The effective configuration as log metadata, secrets redacted (server URLs show
    /// `user:***@`, tokens, passwords and seeds `***`): what ``EventBusFactory`` logs once at start.
    public var startupReport: Logger.Metadata {
        switch backend {
        case .memory:
            let memory = InMemoryEventBus.Configuration()
            return [
                "backend": "memory",
                "memory.maxEvents": "\(memory.maxEvents)", "memory.maxBytes": "\(memory.maxBytes)",
                "memory.duplicateWindow": "\(memory.duplicateWindow)",
            ]
        case .jetstream:
            let js = jetStream
            let nats = js.connection
            return [
                "backend": "jetstream",
                "nats.servers": "\(nats.servers.map(\.description).joined(separator: ","))",
                "nats.name": "\(nats.name ?? "-")",
                "nats.authentication": "\(nats.authentication)",
                "nats.tls": "\(nats.tls.map { "\($0)" } ?? "none")",
                "nats.connectTimeout": "\(nats.connectTimeout)",
                "nats.reconnect": "\(nats.reconnect)",
                "nats.pingInterval": "\(nats.pingInterval)",
                "nats.maxPingsOut": "\(nats.maxPingsOut)",
                "jetstream.stream": "\(js.streamName)",
                "jetstream.subjectPrefix": "\(js.subjectPrefix)",
                "jetstream.subjects": "\(js.effectiveStreamSubjects.joined(separator: ","))",
                "jetstream.replicas": "\(js.replicas)",
                "jetstream.storage": "\(js.storage.rawValue)",
                "jetstream.maxAge": "\(js.maxAge)",
                "jetstream.duplicateWindow": "\(js.duplicateWindow)",
                "jetstream.ackWait": "\(js.ackWait)",
                "jetstream.maxDeliver": "\(js.maxDeliver)",
                "jetstream.maxAckPending": "\(js.maxAckPending)",
                "jetstream.publishTimeout": "\(js.publishTimeout)",
                "jetstream.groupConsumer": "\(js.groupConsumer.rawValue)",
                "jetstream.streamUpdate": "\(js.streamUpdatePolicy.rawValue)",
            ]
        }
    }
}

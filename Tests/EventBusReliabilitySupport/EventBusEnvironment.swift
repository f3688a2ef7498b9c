import Foundation
import EventBusJetStream
import NATS

/// Reads the `EVENT_BUS_*` environment variables a service on the JetStream bus is configured
/// with, for the reliability agent (until `EventBusBootstrap` provides the one shared reader).
///
/// | variable | meaning | default |
/// | --- | --- | --- |
/// | `EVENT_BUS_BACKEND` | `jetstream` (`memory` cannot span processes) | `jetstream` |
/// | `EVENT_BUS_NATS_SERVERS` | comma-separated server URLs | required |
/// | `EVENT_BUS_NATS_NAME` | connection name | none |
/// | `EVENT_BUS_NATS_PING_INTERVAL_MS` | ping interval | 5000 |
/// | `EVENT_BUS_NATS_MAX_PINGS_OUT` | unanswered pings before reconnecting | 2 |
/// | `EVENT_BUS_NATS_RECONNECT_WAIT_MS` | wait between reconnect attempts to one server | 2000 |
/// | `EVENT_BUS_NATS_RECONNECT_MAX_ATTEMPTS` | per server, `-1` unlimited | 60 |
/// | `EVENT_BUS_JETSTREAM_STREAM` | stream name | `EVENTS` |
/// | `EVENT_BUS_JETSTREAM_SUBJECT_PREFIX` | first token of event subjects | `events` |
/// | `EVENT_BUS_JETSTREAM_REPLICAS` | stream replicas | 1 |
/// | `EVENT_BUS_JETSTREAM_ACK_WAIT_MS` | ack wait of groups | 30000 |
/// | `EVENT_BUS_JETSTREAM_MAX_DELIVER` | deliveries before dead-lettering | 5 |
/// | `EVENT_BUS_JETSTREAM_MAX_ACK_PENDING` | un-acked events per group member set | 256 |
/// | `EVENT_BUS_JETSTREAM_PULL_BATCH` | events pulled ahead per subscriber | 256 |
/// | `EVENT_BUS_JETSTREAM_PUBLISH_TIMEOUT_MS` | wait for a stream's ack | 10000 |
/// | `EVENT_BUS_JETSTREAM_DUPLICATE_WINDOW_MS` | duplicate window | 120000 |
public enum EventBusEnvironment {
    /// A variable that is missing or malformed.
    public struct Failure: Error, CustomStringConvertible {
        /// Which variable and why.
        public var description: String
    }

    /// The JetStream bus configuration the variables describe.
    public static func jetStreamConfiguration(_ environment: [String: String]) throws -> JetStreamEventBus.Configuration {
        let backend = environment["EVENT_BUS_BACKEND"] ?? "jetstream"
        guard backend == "jetstream" else {
            throw Failure(description: "EVENT_BUS_BACKEND=\(backend): this program needs 'jetstream' (an in-memory bus does not span processes)")
        }
        guard let list = environment["EVENT_BUS_NATS_SERVERS"], !list.isEmpty else {
            throw Failure(description: "EVENT_BUS_NATS_SERVERS is required (comma-separated nats:// URLs)")
        }
        let servers = list.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        var connection = try NATSConnectionConfiguration(servers: servers)
        connection.name = environment["EVENT_BUS_NATS_NAME"]
        func milliseconds(_ key: String) throws -> Duration? {
            guard let text = environment[key] else { return nil }
            guard let value = Int(text), value > 0 else { throw Failure(description: "\(key)=\(text): expected a positive number of milliseconds") }
            return .milliseconds(value)
        }
        func integer(_ key: String, atLeast minimum: Int) throws -> Int? {
            guard let text = environment[key] else { return nil }
            guard let value = Int(text), value >= minimum else { throw Failure(description: "\(key)=\(text): expected an integer >= \(minimum)") }
            return value
        }
        if let value = try milliseconds("EVENT_BUS_NATS_PING_INTERVAL_MS") { connection.pingInterval = value }
        if let value = try integer("EVENT_BUS_NATS_MAX_PINGS_OUT", atLeast: 1) { connection.maxPingsOut = value }
        if let value = try milliseconds("EVENT_BUS_NATS_RECONNECT_WAIT_MS") { connection.reconnect.wait = value }
        if let value = try integer("EVENT_BUS_NATS_RECONNECT_MAX_ATTEMPTS", atLeast: -1) {
            connection.reconnect.maxAttempts = value < 0 ? .unlimited : .limited(value)
        }
        var configuration = JetStreamEventBus.Configuration(connection: connection)
        if let value = environment["EVENT_BUS_JETSTREAM_STREAM"] { configuration.streamName = value }
        if let value = environment["EVENT_BUS_JETSTREAM_SUBJECT_PREFIX"] { configuration.subjectPrefix = value }
        if let value = try integer("EVENT_BUS_JETSTREAM_REPLICAS", atLeast: 1) { configuration.replicas = value }
        if let value = try milliseconds("EVENT_BUS_JETSTREAM_ACK_WAIT_MS") { configuration.ackWait = value }
        if let value = try integer("EVENT_BUS_JETSTREAM_MAX_DELIVER", atLeast: 1) { configuration.maxDeliver = value }
        if let value = try integer("EVENT_BUS_JETSTREAM_MAX_ACK_PENDING", atLeast: 1) { configuration.maxAckPending = value }
        if let value = try integer("EVENT_BUS_JETSTREAM_PULL_BATCH", atLeast: 1) { configuration.pullBatch = value }
        if let value = try milliseconds("EVENT_BUS_JETSTREAM_PUBLISH_TIMEOUT_MS") { configuration.publishTimeout = value }
        if let value = try milliseconds("EVENT_BUS_JETSTREAM_DUPLICATE_WINDOW_MS") { configuration.duplicateWindow = value }
        try configuration.validate()
        return configuration
    }
}

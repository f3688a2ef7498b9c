/// A snapshot of a bus's health: its connection and each subscription of this client, for a
/// readiness probe, `eventbus doctor` or a dashboard. Obtained with ``EventBus/health()``.
///
/// ``status`` sums it up: `healthy` when connected (or in process) and every subscription is
/// running; `degraded` while something recovers (a reconnect, a re-issued pull) or a subscription
/// is stalled; `unhealthy` when the bus is closed or cannot reach its servers at all.
public struct EventBusHealth: Sendable, Hashable {
    /// The overall status.
    public enum Status: String, Sendable, Hashable, Codable, CustomStringConvertible {
        /// Connected and every subscription running.
        case healthy
        /// Working, but something is recovering or stalled.
        case degraded
        /// Closed, or not connected.
        case unhealthy

        public var description: String { rawValue }
    }

    /// The bus's connection to its backend.
    public enum ConnectionState: String, Sendable, Hashable, Codable, CustomStringConvertible {
        /// No connection to have: the bus lives in this process.
        case inProcess
        /// Not started yet, or starting.
        case connecting
        /// Connected.
        case connected
        /// The connection was lost; the client is reconnecting.
        case reconnecting
        /// Closed.
        case closed

        public var description: String { rawValue }
    }

    /// A subscription's state.
    public enum SubscriptionState: String, Sendable, Hashable, Codable, CustomStringConvertible {
        /// Receiving, or waiting with the server confirming it is there.
        case running
        /// Recovering after a reconnect, a leader change or missed heartbeats.
        case recovering
        /// Waiting, with neither events nor heartbeats for over two heartbeat intervals.
        case stalled
        /// Closed or ended.
        case stopped

        public var description: String { rawValue }
    }

    /// One subscription of this client.
    public struct Subscription: Sendable, Hashable {
        /// The pattern subscribed to.
        public var pattern: String
        /// The consumer group, if any.
        public var group: String?
        /// The backend's consumer (a JetStream consumer name), if any.
        public var consumer: String?
        /// The state.
        public var state: SubscriptionState
        /// Time since the last event arrived; `nil` if none has.
        public var lastMessageAge: Duration?
        /// Time since the backend's last heartbeat; `nil` for a backend without heartbeats or
        /// before the first.
        public var lastHeartbeatAge: Duration?
        /// Events waiting for the group on the backend (JetStream: the consumer's `num_pending`
        /// as the last delivery said), if known.
        public var pending: UInt64?
        /// Events received by this client and not yet handed to the application.
        public var buffered: Int
        /// Events handed to the application and not yet settled (ack, nak or term).
        public var inFlight: Int
        /// Deliveries seen that were redeliveries (attempt 2 or later).
        public var redeliveries: Int
        /// Recoveries so far (see ``EventBusRecoveryEvent``).
        public var recoveries: Int
        /// The last error, if any.
        public var lastError: String?

        /// Creates an entry.
        public init(
            pattern: String, group: String? = nil, consumer: String? = nil, state: SubscriptionState,
            lastMessageAge: Duration? = nil, lastHeartbeatAge: Duration? = nil, pending: UInt64? = nil,
            buffered: Int = 0, inFlight: Int = 0, redeliveries: Int = 0, recoveries: Int = 0, lastError: String? = nil
        ) {
            self.pattern = pattern
            self.group = group
            self.consumer = consumer
            self.state = state
            self.lastMessageAge = lastMessageAge
            self.lastHeartbeatAge = lastHeartbeatAge
            self.pending = pending
            self.buffered = buffered
            self.inFlight = inFlight
            self.redeliveries = redeliveries
            self.recoveries = recoveries
            self.lastError = lastError
        }
    }

    /// The backend (`memory`, `jetstream`, or another backend's name).
    public var backend: String
    /// The connection.
    public var connection: ConnectionState
    /// The server connected to (credentials redacted), if any.
    public var server: String?
    /// This client's subscriptions.
    public var subscriptions: [Subscription]

    /// Creates a snapshot.
    public init(backend: String, connection: ConnectionState, server: String? = nil, subscriptions: [Subscription] = []) {
        self.backend = backend
        self.connection = connection
        self.server = server
        self.subscriptions = subscriptions
    }

    /// The overall status, derived from the connection and the subscriptions.
    public var status: Status {
        switch connection {
        case .closed, .connecting: return .unhealthy
        case .reconnecting: return .degraded
        case .inProcess, .connected: break
        }
        return subscriptions.allSatisfy { $0.state == .running || $0.state == .stopped } ? .healthy : .degraded
    }

    /// Whether a readiness probe should send work: connected (or in process) and every
    /// subscription running.
    public var isReady: Bool { status == .healthy }
}

/// Something a subscription did to recover, and why. Backends with something to recover from
/// (JetStream) publish these; see `JetStreamEventBus.recoveryEvents`.
public struct EventBusRecoveryEvent: Sendable, Hashable, CustomStringConvertible {
    /// Why: `heartbeatMissed`, `pullReissued`, `consumerRecreated`, `leaderChanged`,
    /// `resubscribed` (the backend's own words; see docs/observability.md).
    public var reason: String
    /// What happened, in words.
    public var detail: String
    /// The subscription's pattern.
    public var pattern: String
    /// The subscription's group, if any.
    public var group: String?
    /// The backend's consumer, if any.
    public var consumer: String?

    /// Creates an event.
    public init(reason: String, detail: String, pattern: String, group: String? = nil, consumer: String? = nil) {
        self.reason = reason
        self.detail = detail
        self.pattern = pattern
        self.group = group
        self.consumer = consumer
    }

    public var description: String {
        "subscription '\(pattern)'\(group.map { " (group '\($0)')" } ?? ""): \(reason): \(detail)"
    }
}

extension EventBusHealth {
    /// The snapshot as JSON (ages in seconds), for a readiness endpoint or a log line. Keys are
    /// stable; absent values are `null`.
    public var json: String {
        func string(_ value: String?) -> String {
            guard let value else { return "null" }
            var out = "\""
            for scalar in value.unicodeScalars {
                switch scalar {
                case "\"": out += "\\\""
                case "\\": out += "\\\\"
                case "\n": out += "\\n"
                case "\r": out += "\\r"
                case "\t": out += "\\t"
                default:
                    if scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value) || scalar.value == 0x2028 || scalar.value == 0x2029 {
                        let hex = String(scalar.value, radix: 16)
                        out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                    } else {
                        out.unicodeScalars.append(scalar)
                    }
                }
            }
            return out + "\""
        }
        func seconds(_ duration: Duration?) -> String {
            guard let duration else { return "null" }
            let (whole, attoseconds) = duration.components
            return "\(Double(whole) + Double(attoseconds) / 1e18)"
        }
        let subscriptions = self.subscriptions.map { entry in
            "{\"pattern\":\(string(entry.pattern)),\"group\":\(string(entry.group)),\"consumer\":\(string(entry.consumer)),"
                + "\"state\":\(string(entry.state.rawValue)),\"lastMessageAgeSeconds\":\(seconds(entry.lastMessageAge)),"
                + "\"lastHeartbeatAgeSeconds\":\(seconds(entry.lastHeartbeatAge)),"
                + "\"pending\":\(entry.pending.map { "\($0)" } ?? "null"),\"buffered\":\(entry.buffered),"
                + "\"inFlight\":\(entry.inFlight),\"redeliveries\":\(entry.redeliveries),"
                + "\"recoveries\":\(entry.recoveries),\"lastError\":\(string(entry.lastError))}"
        }
        return "{\"status\":\(string(status.rawValue)),\"ready\":\(isReady),\"backend\":\(string(backend)),"
            + "\"connection\":\(string(connection.rawValue)),\"server\":\(string(server)),"
            + "\"subscriptions\":[\(subscriptions.joined(separator: ","))]}"
    }
}

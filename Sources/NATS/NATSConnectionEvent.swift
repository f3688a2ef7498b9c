/// Something that happened to a connection, delivered through ``NATSConnection/events``.
public enum NATSConnectionEvent: Sendable, Hashable, CustomStringConvertible {
    /// The first connection succeeded, to the given server (credentials redacted).
    case connected(server: String)
    /// The connection to the server was lost; cnats reconnects according to the reconnect policy.
    case disconnected
    /// The connection was re-established, to the given server (credentials redacted).
    case reconnected(server: String)
    /// The server announced cluster members the client did not know (cluster discovery).
    case discoveredServers([String])
    /// The server entered lame-duck mode: it will shut down soon and clients should move.
    case lameDuckMode
    /// A subscription could not keep up and cnats dropped messages for it.
    /// `droppedTotal` counts every message dropped for that subscription so far.
    case slowConsumer(subject: String, droppedTotal: Int64)
    /// An asynchronous error reported by cnats or the server (permissions, protocol errors).
    case error(NATSError)
    /// The connection is closed for good; no further events follow.
    case closed

    public var description: String {
        switch self {
        case .connected(let server): "connected to \(server)"
        case .disconnected: "disconnected"
        case .reconnected(let server): "reconnected to \(server)"
        case .discoveredServers(let servers): "discovered servers \(servers.joined(separator: ", "))"
        case .lameDuckMode: "server entered lame duck mode"
        case .slowConsumer(let subject, let dropped): "slow consumer on '\(subject)' (\(dropped) dropped so far)"
        case .error(let error): "error: \(error)"
        case .closed: "closed"
        }
    }
}

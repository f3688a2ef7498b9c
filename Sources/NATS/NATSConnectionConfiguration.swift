/// Everything a ``NATSConnection`` needs to know before it connects.
///
/// The defaults suit a service and differ from cnats's where cnats's would make a service slow to
/// answer or slow to notice a failure:
///
/// | setting | default | cnats's | why |
/// | --- | --- | --- | --- |
/// | ``pingInterval`` × ``maxPingsOut`` | 2 s × 2 | 2 min × 2 | a dead or stalled (paused, partitioned) server is noticed in 4–6 s, so the client fails over within about two JetStream leader elections instead of after 4 minutes; a ping every 2 s is one small line each way |
/// | ``writeImmediatelyAfterIdle`` | 20 µs | off | a reply or a lone publish leaves at once instead of after cnats's flusher's 1 ms wait; bursts still go out in few writes |
/// | ``discoverServers`` | on | on | clients learn the cluster's other members to fail over to |
/// | ``reconnect`` | 60 attempts per server, 2 s apart | the same | a cluster restart of a few minutes is ridden out, then the connection closes for good |
/// | ``connectTimeout`` | 2 s | 2 s | |
/// | ``subscriptionLimits`` | 65,536 messages, 64 MiB | the same | bounded memory per subscription |
/// | ``sendAsap`` | off | off | every publish a system call costs throughput; the idle rule above gives the latency |
public struct NATSConnectionConfiguration: Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    /// How many reconnect attempts cnats makes per server before it gives up and closes.
    public enum ReconnectAttempts: Sendable, Hashable {
        /// Try forever.
        case unlimited
        /// Try this many times (0 disables reconnecting).
        case limited(Int)
    }

    /// What the client does after losing its connection.
    public struct ReconnectPolicy: Sendable, Hashable {
        /// Attempts per server before closing the connection. Default 60.
        public var maxAttempts: ReconnectAttempts = .limited(60)
        /// Wait between attempts to the same server. Default 2 s.
        public var wait: Duration = .seconds(2)
        /// Random extra wait added to `wait` for plain connections, so that many clients do not
        /// reconnect at the same instant. Default 100 ms.
        public var jitter: Duration = .milliseconds(100)
        /// Random extra wait for TLS connections. Default 1 s.
        public var jitterTLS: Duration = .seconds(1)
        /// Bytes of publishes buffered while disconnected; past this, publishing fails with an
        /// error instead of growing memory. Default 8 MiB.
        public var bufferSize: Int = 8 * 1024 * 1024

        /// Creates the default policy.
        public init() {}
    }

    /// Bounds of one subscription's buffers, in messages and bytes.
    ///
    /// The client keeps up to this much in its own buffer waiting for the consumer, and cnats
    /// keeps up to this much again in its queue; past that cnats drops messages and the
    /// connection reports a ``NATSConnectionEvent/slowConsumer(subject:droppedTotal:)`` event.
    public struct SubscriptionLimits: Sendable, Hashable {
        /// Messages. Default 65,536.
        public var messages: Int
        /// Bytes (payloads and headers). Default 64 MiB.
        public var bytes: Int

        /// Creates limits.
        public init(messages: Int = 65_536, bytes: Int = 64 * 1024 * 1024) {
            self.messages = messages
            self.bytes = bytes
        }
    }

    /// How the client proves who it is.
    public enum Authentication: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
        /// No credentials here; the server URLs may carry them.
        case none
        /// A token.
        case token(String)
        /// A user name and password.
        case userPassword(user: String, password: String)
        /// A `.creds` file holding a user JWT and its NKey seed (as `nsc` writes it). The file is
        /// read and checked at each connect: one without a user JWT, or whose seed is not a user
        /// seed, is refused before anything is sent.
        case credentialsFile(path: String)
        /// An NKey: the public key and a file holding its seed (`SU…`). The seed is checked to
        /// belong to the public key before anything is sent.
        case nkeySeedFile(publicKey: String, seedFile: String)
        /// An NKey seed given as a value (`SU…`, from the environment or a secret store); the
        /// public key is derived from it. The seed signs the server's nonce in this process and is
        /// never sent or logged.
        case nkeySeed(String)

        public var description: String {
            switch self {
            case .none: "none"
            case .token: "token(***)"
            case .userPassword(let user, _): "userPassword(user: \(user), password: ***)"
            case .credentialsFile(let path): "credentialsFile(\(path))"
            case .nkeySeedFile(let publicKey, let seedFile): "nkeySeedFile(publicKey: \(publicKey), seedFile: \(seedFile))"
            case .nkeySeed: "nkeySeed(***)"
            }
        }

        /// The same as ``description``: secrets redacted.
        public var debugDescription: String { description }

        /// Shows the redacted description only, so that `dump` does not reveal secrets.
        public var customMirror: Mirror { Mirror(self, children: ["value": description]) }
    }

    /// TLS settings; setting any of them makes the connection require TLS.
    ///
    /// By default the server's certificate chain is verified against ``caFile`` (or the system's
    /// trust store) and its name against the server URL's host (or ``expectedHostname``).
    public struct TLS: Sendable, Hashable {
        /// How much of the server's certificate is checked.
        public enum ServerVerification: String, Sendable, Hashable, CaseIterable {
            /// The chain against the trusted authorities, and the name against the host. Default.
            case full
            /// The chain only; any name is accepted. A warning is logged at connect.
            case certificateOnly
            /// Nothing: any certificate is accepted, so anyone on the path can impersonate the
            /// server. For tests only; a warning is logged at connect.
            case none
        }

        /// A PEM file of certificate authorities to trust.
        public var caFile: String?
        /// A PEM client certificate chain, for mutual TLS.
        public var certificateFile: String?
        /// The PEM private key of `certificateFile`.
        public var keyFile: String?
        /// The host name expected in the server's certificate, when it differs from the URL's.
        ///
        /// cnats 3.4 checks one name for every server of a connection: when the servers' URLs
        /// have different host names, set this to a name all their certificates carry. A host
        /// given as an IP address is not checked as a name (cnats checks DNS names only); set
        /// this to a DNS name in the certificate to have it checked.
        public var expectedHostname: String?
        /// How much of the server's certificate is checked. Default ``ServerVerification/full``.
        public var serverVerification: ServerVerification

        /// Creates TLS settings.
        public init(
            caFile: String? = nil, certificateFile: String? = nil, keyFile: String? = nil, expectedHostname: String? = nil,
            serverVerification: ServerVerification = .full
        ) {
            self.caFile = caFile
            self.certificateFile = certificateFile
            self.keyFile = keyFile
            self.expectedHostname = expectedHostname
            self.serverVerification = serverVerification
        }
    }

    /// The servers to connect to. cnats picks among them (randomly unless
    /// `randomizeServers` is false) and adds servers the cluster announces when
    /// `discoverServers` is true. Default `nats://127.0.0.1:4222`.
    public var servers: [NATSServerURL]
    /// Whether to add the cluster members the server announces to the server list. Default true.
    public var discoverServers = true
    /// Whether to try servers in a random order (spreads clients over a cluster). Default true.
    public var randomizeServers = true
    /// A name the server shows for this connection (in monitoring). Default none.
    public var name: String?
    /// How long one connection attempt may take. Default 2 s.
    public var connectTimeout: Duration = .seconds(2)
    /// What happens after the connection is lost.
    public var reconnect = ReconnectPolicy()
    /// How often the client pings the server to detect a dead connection. Default 2 s: with
    /// ``maxPingsOut`` 2, a server that stops answering (dead, paused, cut off) is given up 4–6 s
    /// later and the client moves to another server; raise both on links with long stalls.
    public var pingInterval: Duration = .seconds(2)
    /// How many pings may go unanswered before the connection counts as lost. Default 2.
    public var maxPingsOut = 2
    /// Whether the server should not send this connection its own publishes. Default false.
    public var noEcho = false
    /// Buffer bounds for every subscription of this connection.
    public var subscriptionLimits = SubscriptionLimits()
    /// Whether each publish is written to the socket at once instead of by cnats's flusher thread,
    /// which waits up to 1 ms to batch writes. True lowers latency of replies and acks in
    /// low-rate traffic and costs throughput under load. Default false.
    public var sendAsap = false
    /// A publish that comes at least this long after the previous one is written to the socket at
    /// once, from the publishing thread, instead of waiting for cnats's flusher (which sleeps
    /// 1 ms after being woken, to batch a burst into few writes). Publishes closer together than
    /// this are buffered as before and leave with the flusher's write or the next immediate one.
    /// So a reply, a request's answer or a lone event costs one write and no delay, while a loop
    /// publishing thousands a second still coalesces. Default 20 µs (a publisher slower than
    /// 50,000 messages a second writes each at once); `nil` leaves every publish to the flusher,
    /// as cnats does. Needs cnats's internal publish (see the README, "cnats internals"): without
    /// it, and with ``sendAsap`` (which writes every publish at once), it has no effect.
    public var writeImmediatelyAfterIdle: Duration? = .microseconds(20)
    /// The longest protocol control line the server accepts, in bytes: the arguments of a
    /// `PUB`/`HPUB` (subject, reply subject, sizes) or `SUB` (subject, queue group, id), as
    /// nats-server counts them. The server closes a connection that sends a longer one, and does
    /// not announce its limit, so the client checks every line against this value before
    /// writing it. Default 4,096, nats-server's default `max_control_line`; raise it only
    /// together with the servers' `max_control_line`.
    public var maxControlLine = NATSValidation.defaultMaxControlLine
    /// How the client authenticates.
    public var authentication: Authentication = .none
    /// TLS settings, or `nil` for plain connections (unless a URL uses `tls://`).
    public var tls: TLS?

    /// Creates a configuration for the given servers.
    public init(servers: [NATSServerURL]) {
        self.servers = servers
    }

    /// Creates a configuration from server URL strings, validating each (one URL per string; see
    /// ``NATSServerURL/parseList(_:)`` for a comma-separated list).
    public init(servers: [String] = ["nats://127.0.0.1:4222"]) throws(NATSError) {
        var parsed: [NATSServerURL] = []
        for server in servers { parsed.append(try NATSServerURL(server)) }
        self.init(servers: parsed)
    }

    /// Checks the values against each other and their ranges, and that credentials come from
    /// one place: the server URLs (all the same) or ``authentication``.
    public func validate() throws(NATSError) {
        func fail(_ field: String, _ rule: String) -> NATSError {
            NATSError(.invalidConfiguration, "invalid configuration value \(field): \(rule)")
        }
        if servers.isEmpty { throw fail("servers", "at least one server is needed") }
        if connectTimeout <= .zero { throw fail("connectTimeout (\(connectTimeout))", "must be greater than zero") }
        if case .limited(let attempts) = reconnect.maxAttempts, attempts < 0 {
            throw fail("reconnect.maxAttempts (\(attempts))", "must be 0 or more (or unlimited)")
        }
        if reconnect.wait < .zero { throw fail("reconnect.wait (\(reconnect.wait))", "must not be negative") }
        if reconnect.jitter < .zero { throw fail("reconnect.jitter (\(reconnect.jitter))", "must not be negative") }
        if reconnect.jitterTLS < .zero { throw fail("reconnect.jitterTLS (\(reconnect.jitterTLS))", "must not be negative") }
        if reconnect.bufferSize < 0 { throw fail("reconnect.bufferSize (\(reconnect.bufferSize))", "must not be negative") }
        if pingInterval <= .zero { throw fail("pingInterval (\(pingInterval))", "must be greater than zero") }
        if maxPingsOut < 1 { throw fail("maxPingsOut (\(maxPingsOut))", "must be at least 1") }
        if let gap = writeImmediatelyAfterIdle, gap <= .zero {
            throw fail("writeImmediatelyAfterIdle (\(gap))", "must be greater than zero (nil turns it off)")
        }
        if maxControlLine < NATSValidation.minimumMaxControlLine {
            throw fail(
                "maxControlLine (\(maxControlLine))",
                "must be at least \(NATSValidation.minimumMaxControlLine) (room for the client's own inbox subjects)")
        }
        if subscriptionLimits.messages < 1 {
            throw fail("subscriptionLimits.messages (\(subscriptionLimits.messages))", "must be at least 1")
        }
        if subscriptionLimits.bytes < 1 {
            throw fail("subscriptionLimits.bytes (\(subscriptionLimits.bytes))", "must be at least 1")
        }
        if let name, name.utf8.contains(where: { $0 < 0x20 }) {
            throw fail("name", "must not contain control characters")
        }
        try validateSecurity()
        _ = try resolvedAuthentication()
    }

    /// The authentication the connection uses: ``authentication``, or the credentials the server
    /// URLs carry. cnats gets the URLs without credentials and these as its user and password or
    /// token, so that percent-decoded values reach the server as they are, for every server.
    ///
    /// - Throws: ``NATSError`` with code ``NATSError/Code/invalidConfiguration`` (secrets
    ///   redacted) when URLs carry different credentials, or when a URL carries credentials and
    ///   ``authentication`` is not `.none`: one source must be chosen, none silently wins.
    package func resolvedAuthentication() throws(NATSError) -> Authentication {
        var fromURL: (server: NATSServerURL, credentials: Authentication)?
        for server in servers {
            guard let credentials = server.credentials else { continue }
            if let first = fromURL, first.credentials != credentials {
                throw NATSError(
                    .invalidConfiguration,
                    "server URLs \(first.server) and \(server) carry different credentials: give the same in every URL, or none in the URLs and set authentication")
            }
            if fromURL == nil { fromURL = (server, credentials) }
        }
        guard let fromURL else { return authentication }
        if case .none = authentication { return fromURL.credentials }
        throw NATSError(
            .invalidConfiguration,
            "credentials in server URL \(fromURL.server) and authentication \(authentication) are both set: choose one")
    }

    /// The same as ``description``: secrets redacted.
    public var debugDescription: String { description }

    public var description: String {
        "NATSConnectionConfiguration(servers: \(servers.map(\.description)), name: \(name ?? "-"), "
            + "connectTimeout: \(connectTimeout), reconnect: \(reconnect), pingInterval: \(pingInterval), "
            + "maxPingsOut: \(maxPingsOut), noEcho: \(noEcho), subscriptionLimits: \(subscriptionLimits), "
            + "sendAsap: \(sendAsap), writeImmediatelyAfterIdle: \(writeImmediatelyAfterIdle.map { "\($0)" } ?? "off"), maxControlLine: \(maxControlLine), authentication: \(authentication), tls: \(tls.map { "\($0)" } ?? "none"))"
    }
}

extension Duration {
    /// Whole nanoseconds, saturating.
    var nanosecondsClamped: Int64 {
        let (seconds, attoseconds) = components
        let (secondsPart, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return seconds < 0 ? .min : .max }
        return secondsPart &+ attoseconds / 1_000_000_000
    }

    /// Whole milliseconds, saturating.
    var millisecondsClamped: Int64 { nanosecondsClamped / 1_000_000 }
}

/// An error raised by the NATS client.
///
/// Errors are values with an extensible ``Code`` (new codes can be added without breaking
/// `switch` statements), a human-readable ``message`` that names the offending value and the
/// rule it broke, and, where the error came from cnats or from the server, the underlying
/// status or JetStream error code. A `description` never contains a password, token or seed:
/// URLs are redacted before they are put into a message.
public struct NATSError: Error, Sendable, CustomStringConvertible, Hashable {
    /// What kind of failure this is.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private let name: String
        private init(_ name: String) { self.name = name }

        public var description: String { name }

        /// A subject is empty, has empty tokens, whitespace, control characters, or wildcards where
        /// a literal subject is needed.
        public static let invalidSubject = Code("invalidSubject")
        /// A queue group name is empty or contains whitespace or control characters.
        public static let invalidQueueGroup = Code("invalidQueueGroup")
        /// A header name or value contains characters the NATS protocol cannot carry.
        public static let invalidHeader = Code("invalidHeader")
        /// The payload (headers included) is larger than the server's announced `max_payload`.
        public static let payloadTooLarge = Code("payloadTooLarge")
        /// A server URL is malformed: bad scheme, port out of range, spaces, missing host.
        public static let invalidURL = Code("invalidURL")
        /// A configuration value is out of range or inconsistent.
        public static let invalidConfiguration = Code("invalidConfiguration")
        /// A name (stream, consumer, durable) breaks the naming rules.
        public static let invalidName = Code("invalidName")
        /// An argument to an API call is out of range.
        public static let invalidArgument = Code("invalidArgument")
        /// No server could be reached.
        public static let noServers = Code("noServers")
        /// The server rejected the credentials.
        public static let authenticationFailed = Code("authenticationFailed")
        /// The operation needs a connection that has been connected first.
        public static let notConnected = Code("notConnected")
        /// The connection is closed; nothing more can be sent or received on it.
        public static let connectionClosed = Code("connectionClosed")
        /// The connection is draining; no new subscriptions or publishes are accepted.
        public static let connectionDraining = Code("connectionDraining")
        /// An operation did not complete in time.
        public static let timeout = Code("timeout")
        /// A request found no subscriber on its subject (the server said so at once).
        public static let noResponders = Code("noResponders")
        /// The subscription has been closed or unsubscribed.
        public static let subscriptionClosed = Code("subscriptionClosed")
        /// A subscriber did not keep up and the client dropped messages (core NATS only).
        public static let slowConsumer = Code("slowConsumer")
        /// The server or the account does not permit the operation.
        public static let permissionDenied = Code("permissionDenied")
        /// A network or protocol failure.
        public static let ioError = Code("ioError")
        /// TLS failed: the handshake, the server's certificate (untrusted, expired, another host
        /// name), a client certificate the server requires, or TLS required by one side and not
        /// offered by the other. The message says which.
        public static let tls = Code("tls")
        /// The connection to the server dropped while the operation waited for the server's
        /// answer (a request's reply, a JetStream publish's ack). Its outcome is unknown: the
        /// server may have processed it. Retriable: a JetStream publish is safe to resend with the
        /// same message id; a core request only if its handler tolerates a repeat.
        public static let disconnected = Code("disconnected")
        /// The server answered with a protocol or JetStream API error.
        public static let serverError = Code("serverError")
        /// A JetStream API call failed; ``NATSError/jetStreamErrorCode`` says why.
        public static let jetStream = Code("jetStream")
        /// JetStream is not enabled on the server or account, or no JetStream server answered.
        public static let jetStreamNotEnabled = Code("jetStreamNotEnabled")
        /// A message was acknowledged (or nak'ed, term'ed) already.
        public static let alreadyAcknowledged = Code("alreadyAcknowledged")
        /// The operation was cancelled.
        public static let cancelled = Code("cancelled")
        /// An unexpected failure inside cnats; ``NATSError/nativeStatus`` has its status.
        public static let internalError = Code("internalError")
    }

    /// A cnats status code (`natsStatus`) as a plain integer, with named constants for the
    /// values the client looks at.
    public struct NativeStatus: Hashable, Sendable, CustomStringConvertible {
        /// The raw `natsStatus` value.
        public let rawValue: Int32
        /// The status text cnats gives for this value.
        public let text: String

        /// Creates a status from its raw value and text.
        public init(rawValue: Int32, text: String) {
            self.rawValue = rawValue
            self.text = text
        }

        public var description: String { "\(text) (natsStatus \(rawValue))" }
    }

    /// What kind of failure this is.
    public var code: Code
    /// What went wrong, naming the value and the rule. Never contains secrets.
    public var message: String
    /// Whether trying the same operation again may succeed (timeouts, disconnections, 503s).
    public var isRetriable: Bool
    /// The cnats status behind this error, when cnats reported it.
    public var nativeStatus: NativeStatus?
    /// The JetStream API error code (`err_code`) behind this error, when the server sent one.
    public var jetStreamErrorCode: Int?
    /// The file that raised the error.
    public var file: String
    /// The line that raised the error.
    public var line: Int

    /// Creates an error.
    public init(
        _ code: Code,
        _ message: String,
        isRetriable: Bool = false,
        nativeStatus: NativeStatus? = nil,
        jetStreamErrorCode: Int? = nil,
        file: String = #fileID,
        line: Int = #line
    ) {
        self.code = code
        self.message = message
        self.isRetriable = isRetriable
        self.nativeStatus = nativeStatus
        self.jetStreamErrorCode = jetStreamErrorCode
        self.file = file
        self.line = line
    }

    public var description: String {
        var text = "NATSError.\(code): \(message)"
        if let jetStreamErrorCode { text += " [JetStream err_code \(jetStreamErrorCode)]" }
        if let nativeStatus { text += " [\(nativeStatus)]" }
        return text
    }

    /// Two errors are equal when their code, message and underlying codes are equal; the source
    /// location is ignored.
    public static func == (lhs: NATSError, rhs: NATSError) -> Bool {
        lhs.code == rhs.code && lhs.message == rhs.message && lhs.nativeStatus == rhs.nativeStatus
            && lhs.jetStreamErrorCode == rhs.jetStreamErrorCode && lhs.isRetriable == rhs.isRetriable
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(code)
        hasher.combine(message)
        hasher.combine(nativeStatus)
        hasher.combine(jetStreamErrorCode)
    }
}

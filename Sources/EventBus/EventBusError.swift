/// An error from an ``EventBus`` or one of its types.
///
/// The ``code`` says what went wrong in a form code can switch on; the ``message`` says it for a person and
/// names the offending value and the rule it broke. Backends add their own codes with ``Code/init(_:)``.
/// Nothing secret ever reaches this module, so ``description`` is safe to log.
public struct EventBusError: Error, Sendable, CustomStringConvertible {
    /// What kind of failure this is. Extensible: a backend may declare more codes as static constants.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        /// The code's stable name, e.g. `invalidSubject`.
        public let name: String

        /// Creates a code; backends use this to declare their own static constants.
        public init(_ name: String) {
            self.name = name
        }

        /// A subject is empty, has an empty token, whitespace or control characters, or a wildcard where a
        /// literal subject is needed.
        public static let invalidSubject = Code("invalidSubject")
        /// A subscription pattern breaks the NATS token rules (`*` a whole token, `>` only last).
        public static let invalidPattern = Code("invalidPattern")
        /// A ``SubscriptionOptions`` value, configuration value or group name is out of range.
        public static let invalidOption = Code("invalidOption")
        /// An event attribute or extension cannot be carried (empty id, CR/LF/NUL in a value, bad extension name).
        public static let invalidEvent = Code("invalidEvent")
        /// An operation did not finish in time (a request got no reply, a handler ran too long).
        public static let timeout = Code("timeout")
        /// A request found nobody subscribed to its subject.
        public static let noResponders = Code("noResponders")
        /// The bus or subscription was closed.
        public static let closed = Code("closed")
        /// A delivery was acted on (ack, nak, term, respond) a second time, or after it was redelivered.
        public static let alreadyAcknowledged = Code("alreadyAcknowledged")
        /// A delivery that is not a request was asked to respond.
        public static let notARequest = Code("notARequest")
        /// A schema validation hook rejected an event.
        public static let validationFailed = Code("validationFailed")
        /// An event payload could not be decoded into the requested type.
        public static let decodingFailed = Code("decodingFailed")
        /// A value could not be encoded into an event payload.
        public static let encodingFailed = Code("encodingFailed")
        /// The backend cannot be reached or is not ready.
        public static let backendUnavailable = Code("backendUnavailable")
        /// The backend did not accept a published event (for example its retained log is full).
        public static let publishFailed = Code("publishFailed")
        /// The backend refused the operation for this identity: it may not publish to, or
        /// subscribe to, the subject the message names. Not retriable; other subjects still work.
        public static let permissionDenied = Code("permissionDenied")
        /// What the call names does not exist (for example no dead letter at that sequence).
        public static let notFound = Code("notFound")
        /// The backend does not offer this operation (for example a dead-letter queue).
        public static let unsupported = Code("unsupported")

        /// The code's name.
        public var description: String { name }
    }

    /// What kind of failure this is.
    public var code: Code
    /// A sentence for a person: which value, which rule.
    public var message: String
    /// Whether trying the same operation again may succeed.
    public var isRetriable: Bool
    /// The error that caused this one, if any.
    public var underlying: (any Error)?
    /// The source file that raised the error.
    public var file: String
    /// The source line that raised the error.
    public var line: Int
    /// For a failed ``EventBus/publish(contentsOf:)``: the outcome of every event of the batch, in
    /// order (a receipt, or why that event is not known to be stored). `nil` for other errors.
    public var batchOutcomes: [Result<PublishReceipt, EventBusError>]?

    /// Creates an error. `isRetriable` defaults to what the code usually means.
    public init(
        _ code: Code,
        _ message: String,
        isRetriable: Bool? = nil,
        underlying: (any Error)? = nil,
        file: String = #fileID,
        line: Int = #line
    ) {
        self.code = code
        self.message = message
        self.isRetriable = isRetriable ?? Self.usuallyRetriable.contains(code)
        self.underlying = underlying
        self.file = file
        self.line = line
    }

    private static let usuallyRetriable: Set<Code> = [.timeout, .noResponders, .backendUnavailable, .publishFailed]

    /// `EventBusError.<code>: <message>` followed by the underlying error and the source location.
    public var description: String {
        var text = "EventBusError.\(code.name): \(message)"
        if let underlying {
            text += " (underlying: \(underlying))"
        }
        text += " [\(file):\(line)]"
        return text
    }
}

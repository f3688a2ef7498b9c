/// An error from an ``EventStore``.
///
/// The ``code`` says what went wrong in a form code can switch on; the ``message`` names the value and
/// the rule. A ``Code/conflict`` carries the aggregate's ``currentVersion`` so that the caller can
/// reload and decide; ``isRetriable`` says whether the same call may succeed if made again (an append
/// whose outcome is unknown is retriable: the store recognises the same event ids, see
/// ``EventStore/append(_:to:expectedVersion:)``).
public struct EventStoreError: Error, Sendable, CustomStringConvertible {
    /// What kind of failure this is. Extensible: a backend may declare more codes as static constants.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        /// The code's stable name, e.g. `conflict`.
        public let name: String

        /// Creates a code; backends use this to declare their own static constants.
        public init(_ name: String) {
            self.name = name
        }

        /// Another writer appended first: the aggregate is not at the expected version.
        public static let conflict = Code("conflict")
        /// An aggregate category or id breaks the naming rules.
        public static let invalidAggregate = Code("invalidAggregate")
        /// An argument is out of range: an empty batch, a batch over the limit, version 0, a bad query.
        public static let invalidArgument = Code("invalidArgument")
        /// An event cannot be stored (an empty or repeated id, a header value the backend cannot carry).
        public static let invalidEvent = Code("invalidEvent")
        /// A store limit was reached: the aggregate holds the most events the store allows.
        public static let limitReached = Code("limitReached")
        /// The backend did not answer in time; for an append, the outcome is unknown (retry it).
        public static let timeout = Code("timeout")
        /// The backend cannot be reached or refused the operation for a reason of its own.
        public static let unavailable = Code("unavailable")
        /// The store was closed.
        public static let closed = Code("closed")
        /// A stored event or snapshot could not be read back.
        public static let corrupted = Code("corrupted")

        /// The code's name.
        public var description: String { name }
    }

    /// What kind of failure this is.
    public var code: Code
    /// A sentence for a person: which value, which rule.
    public var message: String
    /// Whether making the same call again may succeed.
    public var isRetriable: Bool
    /// For ``Code/conflict``: the aggregate's version when the append was refused.
    public var currentVersion: UInt64?
    /// The error that caused this one, if any.
    public var underlying: (any Error)?

    /// Creates an error. `isRetriable` defaults to what the code usually means.
    public init(
        _ code: Code,
        _ message: String,
        isRetriable: Bool? = nil,
        currentVersion: UInt64? = nil,
        underlying: (any Error)? = nil
    ) {
        self.code = code
        self.message = message
        self.isRetriable = isRetriable ?? (code == .timeout || code == .unavailable)
        self.currentVersion = currentVersion
        self.underlying = underlying
    }

    /// `EventStoreError.<code>: <message>` followed by the underlying error.
    public var description: String {
        var text = "EventStoreError.\(code.name): \(message)"
        if let underlying { text += " (underlying: \(underlying))" }
        return text
    }
}

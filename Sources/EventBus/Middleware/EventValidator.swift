/// Schema checks by CloudEvents `type`, for ``ValidatingEventBus``: each registered type has a check that
/// throws (any error, with a message saying what is wrong) when an event of that type is invalid.
public struct EventValidator: Sendable {
    /// What to do with an event whose type has no registered check.
    public enum UnknownTypePolicy: Sendable {
        /// Let it through.
        case allow
        /// Reject it with ``EventBusError/Code/validationFailed``.
        case reject
    }

    /// A check for one event type.
    public typealias Check = @Sendable (Event) throws -> Void

    private var checks: [String: Check] = [:]
    /// What happens to types without a check.
    public var unknownTypes: UnknownTypePolicy

    /// Creates a validator with no checks.
    public init(unknownTypes: UnknownTypePolicy = .allow) {
        self.unknownTypes = unknownTypes
    }

    /// Registers `check` for events of `type`, replacing an earlier one.
    public mutating func register(type: String, check: @escaping Check) {
        checks[type] = check
    }

    /// Registers a check that the payload of `type` events decodes as JSON into `Value`, and, if given,
    /// that the decoded value passes `validate`.
    public mutating func register<Value: Decodable & Sendable>(
        type: String,
        as valueType: Value.Type,
        validate: (@Sendable (Value) throws -> Void)? = nil
    ) {
        register(type: type) { event in
            let value = try event.decode(Value.self)
            try validate?(value)
        }
    }

    /// Throws ``EventBusError/Code/validationFailed`` naming the event and why it is invalid.
    public func validate(_ event: Event) throws(EventBusError) {
        guard let check = checks[event.type] else {
            if unknownTypes == .reject {
                throw EventBusError(
                    .validationFailed,
                    "event \(event.id) has type '\(event.type)', which has no registered schema; known types: "
                        + checks.keys.sorted().joined(separator: ", ")
                )
            }
            return
        }
        do {
            try check(event)
        } catch {
            let reason = (error as? EventBusError)?.message ?? String(describing: error)
            throw EventBusError(
                .validationFailed,
                "event \(event.id) of type '\(event.type)' on '\(event.subject)' failed validation: \(reason)",
                underlying: error
            )
        }
    }
}

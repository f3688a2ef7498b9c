/// What an event handler is handling, kept in a task-local so that events published while handling it
/// inherit its correlation id, name it as their cause, and continue its trace.
public struct EventContext: Sendable, Hashable {
    /// The correlation id shared by everything caused by the handled event.
    public var correlationID: String
    /// The id of the handled event: the cause of whatever is published now.
    public var causationID: String
    /// The handled event's `traceparent`.
    public var traceParent: String?
    /// The handled event's `tracestate`.
    public var traceState: String?

    /// The context of handling `event`: its correlation id (or its own id when it starts a correlation),
    /// its id as the cause, and its trace context.
    public init(handling event: Event) {
        correlationID = event.correlationID ?? event.id
        causationID = event.id
        traceParent = event.traceParent
        traceState = event.traceState
    }

    /// The context of the event the current task is handling, if any.
    @TaskLocal public static var current: EventContext?

    /// Runs `operation` as the handling of `event`; for code that iterates a subscription itself instead of
    /// using `consume`.
    public static func withHandling<Result: Sendable>(
        _ event: Event,
        operation: () async throws -> Result
    ) async rethrows -> Result {
        try await $current.withValue(EventContext(handling: event), operation: operation)
    }

    /// `event` with the attributes it does not set itself taken from this context.
    public func applied(to event: Event) -> Event {
        var result = event
        if result.correlationID == nil { result.correlationID = correlationID }
        if result.causationID == nil { result.causationID = causationID }
        if result.traceParent == nil {
            result.traceParent = traceParent
            if result.traceState == nil { result.traceState = traceState }
        }
        return result
    }
}

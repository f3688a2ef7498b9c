// Middleware forwards the dead-letter queue of the bus it wraps, as it forwards `health()`:
// dead letters are the backend's, whatever wraps it.

extension CorrelatingEventBus {
    /// The wrapped bus's dead-letter queue.
    public func deadLetterQueue() throws(EventBusError) -> any DeadLetterQueue { try base.deadLetterQueue() }
}

extension HandlerTimeoutEventBus {
    /// The wrapped bus's dead-letter queue.
    public func deadLetterQueue() throws(EventBusError) -> any DeadLetterQueue { try base.deadLetterQueue() }
}

extension RetryingEventBus {
    /// The wrapped bus's dead-letter queue.
    public func deadLetterQueue() throws(EventBusError) -> any DeadLetterQueue { try base.deadLetterQueue() }
}

extension ValidatingEventBus {
    /// The wrapped bus's dead-letter queue.
    public func deadLetterQueue() throws(EventBusError) -> any DeadLetterQueue { try base.deadLetterQueue() }
}

extension RecordingEventBus {
    /// The wrapped bus's dead-letter queue.
    public func deadLetterQueue() throws(EventBusError) -> any DeadLetterQueue { try base.deadLetterQueue() }
}

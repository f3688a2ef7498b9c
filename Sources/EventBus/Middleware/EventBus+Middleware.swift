extension EventBus {
    /// This bus with publishes and subscribes retried per `policy`; see ``RetryingEventBus``.
    public func retrying(_ policy: RetryPolicy = .init()) throws(EventBusError) -> RetryingEventBus {
        try RetryingEventBus(self, policy: policy)
    }

    /// This bus with correlation propagated from handled to published events; see ``CorrelatingEventBus``.
    public func correlating() -> CorrelatingEventBus {
        CorrelatingEventBus(self)
    }

    /// This bus with every `consume` handler call bounded by `timeout`; see ``HandlerTimeoutEventBus``.
    public func handlerTimeout(_ timeout: Duration) throws(EventBusError) -> HandlerTimeoutEventBus {
        try HandlerTimeoutEventBus(self, timeout: timeout)
    }

    /// This bus with published events checked by `validator`; see ``ValidatingEventBus``.
    public func validating(_ validator: EventValidator) -> ValidatingEventBus {
        ValidatingEventBus(self, validator: validator)
    }
}

/// The interface services code against: publish events, subscribe to patterns, request and reply.
///
/// Backends (in-memory, JetStream) implement it with the same semantics, checked by the
/// `EventBusConformance` suite:
/// - ``publish(_:)`` returns once the backend stored the event; the same id inside the duplicate window is
///   stored once.
/// - ``subscribe(_:options:)`` delivers at least once; members of one group split the events, different
///   groups each get all of them; one subscriber with `maxInFlight: 1` sees each subject in publish order.
///   The subscription (and a new group's consumer) exists when it returns.
/// - `consume(_:options:handler:)` acks when the handler returns, naks with backoff when it throws, and
///   after `maxDeliver` attempts moves the event to the dead-letter subject.
/// - A member that stops (breaks out of its loop, is cancelled, closes) hands back at once what it received
///   and did not handle; see ``EventSubscription``.
/// - ``close()`` ends every subscription of this client; nothing hangs.
///
/// Readiness: a new group starts with the events published after its consumer exists (`start: .new`), and
/// `consume(pattern, ...)` subscribes inside the task that runs it, so an event published right after
/// starting that task can come too early. Subscribe first, then consume the subscription:
///
/// ```swift
/// let orders = try await bus.subscribe("order.created", options: options)  // the consumer exists now
/// group.addTask { try await bus.consume(orders, options: options, handler: handle) }
/// try await bus.publish(order)  // surely delivered to the group
/// ```
public protocol EventBus: Sendable {
    /// What this backend can do beyond the basic contract.
    var capabilities: EventBusCapabilities { get }

    /// Stores `event` and returns once the backend accepted it.
    ///
    /// Throws `invalidEvent`/`invalidSubject` before anything happens if the event cannot travel, and
    /// `closed` after ``close()``.
    @discardableResult
    func publish(_ event: Event) async throws -> PublishReceipt
    /// Stores a batch of events and returns their receipts in order, once the backend accepted
    /// every one. The fast way to publish many events: no task per event. See
    /// ``EventBus/publish(contentsOf:)`` in the extension for the failure rules.
    @discardableResult
    func publish(contentsOf events: [Event]) async throws -> [PublishReceipt]

    /// Subscribes to the events whose subject matches `pattern`.
    ///
    /// The subscription exists (and counts as a responder for requests) from the moment this returns, even
    /// before anyone iterates it.
    func subscribe(_ pattern: SubjectPattern, options: SubscriptionOptions) async throws -> EventSubscription

    /// Sends `event` to a subscriber of its subject and waits for one reply.
    ///
    /// Throws `noResponders` when nobody subscribes to the subject and `timeout` when no reply came in time.
    /// A request is delivered at most once and is not stored.
    func request(_ event: Event, timeout: Duration) async throws -> Event

    /// Runs `handler` for each delivery of `subscription` until it ends (the subscription or the bus closes,
    /// or the calling task is cancelled), then closes it. Acks when the handler returns; when it throws,
    /// naks with the options' backoff, or on the last attempt moves the event to the dead-letter subject with
    /// the error's text. A handler may settle a delivery itself. Pass the `options` the subscription was made
    /// with: they say how to settle, how many handlers run at once (``SubscriptionOptions/handlerConcurrency``),
    /// how long handlers keep their delivery (``SubscriptionOptions/ackExtension``) and what a cancelled
    /// handler's delivery gets (``SubscriptionOptions/onCancel``).
    ///
    /// This is the form to use when events may be published as soon as the consumer runs: the subscription
    /// exists before this is called (see the readiness pattern on ``EventBus``). The pattern-taking
    /// `consume(_ pattern:options:handler:)` subscribes and then calls this.
    ///
    /// Has a default implementation (``DeliverySettlement/run(_:on:options:)`` for each delivery);
    /// middleware overrides it to wrap the handler, and must forward it to the bus it wraps.
    func consume(
        _ subscription: EventSubscription,
        options: SubscriptionOptions,
        handler: @escaping @Sendable (Delivery) async throws -> Void
    ) async throws

    /// Closes this client: publishes are refused with `closed`, every subscription ends. Waits for
    /// publishes in progress to finish.
    func close() async

    /// This client's health now: its connection and each of its subscriptions (see
    /// ``EventBusHealth``). Cheap enough for a readiness probe every second; it sends nothing to
    /// the backend.
    ///
    /// A requirement with a default (which reports an in-process bus with no subscriptions), so
    /// that middleware forwards it to the bus it wraps and code holding `any EventBus` (the
    /// bootstrap's factory, the demo) reads the real backend's health without knowing its type.
    func health() async -> EventBusHealth

    /// The dead letters this bus keeps, to list, inspect, requeue and purge (see
    /// ``DeadLetterQueue``).
    ///
    /// A requirement with a default (which throws ``EventBusError/Code/unsupported``), for the
    /// same reason as ``health()``: middleware forwards it, so code holding `any EventBus` reaches
    /// the backend's queue through any wrapping, and backends without one still conform.
    func deadLetterQueue() throws(EventBusError) -> any DeadLetterQueue
}

extension EventBus {
    /// The default: no dead-letter API (``EventBusError/Code/unsupported``).
    public func deadLetterQueue() throws(EventBusError) -> any DeadLetterQueue {
        throw .deadLettersUnsupported("\(Self.self)")
    }
}

extension EventBus {
    /// The default health: in process, healthy, no subscriptions listed. Backends that know more
    /// (both built-in ones) implement ``EventBus/health()``.
    public func health() async -> EventBusHealth {
        EventBusHealth(backend: "\(Self.self)", connection: .inProcess)
    }
}

extension EventBus {
    /// The default `consume(_ subscription:options:handler:)`: settle each delivery after the
    /// handler, then close the subscription.
    ///
    /// Runs up to `options.handlerConcurrency` handlers at once (default 1: one after the other), sends
    /// in-progress for handlers that run long as `options.ackExtension` says, and settles a handler
    /// cancelled with this task as `options.onCancel` says. Throws ``EventBusError/Code/invalidOption``
    /// before handling anything if the options are invalid or `handlerConcurrency` exceeds the consumer's
    /// limit of outstanding deliveries (`maxInFlight`; on JetStream, by default, the bus's `maxAckPending`).
    ///
    /// With one handler at a time, a backend may run the loop on the thread that receives its
    /// deliveries (the JetStream bus does: the consumer's cnats delivery thread), so that an event
    /// reaches the handler without waking a concurrency-pool thread for it, as a C callback would.
    /// A handler that leaves that thread (it calls an actor, or awaits work that resumes it from
    /// elsewhere) would pay a queued job for every hop back there, so after a few such handlers
    /// the loop goes back to the pool for good. A handler that blocks its thread holds up only this
    /// subscription's deliveries, as it would in any case, and no thread of the pool.
    public func consume(
        _ subscription: EventSubscription,
        options: SubscriptionOptions,
        handler: @escaping @Sendable (Delivery) async throws -> Void
    ) async throws {
        try await ConsumeLoop.run(subscription, options: options, handler: handler)
    }

    /// Subscribes to `pattern`, then runs `handler` for each delivery as
    /// `consume(_ subscription:options:handler:)` does, until the subscription ends.
    ///
    /// The subscription is made inside this call: with `start: .new`, a new group misses events published
    /// before it exists, and the caller cannot tell when that is. When something publishes right after
    /// starting the consumer (a test, a workflow's first step), subscribe first and pass the subscription.
    /// Not a requirement of the protocol: middleware overrides the subscription form, which this calls.
    public func consume(
        _ pattern: SubjectPattern,
        options: SubscriptionOptions,
        handler: @escaping @Sendable (Delivery) async throws -> Void
    ) async throws {
        let subscription = try await subscribe(pattern, options: options)
        try await consume(subscription, options: options, handler: handler)
    }

    /// Subscribes with a pattern given as text; throws `invalidPattern` if it breaks the NATS token rules.
    public func subscribe(_ pattern: String, options: SubscriptionOptions = .init()) async throws -> EventSubscription {
        try await subscribe(SubjectPattern(pattern), options: options)
    }

    /// `consume(_ pattern:options:handler:)` with a pattern given as text.
    public func consume(
        _ pattern: String,
        options: SubscriptionOptions = .init(),
        handler: @escaping @Sendable (Delivery) async throws -> Void
    ) async throws {
        try await consume(SubjectPattern(pattern), options: options, handler: handler)
    }
}

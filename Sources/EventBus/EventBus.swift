/// The interface services code against: publish events, subscribe to patterns, request and reply.
///
/// Backends (in-memory, JetStream) implement it with the same semantics, checked by the
/// `EventBusConformance` suite:
/// - ``publish(_:)`` returns once the backend stored the event; the same id inside the duplicate window is
///   stored once.
/// - ``subscribe(_:options:)`` delivers at least once; members of one group split the events, different
///   groups each get all of them; one subscriber with `maxInFlight: 1` sees each subject in publish order.
/// - ``consume(_:options:handler:)`` acks when the handler returns, naks with backoff when it throws, and
///   after `maxDeliver` attempts moves the event to the dead-letter subject.
/// - ``close()`` ends every subscription of this client; nothing hangs.
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

    /// Runs `handler` for each delivery until the subscription ends (the bus closes or the calling task is
    /// cancelled). Acks when the handler returns; when it throws, naks with the options' backoff, or on the
    /// last attempt moves the event to the dead-letter subject with the error's text. A handler may settle a
    /// delivery itself.
    ///
    /// Has a default implementation built on ``subscribe(_:options:)``; middleware overrides it to wrap
    /// the handler.
    func consume(
        _ pattern: SubjectPattern,
        options: SubscriptionOptions,
        handler: @escaping @Sendable (Delivery) async throws -> Void
    ) async throws

    /// Closes this client: publishes are refused with `closed`, every subscription ends. Waits for
    /// publishes in progress to finish.
    func close() async
}

extension EventBus {
    /// The default ``consume(_:options:handler:)``: subscribe, then settle each delivery after the handler.
    public func consume(
        _ pattern: SubjectPattern,
        options: SubscriptionOptions,
        handler: @escaping @Sendable (Delivery) async throws -> Void
    ) async throws {
        let subscription = try await subscribe(pattern, options: options)
        do {
            for try await delivery in subscription {
                try await DeliverySettlement.run(handler, on: delivery, options: options)
            }
        } catch {
            await subscription.close()
            throw error
        }
        await subscription.close()
    }

    /// Subscribes with a pattern given as text; throws `invalidPattern` if it breaks the NATS token rules.
    public func subscribe(_ pattern: String, options: SubscriptionOptions = .init()) async throws -> EventSubscription {
        try await subscribe(SubjectPattern(pattern), options: options)
    }

    /// ``consume(_:options:handler:)`` with a pattern given as text.
    public func consume(
        _ pattern: String,
        options: SubscriptionOptions = .init(),
        handler: @escaping @Sendable (Delivery) async throws -> Void
    ) async throws {
        try await consume(SubjectPattern(pattern), options: options, handler: handler)
    }
}

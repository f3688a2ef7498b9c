#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Logging

/// An ``EventBus`` inside one process, with the semantics of JetStream rather than a toy's.
///
/// - A retained log bounded by count, bytes and age, so `start: .all`, sequences and times work.
/// - Consumers as JetStream keeps them: groups that load-balance and keep their place, ack deadlines with
///   redelivery, nak with delay, backoff, `maxDeliver` then the dead-letter subject, `maxInFlight`.
/// - Duplicate suppression by event id inside a window.
/// - Request/reply with timeout and "no responders".
///
/// Nothing runs in the background and nothing needs to be started: timers advance while subscribers wait.
/// Every buffer is bounded; when subscribers fall behind the log's limits, the oldest events are discarded
/// and each such loss is logged and counted in ``statistics()``.
///
/// Each value is one client of a broker; ``newClient()`` gives another client of the same broker, as a
/// second process connecting to the same server would have.
public final class InMemoryEventBus: EventBus {
    let broker: InMemoryBroker
    let client: ClientID

    /// What the in-memory bus does: everything except surviving a restart of the process.
    public let capabilities: EventBusCapabilities = [
        .persistent, .consumerGroups, .exactlyOncePublish, .requestReply, .deadLetter, .deadLetterQueue,
    ]

    /// Creates a bus with its own broker; throws ``EventBusError/Code/invalidOption`` for a bad configuration.
    ///
    /// - Parameters:
    ///   - configuration: The log's limits and duplicate window; see ``Configuration``.
    ///   - logger: Where the broker logs (events discarded before delivery, for example).
    ///   - observability: Where metrics and spans go; by default what the application
    ///     bootstrapped (docs/observability.md).
    public convenience init(
        configuration: Configuration = .init(),
        logger: Logger = Logger(label: "eventbus.memory"),
        observability: EventBusObservability = .bootstrapped
    ) throws(EventBusError) {
        try configuration.validate()
        self.init(broker: InMemoryBroker(configuration: configuration, logger: logger, observability: observability))
    }

    /// A bus with the default configuration, which is valid, so this cannot fail.
    convenience init(defaultConfigurationLogger logger: Logger) {
        self.init(broker: InMemoryBroker(configuration: Configuration(), logger: logger))
    }

    private init(broker: InMemoryBroker) {
        self.broker = broker
        self.client = broker.state.withLock { $0.openClient() }
    }

    /// Another client of the same broker: it sees the same log and groups, and closing it ends only its own
    /// subscriptions.
    public func newClient() -> InMemoryEventBus {
        InMemoryEventBus(broker: broker)
    }

    /// Stores `event`; see ``EventBus/publish(_:)``.
    @discardableResult
    public func publish(_ event: Event) async throws -> PublishReceipt {
        try publishNow(event)
    }

    /// The whole publish, synchronous: in the async function, its typed errors and telemetry
    /// scope made a frame of over 1 KB, which the task's allocator cannot place in one of its
    /// slabs (a malloc per publish from a task of its own); here they live on the thread's stack.
    @inline(never)
    private func publishNow(_ event: Event) throws -> PublishReceipt {
        try event.validateForPublish()
        var event = event
        guard let scope = broker.telemetry.preparePublish(&event) else {
            return try broker.withState { (state, now, effects) throws(EventBusError) in
                try state.publish(event, from: client, now: now, effects: &effects)
            }
        }
        do {
            let receipt = try broker.withState { (state, now, effects) throws(EventBusError) in
                try state.publish(event, from: client, now: now, effects: &effects)
            }
            scope.succeeded(event, receipt)
            return receipt
        } catch {
            scope.failed(event, error)
            throw error
        }
    }

    /// Subscribes; see ``EventBus/subscribe(_:options:)``.
    public func subscribe(_ pattern: SubjectPattern, options: SubscriptionOptions) async throws -> EventSubscription {
        try options.validate()
        try options.validateConcurrency(maxInFlight: options.maxInFlight, limitName: "maxInFlight")
        let wallClockNow = Date()
        let (subscriber, consumer, held, telemetry) = try broker.withState { (state, now, _) throws(EventBusError) in
            try state.subscribe(
                pattern, options: options, client: client, now: now, wallClockNow: wallClockNow,
                telemetry: broker.telemetry)
        }
        return EventSubscription(
            InMemorySubscription(
                broker: broker, subscriber: subscriber, consumer: consumer, held: held, telemetry: telemetry),
            consumer: ConsumerSettings(
                ackWait: options.ackWait, maxInFlight: options.maxInFlight, maxInFlightName: "maxInFlight",
                logger: broker.logger)
        )
    }

    /// Sends a request and waits for the first reply; see ``EventBus/request(_:timeout:)``.
    public func request(_ event: Event, timeout: Duration) async throws -> Event {
        try event.validateForPublish()
        let event = broker.telemetry.checkedOutgoing(event)
        guard timeout > .zero else {
            throw EventBusError(.invalidOption, "request timeout \(timeout) must be positive")
        }
        let replies = ReplyBox()
        let token = try broker.withState { (state, now, effects) throws(EventBusError) in
            try state.request(event, replies: replies, from: client, now: now, effects: &effects)
        }
        let subject = event.subject
        let result = await withTaskGroup(of: Void.self, returning: Result<Event, EventBusError>.self) { group in
            group.addTask(operation: {
                try? await Task.sleep(for: timeout)
                replies.fail(EventBusError(.timeout, "request on '\(subject)' got no reply within \(timeout)"))
            })
            let result = await replies.wait()
            group.cancelAll()
            return result
        }
        broker.state.withLock { $0.finishRequest(token, client: client) }
        try Task.checkCancellation()
        return try result.get()
    }

    /// Closes this client: publishes are refused, its subscriptions end, its requests fail with `closed`.
    /// Other clients of the broker are unaffected.
    public func close() async {
        broker.withState { state, now, effects in
            state.closeClient(client, now: now, effects: &effects)
        }
    }

    /// This client's health: running subscriptions while open, closed after ``close()``. Each
    /// entry's `pending` counts the events waiting for its consumer (group).
    public func health() async -> EventBusHealth {
        broker.state.withLock { $0.health(of: client) }
    }

    /// What the broker holds now.
    public func statistics() -> Statistics {
        broker.state.withLock { state in
            Statistics(
                retainedEvents: state.log.liveCount,
                firstSequence: state.log.firstSequence,
                lastSequence: state.log.lastSequence,
                consumers: state.consumers.count,
                pendingDeliveries: state.consumers.values.reduce(0) { $0 + $1.pendingCount },
                duplicatesSuppressed: state.duplicatesSuppressed,
                discardedBeforeDelivery: state.discardedBeforeDelivery
            )
        }
    }
}

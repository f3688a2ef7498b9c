import Logging

/// The deliveries of one subscription, as an `AsyncSequence`.
///
/// The sequence ends (returns `nil`) when the subscription or its bus is closed, or when the task iterating
/// it is cancelled. Iterate it from one task at a time. ``close()`` may be called from anywhere, also while
/// another task is waiting in `next()`.
///
/// How a member hands back what it has not handled, so that the rest of its group gets it at once instead
/// of after the ack wait:
/// - Deliveries the backend received for this subscriber (prefetched) but `next()` has not returned yet
///   are handed back when the iteration ends for any reason: `break`, a dropped iterator, cancellation,
///   ``close()``.
/// - Ending the iteration early (`break` out of the loop, or dropping the iterator before the sequence
///   ended) ends the subscription's deliveries: it takes no more (a new loop over it ends at once; a group's
///   other members get the rest), and every delivery `next()` already returned stays the application's to
///   settle (it may still be working on it) until ``close()``.
/// - ``close()``, and cancelling the iterating task, also hand back every delivery `next()` returned that
///   is not settled yet: settling one of those afterwards throws
///   ``EventBusError/Code/alreadyAcknowledged``. Closing the whole bus ends the iteration without this
///   step, so a shutdown can let handlers finish (whether they can still settle is the backend's matter).
///
/// Whether a hand-back counts as a delivery attempt depends on the backend: the in-memory bus never counts
/// it (the next delivery carries the same ``Delivery/deliveryCount``); JetStream counts every delivery the
/// server made (`NumDelivered`), so there the event's next delivery shows one attempt more.
public struct EventSubscription: AsyncSequence, Sendable {
    /// Each element is one delivery to settle.
    public typealias Element = Delivery
    /// A backend may end the sequence with an error it cannot recover from.
    public typealias Failure = any Error

    private let source: any DeliverySource
    /// What the backend applied to the consumer, for `consume`; `nil` when the backend did not say.
    package let consumer: ConsumerSettings?

    /// Wraps a backend's delivery source; backends call this.
    public init(_ source: any DeliverySource) {
        self.source = source
        consumer = nil
    }

    /// Wraps a backend's delivery source, with the settings its consumer got.
    package init(_ source: any DeliverySource, consumer: ConsumerSettings) {
        self.source = source
        self.consumer = consumer
    }

    /// An executor that lets the thread handing over this subscription's deliveries run the task
    /// iterating it, or `nil` when the backend has no such thread (the in-memory bus).
    ///
    /// On JetStream these are cnats delivery threads: the consumer's, and the one of the
    /// subscription's requests. A task iterating the ordinary way waits on a concurrency-pool
    /// thread, woken through the global executor for every delivery that ends its wait; one that
    /// prefers this executor goes on where the delivery arrived:
    ///
    /// ```swift
    /// let worker = Task(executorPreference: subscription.deliveryExecutor) {  // nil: the global executor
    ///     for try await delivery in subscription { try handle(delivery.event); try await delivery.ack() }
    /// }
    /// ```
    ///
    /// The loop's body then holds up the subscription's deliveries while it runs, as a handler on
    /// that thread would: keep it quick and non-blocking. Child tasks inherit the preference, and
    /// each hop of an awaited call (an actor, a sleep) becomes a job queued on this executor,
    /// most of them passed on to the global executor (about 2 µs per actor call): iterate a loop
    /// that awaits such work per delivery from an ordinary task, or use `consume` with one
    /// handler at a time, which prefers this executor itself and stops once its handlers keep
    /// leaving the thread (do not wrap `consume` in a task preferring it: its fallback to the pool
    /// would inherit the preference).
    public var deliveryExecutor: (any TaskExecutor)? { consumer?.deliveryThread?.executor }

    /// Starts iterating.
    public func makeAsyncIterator() -> Iterator {
        Iterator(base: source.makeDeliveryIterator(), lifetime: IterationLifetime(source: source))
    }

    /// Stops the subscription: no new deliveries, and every iterator ends. What it received and did not
    /// hand out, and what it handed out that is still unsettled, goes back to the backend at once (a group's
    /// other members take it over); settling such a delivery afterwards throws
    /// ``EventBusError/Code/alreadyAcknowledged``.
    public func close() async {
        await source.close()
    }

    /// Iterates deliveries.
    public struct Iterator: AsyncIteratorProtocol {
        var base: any DeliveryIterator
        let lifetime: IterationLifetime

        /// The next delivery, or `nil` once the subscription has ended.
        ///
        /// Runs on the caller's executor (`nonisolated(nonsending)`): a loop on an actor gets its
        /// deliveries without hopping to the global executor and back for each.
        ///
        /// Checks for cancellation first, so a cancelled task gets no more deliveries, even ones the backend
        /// already holds for it: the subscription closes and hands them back.
        nonisolated(nonsending) public mutating func next() async throws -> Delivery? {
            if Task.isCancelled {
                lifetime.ended = true
                await lifetime.source.close()
                return nil
            }
            let delivery = try await base.next()
            if delivery == nil {
                lifetime.ended = true
                // Cancelled while waiting: the backend ended the sequence; closing hands back
                // what the subscriber still holds, as for a cancellation noticed above.
                if Task.isCancelled { await lifetime.source.close() }
            }
            return delivery
        }
    }

    /// Lives as long as an iterator (and its copies): when the last one goes before the sequence ended,
    /// the application stopped iterating, and the backend hears so through
    /// ``DeliverySource/stopIterating()``.
    final class IterationLifetime {
        let source: any DeliverySource
        /// The sequence returned `nil`: nothing is left to hand back.
        var ended = false

        init(source: any DeliverySource) {
            self.source = source
        }

        deinit {
            if !ended {
                source.stopIterating()
            }
        }
    }
}

/// What a backend applied to a subscription's consumer, which may differ from the options passed (JetStream
/// puts its configured defaults in place of the library's), and where `consume` logs.
package struct ConsumerSettings: Sendable {
    /// The ack wait in force.
    package var ackWait: Duration
    /// The limit of outstanding deliveries in force.
    package var maxInFlight: Int
    /// What that limit is called in errors (`maxInFlight`, or JetStream's `maxAckPending`).
    package var maxInFlightName: String
    /// The bus's logger.
    package var logger: Logger
    /// Where `consume` runs its loop when handlers run one at a time (see ``DeliveryThreadLoop``);
    /// `nil` for the global executor.
    package var deliveryThread: DeliveryThreadLoop?

    /// Creates the settings.
    package init(
        ackWait: Duration, maxInFlight: Int, maxInFlightName: String, logger: Logger,
        deliveryThread: DeliveryThreadLoop? = nil
    ) {
        self.ackWait = ackWait
        self.maxInFlight = maxInFlight
        self.maxInFlightName = maxInFlightName
        self.logger = logger
        self.deliveryThread = deliveryThread
    }
}

/// How a backend lets `consume` run its loop on the thread that receives deliveries: an executor
/// the loop prefers, which that thread runs the loop on when it hands a delivery over (instead of
/// waking a concurrency-pool thread for it), and a count of the jobs it passed on to the global
/// executor instead (work that left that thread: a handler's actor calls, its child tasks, steps
/// resumed from elsewhere).
package struct DeliveryThreadLoop: Sendable {
    /// The executor the loop prefers.
    package var executor: any TaskExecutor
    /// Jobs the executor passed on to the global executor so far.
    package var forwardedJobCount: @Sendable () -> Int

    /// After this many handlers that made the executor pass work on, `consume`'s loop stops
    /// preferring it for good.
    package static let handlersLeavingBeforeTheLoopDoes = 4

    /// Creates the description.
    package init(executor: any TaskExecutor, forwardedJobCount: @escaping @Sendable () -> Int) {
        self.executor = executor
        self.forwardedJobCount = forwardedJobCount
    }
}

/// A backend's subscription, wrapped by ``EventSubscription``.
public protocol DeliverySource: Sendable {
    /// Creates an iterator over the subscription's deliveries.
    func makeDeliveryIterator() -> any DeliveryIterator
    /// Closes the subscription; see ``EventSubscription/close()``: hand back at once what was received and
    /// not returned by `next()`, and what was returned and is not settled yet.
    func close() async
    /// The application stopped iterating before the sequence ended: it broke out of its loop or dropped its
    /// iterator. Called from the iterator's `deinit`, on whatever thread dropped it, so it must not block
    /// and cannot await: start the work and return.
    ///
    /// A backend should end this subscriber (no further deliveries to it) and hand back at once every
    /// delivery it received but `next()` did not return, so the group's other members get them now rather
    /// than after the ack wait, ideally without counting that as an attempt. Deliveries `next()` returned
    /// stay the application's to settle: keep what settling them needs (a subscriber's own consumer, say)
    /// until ``close()``, which hands back those still unsettled.
    ///
    /// The default does nothing: the subscription then lives until ``close()``, its bus closes, or it is
    /// released, and its prefetched deliveries come back after their ack wait.
    func stopIterating()
}

extension DeliverySource {
    /// Does nothing; see ``DeliverySource/stopIterating()``.
    public func stopIterating() {}
}

/// A backend's iterator of deliveries.
public protocol DeliveryIterator {
    /// The next delivery, or `nil` once the subscription has ended.
    ///
    /// Runs on the caller's executor (`nonisolated(nonsending)`), as ``EventSubscription/Iterator/next()``
    /// does, so an actor or a consumer thread iterating stays where it is. Declare the witness the same
    /// way: a plain `async` one still conforms, but hops to the global executor and back on every call.
    nonisolated(nonsending) mutating func next() async throws -> Delivery?
}

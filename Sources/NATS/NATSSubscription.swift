import Synchronization

/// The messages of one subscription, as an `AsyncSequence`.
///
/// Iterate it once, from one task. Ending the iteration (a `break`, a thrown error, or the task
/// being cancelled) unsubscribes, and so does dropping the last reference to the subscription.
/// The sequence ends (returns `nil`) after ``unsubscribe()``, after ``drain(timeout:)`` has
/// delivered what was received, or when the connection closes.
public struct NATSSubscription: AsyncSequence, Sendable {
    public typealias Element = NATSMessage
    public typealias Failure = NATSError

    let handle: SubscriptionHandle<NATSMessage>

    /// The subject this subscription listens on.
    public var subject: String { handle.subject }
    /// The queue group, if any.
    public var queueGroup: String? { handle.queueGroup }

    /// Messages cnats dropped for this subscription because the consumer fell behind its limits.
    public var droppedCount: Int64 { handle.native.droppedCount }

    /// Messages cnats handed to this subscription so far.
    public var deliveredCount: Int64 { handle.native.deliveredCount }

    /// Removes the interest at once; messages not yet iterated are discarded and the sequence ends.
    public func unsubscribe() {
        handle.stop()
    }

    /// Stops receiving new messages, delivers the ones already received, then ends the sequence.
    public func drain(timeout: Duration = .seconds(30)) {
        handle.native.drain(timeoutMilliseconds: Swift.max(1, timeout.millisecondsClamped))
    }

    /// A task executor that lets the delivery thread which receives this subscription's messages run
    /// the task iterating it, instead of waking a concurrency-pool thread for every hand-over.
    ///
    /// Iterate from a task that prefers it:
    ///
    /// ```swift
    /// let worker = Task(executorPreference: subscription.deliveryExecutor) {
    ///     for try await message in subscription { handle(message) }
    /// }
    /// ```
    ///
    /// A task iterating the ordinary way waits on a pool thread, and each message that ends its
    /// wait goes through the global executor, which wakes that thread: a second thread wake-up
    /// after cnats's own (its reader thread waking the delivery thread), 4-15 µs at p50 on a
    /// 2-core machine (W3 and W8 in docs/performance.md). Under this preference the loop's next
    /// step runs on the delivery thread before the message's hand-over returns, as a handler
    /// would; the task's start, and any step resumed from another thread (a timer, a reply),
    /// run on the pool as usual.
    ///
    /// Keep the loop's body quick and non-blocking: while it runs, the delivery thread delivers
    /// nothing else (messages wait in cnats's queue, within the subscription's limits). Child
    /// tasks inherit the preference, and each hop of an awaited call (an actor, a sleep, another
    /// sequence) becomes a job queued on this executor, most of them passed on to the global
    /// executor: about 2 µs per actor call, against 0.06 µs from an ordinary task. Iterate a
    /// loop that awaits such work per message from an ordinary task.
    public var deliveryExecutor: any TaskExecutor { handle.buffer.consumerExecutor }

    /// Creates the iterator. Call once.
    public func makeAsyncIterator() -> Iterator {
        Iterator(handle: handle, token: IterationToken(handle: handle))
    }

    /// Iterates over the messages, a batch at a time under the hood.
    public struct Iterator: AsyncIteratorProtocol {
        let handle: SubscriptionHandle<NATSMessage>
        let token: IterationToken<NATSMessage>
        /// The batch taken from the buffer, reversed: each message is moved out with `popLast`
        /// (no reference counting of its fields, which the delivery thread would contend for).
        var batch: [NATSMessage] = []

        init(handle: SubscriptionHandle<NATSMessage>, token: IterationToken<NATSMessage>) {
            self.handle = handle
            self.token = token
        }

        /// The next message, or `nil` when the subscription has ended or the task was cancelled.
        /// Runs on the caller's executor (`nonisolated(nonsending)`): an actor iterating stays on it.
        nonisolated(nonsending) public mutating func next() async throws(NATSError) -> NATSMessage? {
            if let message = batch.popLast() { return message }
            guard try await handle.buffer.takeBatch(into: &batch) == .took else {
                handle.stop()
                return nil
            }
            batch.reverseInPlace()
            return batch.popLast()
        }
    }
}

/// Owns what a subscription needs; unsubscribes when the last reference goes away. `Element` is
/// what its buffer holds: a ``NATSMessage`` for core subscriptions, a ``ConsumerDelivery`` for
/// JetStream consumers.
final class SubscriptionHandle<Element: Sendable>: Sendable {
    let subject: String
    let queueGroup: String?
    let native: NativeSubscription
    let buffer: BoundedBatchBuffer<Element>
    /// Core subscriptions added to a consumer that feed the same buffer
    /// (``NATSPullConsumer/addCoreSubscription(to:queueGroup:)``).
    let coreSubscriptions: Mutex<[NativeSubscription]> = Mutex([])

    init(subject: String, queueGroup: String?, native: NativeSubscription, buffer: BoundedBatchBuffer<Element>) {
        self.subject = subject
        self.queueGroup = queueGroup
        self.native = native
        self.buffer = buffer
    }

    /// Unsubscribes and releases a delivery thread blocked on a full buffer.
    func stop() {
        _ = stopReturningPending()
    }

    /// Unsubscribes (first, so that nothing more arrives) and returns the messages received but
    /// never handed to the consumer.
    func stopReturningPending() -> [Element] {
        native.unsubscribe()
        for added in coreSubscriptions.withLock({ $0 }) { added.unsubscribe() }
        return buffer.discardReturningPending()
    }

    deinit {
        stop()
    }
}

/// Ends the subscription when the iterator that owns it goes away.
final class IterationToken<Element: Sendable>: Sendable {
    let handle: SubscriptionHandle<Element>

    init(handle: SubscriptionHandle<Element>) {
        self.handle = handle
    }

    deinit {
        handle.stop()
    }
}

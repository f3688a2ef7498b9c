import Synchronization

/// What a JetStream consumer's subscription buffers: a received message whose reply subject was
/// moved out of `message.replyTo` into a ``MessageAcknowledgement`` record in the payload slab,
/// so that buffering a stream message allocates nothing beyond cnats's own message.
struct ConsumerDelivery: Sendable {
    /// The message, with `replyTo` always `nil`: the reply subject is `reply`.
    var message: NATSMessage
    /// The reply subject and the acknowledgement state, if the message had a reply subject.
    var reply: MessageAcknowledgement?

    /// The reply subject as a string (built on each call).
    var replyTo: String? { reply?.subject }

    /// Whether the reply subject is a JetStream ack subject: the message came from the stream.
    var isStreamMessage: Bool { reply?.isJetStreamAck ?? false }

    /// The message and the reply record, moved out.
    consuming func intoParts() -> (NATSMessage, MessageAcknowledgement?) {
        (message, reply)
    }

    /// The size this delivery counts for in buffer limits.
    var bufferedSize: Int { message.bufferedSize }
}

extension SubscriptionHandle where Element == ConsumerDelivery {
    /// Stops and hands the stream messages received but never handed to the consumer back to the
    /// server at once (`-NAK`), including those still on their way: the subscription drains
    /// instead of unsubscribing, so what the server sent before it saw the unsubscribe still
    /// arrives, finds the buffer finished, and is handed back by the subscription's box. A failed
    /// publish leaves a message to its ack wait.
    ///
    /// The server counts every delivery it made, and redelivers what is handed back in the order
    /// the `-NAK`s arrive. So the unsubscribe goes out first (the server then routes the
    /// redeliveries to the other members, or counts no delivery while there are none, instead of
    /// sending them back here), and the messages go back oldest first: the iterators' taken
    /// batches, then the buffer. Handed back newest first, the same oldest events would end up
    /// behind the newer ones at every member that stops early, and reach their max deliveries
    /// without ever being handed to an application.
    func stopReturningUndelivered(on connection: NATSConnection, takers: TakenDeliveriesRegistry) {
        // Finished first: from here on every arriving message is handed back by the box.
        let pending = buffer.discardReturningPending()
        native.drain(timeoutMilliseconds: 5_000)
        for added in coreSubscriptions.withLock({ $0 }) { added.unsubscribe() }
        takers.handBackAll()
        for delivery in pending { connection.native.handBack(delivery.reply, redeliveredAfter: takers.redeliveredAfter) }
    }
}

/// The messages a consumer's iterator took from its subscription's buffer and has not returned
/// yet, reversed (each is moved out with `popLast`). A class, so that the stream messages still
/// here go back to the server at once (`-NAK`) instead of waiting out their ack wait, when the
/// iterator goes away (a `break`, a cancelled or finished loop) or when the consumer is stopped
/// with ``NATSPullConsumer/stopReturningUndelivered()`` while the iterator lives on: an iterator
/// takes a whole batch at a time, up to the consumer's pull batch.
///
/// The batch belongs to the task inside the iterator's `next()` (no lock on the hot path);
/// `phase` says whether one is, so that a stop from another task hands the batch back only while
/// none is, and otherwise leaves it to that task as it leaves `next()`.
final class TakenDeliveries: @unchecked Sendable {
    @exclusivity(unchecked) var batch: [ConsumerDelivery]
    private let connection: NATSConnection
    private static let idle: UInt8 = 0
    private static let iterating: UInt8 = 1
    private static let handedBack: UInt8 = 2
    private let phase = Atomic<UInt8>(TakenDeliveries.idle)
    private let handBackRequested = Atomic<Bool>(false)

    /// See ``NativeConnection/handBack(_:redeliveredAfter:)``.
    private let redeliveredAfter: Duration?

    init(connection: NATSConnection, batch: [ConsumerDelivery] = [], redeliveredAfter: Duration? = nil) {
        self.connection = connection
        self.batch = batch
        self.redeliveredAfter = redeliveredAfter
    }

    /// Called as `next()` starts; false once the batch was handed back (the iteration is over).
    func enter() -> Bool {
        phase.compareExchange(expected: Self.idle, desired: Self.iterating, ordering: .acquiring).exchanged
    }

    /// Called as `next()` returns; hands the batch back if a stop asked for it meanwhile.
    func leave() {
        phase.store(Self.idle, ordering: .releasing)
        if handBackRequested.load(ordering: .acquiring) { handBackIfIdle() }
    }

    /// From any task: hands the batch back now if no task is inside `next()`, or as it leaves.
    func requestHandBack() {
        handBackRequested.store(true, ordering: .releasing)
        handBackIfIdle()
    }

    private func handBackIfIdle() {
        guard phase.compareExchange(expected: Self.idle, desired: Self.handedBack, ordering: .acquiringAndReleasing).exchanged
        else { return }
        handBackOldestFirst()
        batch = []
    }

    /// The batch is reversed: going back in the order the messages came keeps them ahead of newer
    /// ones in the server's redelivery queue.
    private func handBackOldestFirst() {
        for delivery in batch.reversed() { connection.native.handBack(delivery.reply, redeliveredAfter: redeliveredAfter) }
    }

    deinit {
        handBackOldestFirst()
    }
}

/// The live iterators' taken batches of one consumer, for a stop to hand back.
final class TakenDeliveriesRegistry: Sendable {
    private struct WeakReference {
        weak var taken: TakenDeliveries?
    }

    private let live = Mutex<[WeakReference]>([])
    /// The consumer's ack wait: what a stop hands back that the server had delivered before goes
    /// back after this delay (see ``NativeConnection/handBack(_:redeliveredAfter:)``).
    let redeliveredAfter: Duration?

    init(redeliveredAfter: Duration? = nil) {
        self.redeliveredAfter = redeliveredAfter
    }

    func register(_ taken: TakenDeliveries) {
        live.withLock { live in
            live.removeAll { $0.taken == nil }
            live.append(WeakReference(taken: taken))
        }
    }

    func handBackAll() {
        for reference in live.withLock({ $0 }) { reference.taken?.requestHandBack() }
    }
}

/// Ends a push consumer's subscription when the iterator that owns it goes away (a loop that
/// breaks, a task that is cancelled), handing back at once what it received and did not hand out,
/// so that another member of the group gets it instead of waiting for its ack wait.
final class ConsumerIterationToken: Sendable {
    private let stop: @Sendable () -> Void

    init(_ stop: @escaping @Sendable () -> Void) {
        self.stop = stop
    }

    deinit {
        stop()
    }
}

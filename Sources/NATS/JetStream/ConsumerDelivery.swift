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
    func stopReturningUndelivered(on connection: NATSConnection) {
        // Finished first: from here on every arriving message is handed back by the box.
        for delivery in buffer.discardReturningPending() {
            guard let reply = delivery.reply, reply.isJetStreamAck else { continue }
            try? connection.publishToServerSubject(reply, body: "-NAK")
        }
        native.drain(timeoutMilliseconds: 5_000)
        for added in coreSubscriptions.withLock({ $0 }) { added.unsubscribe() }
    }
}

/// The messages a consumer's iterator took from its subscription's buffer and has not returned
/// yet, reversed (each is moved out with `popLast`). A class, so that when the iterator goes
/// away (a `break`, a cancelled or finished loop) the stream messages still here are handed back
/// to the server at once (`-NAK`) instead of waiting out their ack wait: an iterator takes a whole
/// batch at a time, up to the consumer's pull batch.
///
/// Used by one task at a time, as the iterator that owns it, so the runtime exclusivity check is
/// left out of the hot path.
final class TakenDeliveries: @unchecked Sendable {
    @exclusivity(unchecked) var batch: [ConsumerDelivery]
    private let connection: NATSConnection

    init(connection: NATSConnection, batch: [ConsumerDelivery] = []) {
        self.connection = connection
        self.batch = batch
    }

    deinit {
        for delivery in batch {
            guard let reply = delivery.reply, reply.isJetStreamAck, !reply.isDone else { continue }
            try? connection.publishToServerSubject(reply, body: "-NAK")
        }
    }
}

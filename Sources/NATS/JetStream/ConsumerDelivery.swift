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
    /// Unsubscribes and hands the stream messages received but never handed to the consumer back
    /// to the server at once (`-NAK`). A failed publish leaves a message to its ack wait.
    func stopReturningUndelivered(on connection: NATSConnection) {
        for delivery in stopReturningPending() {
            guard let reply = delivery.reply, reply.isJetStreamAck else { continue }
            try? connection.publishToServerSubject(reply, body: "-NAK")
        }
    }
}

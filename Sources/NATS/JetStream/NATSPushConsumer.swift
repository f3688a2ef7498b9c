/// A push consumer subscription: the server sends messages to a deliver subject.
///
/// Subscribers sharing the consumer's deliver group split its messages. Flow-control requests
/// are answered when the application reaches them in the stream (so the server never runs
/// further ahead than the application consumes), heartbeats are absorbed, and the flow is
/// bounded by the consumer's `maxAckPending` and the subscription's limits.
public final class NATSPushConsumer: AsyncSequence, Sendable {
    public typealias Element = NATSJetStreamMessage
    public typealias Failure = NATSError

    /// The stream.
    public let stream: String
    /// The consumer's name.
    public let name: String
    /// The deliver subject.
    public let deliverSubject: String
    let connection: NATSConnection
    let handle: SubscriptionHandle<ConsumerDelivery>
    /// The live iterators' taken batches, for ``stopReturningUndelivered()``.
    let takers: TakenDeliveriesRegistry

    init(
        stream: String, name: String, deliverSubject: String, connection: NATSConnection,
        handle: SubscriptionHandle<ConsumerDelivery>, ackWait: Duration? = nil
    ) {
        takers = TakenDeliveriesRegistry(redeliveredAfter: ackWait)
        self.stream = stream
        self.name = name
        self.deliverSubject = deliverSubject
        self.connection = connection
        self.handle = handle
    }

    /// Unsubscribes; the iteration ends.
    public func stop() {
        handle.stop()
    }

    /// Stops like ``stop()``, and hands the messages that were received but never iterated back to
    /// the server at once (`-NAK`), so that another member gets them now instead of after their
    /// ack wait.
    public func stopReturningUndelivered() {
        handle.stopReturningUndelivered(on: connection, takers: takers)
    }

    /// Creates the iterator.
    public func makeAsyncIterator() -> Iterator {
        let taken = TakenDeliveries(connection: connection, redeliveredAfter: takers.redeliveredAfter)
        takers.register(taken)
        return Iterator(consumer: self, token: ConsumerIterationToken { [self] in stopReturningUndelivered() }, taken: taken)
    }

    /// Iterates over messages. Messages it took from the subscription and did not return are
    /// handed back to the server (`-NAK`) when the iterator goes away.
    public struct Iterator: AsyncIteratorProtocol {
        let consumer: NATSPushConsumer
        let token: ConsumerIterationToken
        let taken: TakenDeliveries

        /// The next message; `nil` when stopped, cancelled, or the connection closed.
        public mutating func next() async throws(NATSError) -> NATSJetStreamMessage? {
            guard taken.enter() else { return nil }
            defer { taken.leave() }
            while true {
                while let delivery = taken.batch.popLast() {
                    if let status = JetStreamStatus(delivery) {
                        status.answerFlowControl(on: consumer.connection)
                        switch status {
                        case .conflict(let description, _) where description.lowercased().contains("consumer deleted"):
                            throw NATSError(
                                .jetStream, "consumer '\(consumer.name)' on stream '\(consumer.stream)' was deleted",
                                jetStreamErrorCode: NATSJetStreamErrorCode.consumerNotFound)
                        default:
                            break
                        }
                        continue
                    }
                    return NATSJetStreamMessage(delivery, connection: consumer.connection)
                }
                guard try await consumer.handle.buffer.takeBatch(into: &taken.batch) == .took else {
                    consumer.handle.stop()
                    return nil
                }
                taken.batch.reverseInPlace()
            }
        }
    }
}

extension NATSPushConsumer {
    /// Adds a core NATS subscription whose messages come through this consumer's sequence, as
    /// ``NATSPullConsumer/addCoreSubscription(to:queueGroup:)`` describes.
    public func addCoreSubscription(to subject: String, queueGroup: String? = nil) async throws(NATSError) {
        try await connection.addCoreSubscription(to: handle, subject: subject, queueGroup: queueGroup)
    }
}

extension NATSJetStream {
    /// Subscribes to a push consumer, creating or updating it first.
    ///
    /// When `configuration.deliverSubject` is `nil`, an existing consumer's deliver subject is
    /// used, or a new inbox for a new consumer. Subscribers of a consumer with a
    /// ``NATSConsumerConfiguration/deliverGroup`` join that group and share the messages.
    public func pushConsumer(
        stream: String,
        configuration: NATSConsumerConfiguration,
        limits: NATSConnectionConfiguration.SubscriptionLimits? = nil
    ) async throws(NATSError) -> NATSPushConsumer {
        let (info, deliverSubject) = try await ensurePushConsumer(stream: stream, configuration: configuration)
        let handle = try await connection.subscribeConsumer(
            to: deliverSubject, queueGroup: info.configuration.deliverGroup, limits: limits,
            redeliveredAfter: info.configuration.ackWait)
        return NATSPushConsumer(
            stream: stream, name: info.name, deliverSubject: deliverSubject, connection: connection, handle: handle,
            ackWait: info.configuration.ackWait)
    }

    /// Subscribes to a push consumer (creating or updating it first, as
    /// ``pushConsumer(stream:configuration:limits:)`` does) with a handler that cnats's delivery
    /// thread calls for every message, in order, with no buffer or task in between: the lowest
    /// latency from the server to your code, as a C callback has.
    ///
    /// Flow-control requests are answered and heartbeats absorbed before the handler would see
    /// them. The handler **must not block and must return quickly** (see
    /// ``NATSConnection/subscribe(to:queueGroup:limits:handler:)``); acknowledging from it with
    /// ``NATSJetStreamMessage/ack()`` is fine. Keep the returned subscription for as long as
    /// messages should arrive; if the consumer is deleted on the server, messages simply stop.
    ///
    /// ```swift
    /// let subscription = try await jetStream.pushConsumer(stream: "ORDERS", configuration: consumer) { message in
    ///     record(message.payload)
    ///     try? message.ack()
    /// }
    /// ```
    public func pushConsumer(
        stream: String,
        configuration: NATSConsumerConfiguration,
        limits: NATSConnectionConfiguration.SubscriptionLimits? = nil,
        handler: @escaping @Sendable (NATSJetStreamMessage) -> Void
    ) async throws(NATSError) -> NATSHandlerSubscription {
        let (info, deliverSubject) = try await ensurePushConsumer(stream: stream, configuration: configuration)
        let connection = self.connection
        return try await connection.subscribeConsumer(
            to: deliverSubject, queueGroup: info.configuration.deliverGroup, limits: limits
        ) { delivery in
            if let status = JetStreamStatus(delivery) {
                status.answerFlowControl(on: connection)
                return
            }
            handler(NATSJetStreamMessage(delivery, connection: connection))
        }
    }

    /// Creates or updates a push consumer; returns its info and deliver subject.
    private func ensurePushConsumer(
        stream: String,
        configuration: NATSConsumerConfiguration
    ) async throws(NATSError) -> (NATSConsumerInfo, String) {
        var configuration = configuration
        if configuration.deliverSubject == nil {
            if let durable = configuration.durableName,
                let existing = try? await consumerInfo(stream: stream, name: durable),
                let subject = existing.configuration.deliverSubject
            {
                configuration.deliverSubject = subject
            } else {
                configuration.deliverSubject = connection.newInbox()
            }
        }
        let info = try await ensureConsumer(stream: stream, configuration)
        return (info, info.configuration.deliverSubject ?? configuration.deliverSubject!)
    }
}

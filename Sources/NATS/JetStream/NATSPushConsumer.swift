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
    let monitor: ConsumerHealthMonitor

    init(
        stream: String, name: String, deliverSubject: String, connection: NATSConnection,
        handle: SubscriptionHandle<ConsumerDelivery>, ackWait: Duration? = nil, idleHeartbeat: Duration? = nil
    ) {
        monitor = ConsumerHealthMonitor(stream: stream, consumer: name, heartbeat: idleHeartbeat, logger: connection.core.logger)
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
        monitor.stopped()
    }

    /// The consumer's health now. A push consumer cannot re-issue anything: without heartbeats
    /// (the consumer's `idleHeartbeat`) its silence cannot be told from an idle stream, and it is
    /// never reported stalled.
    public var health: NATSConsumerHealth {
        monitor.snapshot(
            connection: connection, buffered: bufferedCount, requested: 0,
            waiting: handle.buffer.hasWaitingConsumer, finished: handle.buffer.isFinished)
    }

    /// A task executor that lets the delivery thread which receives this consumer's messages run
    /// the task iterating it, instead of waking a concurrency-pool thread for every hand-over.
    ///
    /// ```swift
    /// let worker = Task(executorPreference: consumer.deliveryExecutor) {
    ///     for try await message in consumer { try handle(message); try message.ack() }
    /// }
    /// ```
    ///
    /// What it saves and costs, and the rules for the loop's body (quick, non-blocking, no
    /// per-message awaits on other work), are those of ``NATSSubscription/deliveryExecutor``.
    public var deliveryExecutor: any TaskExecutor { deliveryThreadExecutor }

    /// ``deliveryExecutor`` as its own type, for `consume` (which watches the jobs it passes on).
    package var deliveryThreadExecutor: DeliveryThreadExecutor { handle.buffer.consumerExecutor }

    /// Messages received and not yet taken by an iterator (takes the buffer's lock: not per message).
    package var bufferedCount: Int { handle.buffer.bufferedCount }

    /// The consumer's recovery events from now on (see ``NATSConsumerRecoveryEvents``).
    public var recoveryEvents: NATSConsumerRecoveryEvents { monitor.events() }

    /// Calls `observer` with each recovery event, on the iterating task; it must return quickly.
    package func observeRecoveries(_ observer: @escaping @Sendable (NATSConsumerRecoveryEvent) -> Void) {
        monitor.observe(observer)
    }

    /// Stops like ``stop()``, and hands the messages that were received but never iterated back to
    /// the server at once (`-NAK`), so that another member gets them now instead of after their
    /// ack wait.
    public func stopReturningUndelivered() {
        handle.stopReturningUndelivered(on: connection, takers: takers)
        monitor.stopped()
    }

    /// Creates the iterator.
    public func makeAsyncIterator() -> Iterator {
        let taken = TakenDeliveries(connection: connection, redeliveredAfter: takers.redeliveredAfter)
        takers.register(taken)
        return Iterator(
            consumer: self, token: ConsumerIterationToken { [self] in stopReturningUndelivered() }, taken: taken,
            generation: connection.reconnectGeneration)
    }

    /// Iterates over messages. Messages it took from the subscription and did not return are
    /// handed back to the server (`-NAK`) when the iterator goes away.
    public struct Iterator: AsyncIteratorProtocol {
        let consumer: NATSPushConsumer
        let token: ConsumerIterationToken
        let taken: TakenDeliveries
        /// The connection's reconnect count as last seen (a change means cnats resubscribed).
        var generation: Int
        var redeliveries = RedeliveryProbe()
        /// Whether the current silence was reported (one event per outage).
        var silenceReported = false

        /// The next message; `nil` when stopped, cancelled, or the connection closed.
        /// Runs on the caller's executor (`nonisolated(nonsending)`): an actor iterating stays on it.
        nonisolated(nonsending) public mutating func next() async throws(NATSError) -> NATSJetStreamMessage? {
            guard taken.enter() else { return nil }
            defer { taken.leave() }
            while true {
                while let delivery = taken.batch.popLast() {
                    if let status = JetStreamStatus(delivery) {
                        status.answerFlowControl(on: consumer.connection)
                        consumer.monitor.heartbeatArrived()
                        switch status {
                        case .conflict(let description, _) where description.lowercased().contains("consumer deleted"):
                            let error = NATSError(
                                .jetStream, "consumer '\(consumer.name)' on stream '\(consumer.stream)' was deleted",
                                jetStreamErrorCode: NATSJetStreamErrorCode.consumerNotFound)
                            consumer.monitor.failed(error)
                            throw error
                        default:
                            break
                        }
                        continue
                    }
                    redeliveries.check(delivery, monitor: consumer.monitor)
                    if consumer.monitor.tracesMessages { consumer.monitor.trace(delivery) }
                    return NATSJetStreamMessage(delivery, connection: consumer.connection)
                }
                let result: BoundedBatchBuffer<ConsumerDelivery>.TakeResult
                if let heartbeat = consumer.monitor.heartbeat {
                    // Wakes up when idle to notice missed heartbeats and reconnects.
                    result = try await consumer.handle.buffer.takeBatch(into: &taken.batch, timeout: heartbeat)
                } else {
                    result = try await consumer.handle.buffer.takeBatch(into: &taken.batch)
                }
                switch result {
                case .took:
                    silenceReported = false
                    consumer.monitor.batchTaken(taken.batch)
                case .wokenUp:
                    break
                case .finished, .cancelled:
                    consumer.handle.stop()
                    consumer.monitor.stopped()
                    return nil
                }
                noticeRecoveries()
                taken.batch.reverseInPlace()
            }
        }
    }
}

extension NATSPushConsumer.Iterator {
    /// Reports a reconnect (cnats subscribed again) and silence beyond two heartbeats.
    mutating func noticeRecoveries() {
        let current = consumer.connection.reconnectGeneration
        if current != generation {
            generation = current
            consumer.monitor.recovering(.resubscribed, "the connection reconnected; the deliver subject was subscribed again")
        }
        guard taken.batch.isEmpty, !silenceReported, let heartbeat = consumer.monitor.heartbeat else { return }
        let health = consumer.monitor.snapshot(
            connection: consumer.connection, buffered: 0, requested: 0, waiting: true, finished: false)
        let quiet = [health.lastMessageAge, health.lastHeartbeatAge].compactMap { $0 }.min()
        if let quiet, quiet > heartbeat * 2 {
            silenceReported = true
            consumer.monitor.recovering(.heartbeatMissed, "no message or heartbeat for over \(heartbeat * 2)")
            consumer.monitor.stillSilent()
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
            ackWait: info.configuration.ackWait, idleHeartbeat: info.configuration.idleHeartbeat)
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

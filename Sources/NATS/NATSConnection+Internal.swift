import Synchronization

extension NATSConnection {
    /// A new unique inbox subject (`_INBOX.` followed by 22 random base-62 characters).
    public func newInbox() -> String {
        NATSConnection.makeInbox()
    }

    static func makeInbox() -> String {
        "_INBOX." + NATSConnection.uniqueToken()
    }

    /// A unique base-62 token of 22 characters, for inboxes and generated ids (see
    /// ``UniqueTokenGenerator``).
    static func uniqueToken() -> String {
        UniqueTokenGenerator.shared.withLock { $0.next() }
    }

    /// Subscribes with a handler that cnats's delivery thread calls for every message, in order,
    /// with nothing in between: no buffer, no task to wake. The quickest way to answer requests
    /// (a responder that replies from the handler answers as fast as a C callback would).
    ///
    /// ```swift
    /// let echo = try await connection.subscribe(to: "svc.echo") { request in
    ///     guard let replyTo = request.replyTo else { return }
    ///     try? connection.publish(subject: replyTo, payload: request.payload)
    /// }
    /// // ... keep `echo` for as long as it should answer; echo.unsubscribe() or release it to stop.
    /// ```
    ///
    /// The handler **must not block and must return quickly**: while it runs, this subscription
    /// receives nothing else, and cnats queues what arrives (up to `limits`, then it drops and
    /// reports a slow consumer). It must not wait for Swift tasks (no semaphores); start one
    /// instead if the work is long. Publishing, including replies, is fine. Use the
    /// `AsyncSequence` form, ``subscribe(to:queueGroup:limits:)``, for anything else.
    ///
    /// The subscription lasts until ``NATSHandlerSubscription/unsubscribe()``, until the returned
    /// object is released, or until the connection closes. Returns once the server has the
    /// interest.
    public func subscribe(
        to subject: String,
        queueGroup: String? = nil,
        limits: NATSConnectionConfiguration.SubscriptionLimits? = nil,
        handler: @escaping @Sendable (NATSMessage) -> Void
    ) async throws(NATSError) -> NATSHandlerSubscription {
        try await subscribeWithHandler(to: subject, queueGroup: queueGroup, limits: limits, handler: handler)
    }

    /// ``subscribe(to:queueGroup:limits:handler:)`` with a callback after the last message (used
    /// by the client's own reply subscriptions).
    package func subscribeWithHandler(
        to subject: String,
        queueGroup: String? = nil,
        limits: NATSConnectionConfiguration.SubscriptionLimits? = nil,
        onComplete: @escaping @Sendable () -> Void = {},
        handler: @escaping @Sendable (NATSMessage) -> Void
    ) async throws(NATSError) -> NATSHandlerSubscription {
        try await subscribe(
            to: subject, queueGroup: queueGroup, limits: limits,
            box: CallbackSubscriptionBox(handler: handler, onComplete: onComplete))
    }

    /// Subscribes a JetStream consumer's deliver subject with a handler on cnats's delivery thread
    /// (see ``NATSJetStream/pushConsumer(stream:configuration:limits:handler:)``).
    func subscribeConsumer(
        to subject: String,
        queueGroup: String?,
        limits: NATSConnectionConfiguration.SubscriptionLimits?,
        handler: @escaping @Sendable (ConsumerDelivery) -> Void
    ) async throws(NATSError) -> NATSHandlerSubscription {
        try await subscribe(to: subject, queueGroup: queueGroup, limits: limits, box: ConsumerCallbackBox(handler: handler))
    }

    /// Subscribes with a box that hands messages to a handler, and returns once the server has
    /// the interest.
    private func subscribe(
        to subject: String,
        queueGroup: String?,
        limits: NATSConnectionConfiguration.SubscriptionLimits?,
        box: NativeSubscriptionBox
    ) async throws(NATSError) -> NATSHandlerSubscription {
        let limits = try checkSubscription(subject: subject, queueGroup: queueGroup, limits: limits)
        let subscription = try await subscribeConfirmed(subject: subject, queueGroup: queueGroup, limits: limits, box: box)
        return NATSHandlerSubscription(subject: subject, queueGroup: queueGroup, native: subscription)
    }

    /// Increments on every reconnect; consumers compare it to know that pull requests the server
    /// held were lost with the old connection.
    var reconnectGeneration: Int { core.reconnects.load(ordering: .acquiring) }
}

/// A subscription whose messages go to a handler on cnats's delivery thread (see
/// ``NATSConnection/subscribe(to:queueGroup:limits:handler:)``). Unsubscribes when released.
public final class NATSHandlerSubscription: Sendable {
    /// The subject this subscription listens on.
    public let subject: String
    /// The queue group, if any.
    public let queueGroup: String?
    let native: NativeSubscription

    init(subject: String, queueGroup: String?, native: NativeSubscription) {
        self.subject = subject
        self.queueGroup = queueGroup
        self.native = native
    }

    /// Messages cnats dropped because the handler fell behind the subscription's limits.
    public var droppedCount: Int64 { native.droppedCount }

    /// Messages handed to the handler so far.
    public var deliveredCount: Int64 { native.deliveredCount }

    /// Removes the interest; once a handler call in progress returns, no other follows.
    public func unsubscribe() {
        native.unsubscribe()
    }

    /// Stops receiving new messages and lets the handler finish the ones already received.
    public func drain(timeout: Duration = .seconds(30)) {
        native.drain(timeoutMilliseconds: Swift.max(1, timeout.millisecondsClamped))
    }

    deinit {
        native.unsubscribe()
    }
}

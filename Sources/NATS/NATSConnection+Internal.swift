import Synchronization

extension NATSConnection {
    /// A new unique inbox subject (`_INBOX.` followed by 22 random base-62 characters).
    public func newInbox() -> String {
        NATSConnection.makeInbox()
    }

    static func makeInbox() -> String {
        "_INBOX." + NATSConnection.randomToken(length: 22)
    }

    /// Random base-62 characters, for inboxes and generated ids.
    static func randomToken(length: Int) -> String {
        let alphabet = Array("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz".utf8)
        var generator = SystemRandomNumberGenerator()
        var bytes = [UInt8]()
        bytes.reserveCapacity(length)
        var bits = generator.next()
        var remaining = 10  // 10 × 6 bits from one UInt64
        for _ in 0..<length {
            if remaining == 0 {
                bits = generator.next()
                remaining = 10
            }
            bytes.append(alphabet[Int(bits % 62)])
            bits /= 64
            remaining -= 1
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Subscribes with a handler called on the cnats delivery thread for every message. The
    /// handler must be quick and must not block. Used for the client's own reply subscriptions.
    package func subscribeWithHandler(
        to subject: String,
        onComplete: @escaping @Sendable () -> Void = {},
        handler: @escaping @Sendable (NATSMessage) -> Void
    ) async throws(NATSError) -> NATSHandlerSubscription {
        try NATSValidation.validateSubject(subject, for: .subscribe)
        let native = try connected()
        let subscription = try native.subscribe(
            subject: subject, queueGroup: nil, limits: configuration.subscriptionLimits,
            box: CallbackSubscriptionBox(handler: handler, onComplete: onComplete))
        let timeout = configuration.connectTimeout.millisecondsClamped
        try? await blocking.run { () throws(NATSError) in try native.flush(timeoutMilliseconds: timeout) }
        return NATSHandlerSubscription(native: subscription)
    }

    /// Increments on every reconnect; consumers compare it to know that pull requests the server
    /// held were lost with the old connection.
    var reconnectGeneration: Int { core.reconnects.load(ordering: .acquiring) }
}

/// A subscription whose messages go to a handler on the delivery thread; unsubscribes when
/// released.
package final class NATSHandlerSubscription: Sendable {
    let native: NativeSubscription

    init(native: NativeSubscription) {
        self.native = native
    }

    /// Removes the interest; no handler call follows the completion.
    package func unsubscribe() {
        native.unsubscribe()
    }

    deinit {
        native.unsubscribe()
    }
}

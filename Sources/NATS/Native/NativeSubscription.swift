import CNATS

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Owns a `natsSubscription`, and the ones that replaced it when the connection was recovered
/// after the server closed it (see ``NativeConnectionLink``).
final class NativeSubscription: @unchecked Sendable {
    // @unchecked: cnats subscriptions are thread-safe; the record's pointer changes only under
    // the link's lock.
    let record: NativeSubscriptionRecord
    /// Kept so the connection outlives its subscriptions.
    let connection: NativeConnection

    init(record: NativeSubscriptionRecord, connection: NativeConnection) {
        self.record = record
        self.connection = connection
    }

    deinit {
        // Not carried over any more; a box waiting for a recovery is finished here.
        let (_, finish) = connection.link.unsubscribe(record, forget: true)
        finish?.completed()
        // Frees the subscription objects; destroying also removes the interest on the server
        // (if the connection is still open). Replaced ones ended already.
        let pointers = connection.link.withPointer(of: record) { current in
            (current.map { [$0] } ?? []) + record.retiredPointers
        }
        for pointer in pointers { natsSubscription_Destroy(pointer) }
    }

    /// Removes interest on the server and stops delivery (non-blocking). Safe to call repeatedly.
    func unsubscribe() {
        let (pointer, finish) = connection.link.unsubscribe(record, forget: false)
        if let pointer, natsSubscription_IsValid(pointer) { _ = natsSubscription_Unsubscribe(pointer) }
        finish?.completed()
    }

    /// Stops new messages and lets the ones already received be delivered (non-blocking).
    func drain(timeoutMilliseconds: Int64) {
        let (pointer, finish) = connection.link.unsubscribe(record, forget: false)
        if let pointer, natsSubscription_IsValid(pointer) { _ = natsSubscription_DrainTimeout(pointer, timeoutMilliseconds) }
        finish?.completed()
    }

    /// Messages cnats dropped for this subscription because its pending limits were reached.
    var droppedCount: Int64 {
        connection.link.withPointer(of: record) { pointer in
            var dropped: Int64 = 0
            if let pointer { _ = natsSubscription_GetDropped(pointer, &dropped) }
            return dropped
        }
    }

    /// Messages delivered to the callback so far (by the current cnats subscription).
    var deliveredCount: Int64 {
        connection.link.withPointer(of: record) { pointer in
            var delivered: Int64 = 0
            if let pointer { _ = natsSubscription_GetDelivered(pointer, &delivered) }
            return delivered
        }
    }
}

/// The receiving side of an asynchronous subscription. Subclasses decide what a message becomes.
///
/// cnats calls ``deliver(_:)`` from the subscription's own delivery thread, one message at a time,
/// and ``completed()`` once after the last message, so subclasses may keep unsynchronised state
/// that only those two touch.
class NativeSubscriptionBox: @unchecked Sendable {
    /// Receives a message and takes ownership of it (must destroy it or hand it on).
    /// `subscription` is the cnats subscription delivering it.
    func deliver(_ message: OpaquePointer, subscription: OpaquePointer?) {
        // Owned by the callee: nothing to hand it to here.
        NativeMessage.destroy(message)
    }

    /// The subscription is finished: no message follows.
    func completed() {}

    /// The server closed the connection with an `-ERR` (`reason`); what is in flight now is
    /// lost. Request multiplexers note their open requests.
    func connectionLost(reason: String) {}

    /// The client reconnected after ``connectionLost(reason:)`` (or gave up). Request
    /// multiplexers fail the requests that were open then, with the server's reason.
    func connectionRecovered() {}

    /// The connection dropped (cnats's disconnected callback): replies to what was sent on it
    /// will not come. Request multiplexers fail their open requests at once.
    func connectionDropped() {}

    /// The server refused a publish to `subject` (a permissions violation). Request
    /// multiplexers fail their open requests on that subject at once: no reply will come.
    func publishDenied(subject: String, reason: String) {}

    /// How the connection's link carries this subscription over; set once, before subscribing.
    var record: NativeSubscriptionRecord?
}

/// Copies core NATS messages into a bounded buffer that a ``NATSSubscription`` iterates.
final class CoreSubscriptionBox: NativeSubscriptionBox, @unchecked Sendable {
    let buffer: BoundedBatchBuffer<NATSMessage>
    // Touched only from the delivery thread (see NativeSubscriptionBox), so the runtime
    // exclusivity check (and the copy of each message it forced) is left out.
    @exclusivity(unchecked) private var payloads = PayloadSlabWriter()
    @exclusivity(unchecked) private var subjects = SubjectCache()

    init(buffer: BoundedBatchBuffer<NATSMessage>) {
        self.buffer = buffer
    }

    override func deliver(_ message: OpaquePointer, subscription: OpaquePointer?) {
        let copy = NativeMessage.copy(message, payloads: &payloads, subjects: &subjects)
        let size = copy.bufferedSize
        // Everything was copied out; the message is ours to destroy.
        NativeMessage.destroy(message)
        buffer.append(copy, size: size) { Self.hasPending(subscription) }
    }

    override func completed() {
        buffer.finish()
    }
}

extension NativeSubscriptionBox {
    /// Whether cnats holds more messages for the subscription after the one being delivered: its
    /// delivery thread (the calling thread) then comes back for each of them, or the subscription
    /// closed and `completed()` finishes the buffer. The `moreComing` answer of a buffering box.
    static func hasPending(_ subscription: OpaquePointer?) -> Bool {
        guard let subscription else { return false }
        var pending: Int32 = 0
        return natsSubscription_GetPending(subscription, &pending, nil) == NATS_OK && pending > 0
    }
}

/// Copies a JetStream consumer's messages into a bounded buffer that the consumer iterates, with
/// each reply subject kept in the payload slab (see ``NativeMessage/copyDelivery(_:payloads:subjects:)``).
final class ConsumerSubscriptionBox: NativeSubscriptionBox, @unchecked Sendable {
    let buffer: BoundedBatchBuffer<ConsumerDelivery>
    /// Where a stream message that arrives after the consumer stopped is handed back.
    private let connection: NativeConnection
    // Touched only from the delivery thread (see NativeSubscriptionBox), so the runtime
    // exclusivity check is left out.
    @exclusivity(unchecked) private var payloads = PayloadSlabWriter()
    @exclusivity(unchecked) private var subjects = SubjectCache()

    /// See ``NativeConnection/handBack(_:redeliveredAfter:)``.
    private let redeliveredAfter: Duration?

    init(buffer: BoundedBatchBuffer<ConsumerDelivery>, connection: NativeConnection, redeliveredAfter: Duration? = nil) {
        self.buffer = buffer
        self.connection = connection
        self.redeliveredAfter = redeliveredAfter
    }

    override func deliver(_ message: OpaquePointer, subscription: OpaquePointer?) {
        let copy = NativeMessage.copyDelivery(message, payloads: &payloads, subjects: &subjects)
        let size = copy.bufferedSize
        // Everything was copied out; the message is ours to destroy.
        NativeMessage.destroy(message)
        guard let refused = buffer.appendReturningRefused(copy, size: size, moreComing: { Self.hasPending(subscription) })
        else { return }
        // The consumer stopped (a draining subscription still delivers what the server sent
        // before it saw the unsubscribe): hand a stream message back at once rather than leave
        // it to its ack wait.
        connection.handBack(refused.reply, redeliveredAfter: redeliveredAfter)
    }

    override func completed() {
        buffer.finish()
    }
}

let nativeDeliver: natsMsgHandler = { _, subscription, message, closure in
    let box = Unmanaged<NativeSubscriptionBox>.fromOpaque(closure!).takeUnretainedValue()
    box.deliver(message!, subscription: subscription)
}

let nativeSubscriptionComplete: natsOnCompleteCB = { closure in
    // The last call cnats makes with this closure for this cnats subscription: release the box
    // retained at subscribe. The box itself is finished unless the link carries it over to a
    // recovered connection (which retains it again).
    let box = Unmanaged<NativeSubscriptionBox>.fromOpaque(closure!).takeRetainedValue()
    guard let record = box.record else {
        box.completed()
        return
    }
    switch record.link.subscriptionEnded(record) {
    case .finish: box.completed()
    case .keep: break
    case .resubscribe(let connection): record.link.resubscribe(record, on: connection)
    }
}

/// Hands each message to a closure on the delivery thread, with no buffer in between. For the
/// client's own internal subscriptions whose handlers are quick and never block (JetStream
/// publish acknowledgements).
final class CallbackSubscriptionBox: NativeSubscriptionBox, @unchecked Sendable {
    private let handler: @Sendable (NATSMessage) -> Void
    private let onComplete: @Sendable () -> Void
    // Touched only from the delivery thread (see NativeSubscriptionBox), so the runtime
    // exclusivity check (and the copy of each message it forced) is left out.
    @exclusivity(unchecked) private var payloads = PayloadSlabWriter()
    @exclusivity(unchecked) private var subjects = SubjectCache()

    init(handler: @escaping @Sendable (NATSMessage) -> Void, onComplete: @escaping @Sendable () -> Void) {
        self.handler = handler
        self.onComplete = onComplete
    }

    override func deliver(_ message: OpaquePointer, subscription: OpaquePointer?) {
        let copy = NativeMessage.copy(message, payloads: &payloads, subjects: &subjects)
        // Everything was copied out; the message is ours to destroy.
        NativeMessage.destroy(message)
        handler(copy)
    }

    override func completed() {
        onComplete()
    }
}

/// Hands a JetStream consumer's messages to a handler on cnats's delivery thread, each reply
/// subject kept in the payload slab as its acknowledgement record (see ``ConsumerDelivery``).
final class ConsumerCallbackBox: NativeSubscriptionBox, @unchecked Sendable {
    private let handler: @Sendable (ConsumerDelivery) -> Void
    // Touched only from the delivery thread (see NativeSubscriptionBox).
    @exclusivity(unchecked) private var payloads = PayloadSlabWriter()
    @exclusivity(unchecked) private var subjects = SubjectCache()

    init(handler: @escaping @Sendable (ConsumerDelivery) -> Void) {
        self.handler = handler
    }

    override func deliver(_ message: OpaquePointer, subscription: OpaquePointer?) {
        let copy = NativeMessage.copyDelivery(message, payloads: &payloads, subjects: &subjects)
        // Everything was copied out; the message is ours to destroy.
        NativeMessage.destroy(message)
        handler(copy)
    }
}

/// Receives the replies of a ``ResponseMux`` on its inbox wildcard subscription: reads the
/// request's token from the last subject token (without building a string) and hands the copied
/// reply, or "no responders", to the mux on the delivery thread.
final class NativeReplyBox: NativeSubscriptionBox, @unchecked Sendable {
    enum Outcome {
        case reply(NATSMessage)
        case noResponders
    }

    private let handler: @Sendable (UInt64, Outcome) -> Void
    private let onComplete: @Sendable () -> Void
    private let onConnectionLost: @Sendable (String) -> Void
    private let onConnectionRecovered: @Sendable () -> Void
    private let onConnectionDropped: @Sendable () -> Void
    private let onPublishDenied: @Sendable (String, String) -> Void
    // Touched only from the delivery thread (see NativeSubscriptionBox), so the runtime
    // exclusivity check (and the copy of each message it forced) is left out.
    @exclusivity(unchecked) private var payloads = PayloadSlabWriter()

    init(
        handler: @escaping @Sendable (UInt64, Outcome) -> Void,
        onComplete: @escaping @Sendable () -> Void,
        onConnectionLost: @escaping @Sendable (String) -> Void = { _ in },
        onConnectionRecovered: @escaping @Sendable () -> Void = {},
        onConnectionDropped: @escaping @Sendable () -> Void = {},
        onPublishDenied: @escaping @Sendable (String, String) -> Void = { _, _ in }
    ) {
        self.handler = handler
        self.onComplete = onComplete
        self.onConnectionLost = onConnectionLost
        self.onConnectionRecovered = onConnectionRecovered
        self.onConnectionDropped = onConnectionDropped
        self.onPublishDenied = onPublishDenied
    }

    override func connectionLost(reason: String) {
        onConnectionLost(reason)
    }

    override func connectionRecovered() {
        onConnectionRecovered()
    }

    override func connectionDropped() {
        onConnectionDropped()
    }

    override func publishDenied(subject: String, reason: String) {
        onPublishDenied(subject, reason)
    }

    override func deliver(_ message: OpaquePointer, subscription: OpaquePointer?) {
        guard let token = Self.token(of: natsMsg_GetSubject(message)) else {
            // Not one of ours (no numeric last token): the message is ours to destroy.
            NativeMessage.destroy(message)
            return
        }
        let reply = NativeMessage.copy(message, payloads: &payloads)
        let outcome: Outcome = NativeMessage.isNoResponders(reply) ? .noResponders : .reply(reply)
        // Everything was copied out; the message is ours to destroy.
        NativeMessage.destroy(message)
        handler(token, outcome)
    }

    override func completed() {
        onComplete()
    }

    /// The decimal number after the subject's last `.`, if that is all digits.
    static func token(of subject: UnsafePointer<CChar>?) -> UInt64? {
        guard let subject else { return nil }
        let length = strlen(subject)
        var start = length
        while start > 0 && subject[start - 1] != CChar(UInt8(ascii: ".")) { start -= 1 }
        guard start < length, length - start <= 19 else { return nil }
        var value: UInt64 = 0
        for index in start..<length {
            let digit = UInt8(bitPattern: subject[index]) &- UInt8(ascii: "0")
            guard digit < 10 else { return nil }
            value = value * 10 + UInt64(digit)
        }
        return value
    }
}

extension NativeConnection {
    /// Hands a stream message nobody settled back to the server at once (`-NAK`), for a consumer
    /// that stopped before handing it out, and answers a flow-control request it will not
    /// process (the server would otherwise hold the whole push consumer, the group's other
    /// members included, until an idle heartbeat reports the stall); anything else (a core
    /// message, a settled one) is left alone. Non-blocking; a failed publish leaves the message to
    /// its ack wait.
    ///
    /// With `redeliveredAfter`, a message the server had delivered before (delivery count above
    /// one) goes back with that delay (`-NAK {"delay": …}`, the consumer's ack wait) instead of at
    /// once. The server counts every delivery as an attempt; without the delay, members that start
    /// and stop again quickly while a backlog waits (a push member is sent up to the group's
    /// max-ack-pending at once) would use up an event's attempts before any handler saw it. With
    /// it, such churn costs an event at most one attempt per ack wait, as if it had not been
    /// handed back; a first delivery still goes back at once.
    func handBack(_ reply: MessageAcknowledgement?, redeliveredAfter delay: Duration? = nil) {
        guard let reply, !reply.isDone else { return }
        let body: String
        if reply.isJetStreamAck {
            if let delay, let count = reply.withSubjectBytes({ NATSJetStreamMessage.Metadata.parse($0, names: false)?.deliveryCount }),
                count > 1
            {
                body = "-NAK {\"delay\":\(max(1, delay.nanosecondsClamped))}"
            } else {
                body = "-NAK"
            }
        } else if reply.isFlowControl {
            body = ""
        } else {
            return
        }
        var text = body
        text.withUTF8 { bytes in
            reply.withSubjectCString { subject in
                _ = try? publish(subjectCString: subject, payload: UnsafeRawBufferPointer(bytes))
            }
        }
    }
}

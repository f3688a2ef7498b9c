import CNATSRaw
import EventBus
import NATS

// The unmeasured provisioning the JetStream workloads (W4-W8) and the memory benchmark share: the
// stream, its preloaded messages, the durable consumers, and the consume loop they measure.

extension RawJetStream {
    /// A context on a connection of its own to the benchmark's server.
    public convenience init(_ server: BenchmarkServer) throws(RawFailure) {
        try self.init(connection: RawConnection(url: server.url))
    }

    /// A context on a connection of its own to `server`, with the workloads' stream created (as the
    /// EventBus would create it) and `count` workload messages stored in it (see ``preloadWorkload(_:asEvents:)``).
    public static func workloadStream(
        on server: BenchmarkServer,
        preloaded count: Int = 0,
        asEvents: Bool = false
    ) throws(RawFailure) -> RawJetStream {
        let js = try RawJetStream(server)
        try js.addStream(name: Workload.streamName, subjects: Workload.streamSubjects)
        if count > 0 { try js.preloadWorkload(count, asEvents: asEvents) }
        return js
    }

    /// Stores `count` workload messages (the 128-byte payload on the workloads' subject), plain or
    /// (`asEvents`) with the headers the EventBus publishes, each with an id of its own.
    public func preloadWorkload(_ count: Int, asEvents: Bool = false) throws(RawFailure) {
        let headers: ((Int) -> [(String, String)])? = asEvents ? { benchmarkEventHeaders($0) } : nil
        try preload(subject: Workload.jetStreamSubject, count: count, payload: Workload.payload, headers: headers)
    }

    /// Creates the durable consumer `durable` on the workloads' stream (explicit acks, the workloads'
    /// MaxAckPending; see ``addConsumer(stream:durable:maxAckPending:deliverSubject:deliverNew:)``)
    /// and returns subscribe options bound to it. Delete it with
    /// `deleteConsumer(stream: Workload.streamName, durable:)`.
    public func addWorkloadConsumer(
        durable: String,
        deliverSubject: String? = nil,
        deliverNew: Bool = false,
        manualAck: Bool = false
    ) throws(RawFailure) -> RawConsumerBinding {
        let binding = try RawConsumerBinding(durable: durable, manualAck: manualAck)
        try addConsumer(
            stream: Workload.streamName, durable: durable, maxAckPending: Int64(Workload.maxAckPending),
            deliverSubject: deliverSubject, deliverNew: deliverNew)
        return binding
    }
}

/// Subscribe options (`jsSubOptions`) bound to a durable consumer of the workloads' stream, with the
/// C strings they point at. Keep it alive (`withExtendedLifetime`) as long as the subscription.
///
/// A struct with the options stored inline: a raw benchmark passes `&binding.options` to cnats with
/// no runtime exclusivity check, as it did with a local `jsSubOptions`.
public struct RawConsumerBinding {
    /// The options: `Stream` and `Consumer` set, `ManualAck` if asked.
    public var options = jsSubOptions()
    /// The consumer's name (js_PullSubscribe takes it as its durable name).
    public let consumerName: RawCString
    private let streamName = RawCString(Workload.streamName)

    init(durable: String, manualAck: Bool) throws(RawFailure) {
        consumerName = RawCString(durable)
        try rawCheck(jsSubOptions_Init(&options), "jsSubOptions_Init")
        options.Stream = UnsafePointer(streamName.pointer)
        options.Consumer = UnsafePointer(consumerName.pointer)
        options.ManualAck = manualAck
    }
}

/// Unsubscribes a raw subscription (for a JetStream one, this unbinds it; the consumer stays until
/// it is deleted) and frees it.
public func rawUnsubscribe(_ subscription: OpaquePointer?) {
    natsSubscription_Unsubscribe(subscription)
    // Unsubscribed above; this frees the subscription object.
    natsSubscription_Destroy(subscription)
}

extension NATSConsumerConfiguration {
    /// The durable consumer of the JetStream workloads, as the raw baselines create it: explicit
    /// acks, the workloads' MaxAckPending, and for a push consumer (`deliverSubject`) flow control
    /// and 5 s heartbeats; delivering all stored messages, or only new ones (`deliverNew`).
    public static func workload(durable: String, deliverSubject: String? = nil, deliverNew: Bool = false) -> Self {
        var configuration = NATSConsumerConfiguration(durableName: durable)
        configuration.maxAckPending = Workload.maxAckPending
        if let deliverSubject {
            configuration.deliverSubject = deliverSubject
            configuration.flowControl = true
            configuration.idleHeartbeat = .seconds(5)
        }
        if deliverNew { configuration.deliverPolicy = .new }
        return configuration
    }
}

/// The measured consume loop of the NATS module's consumers: receives from `consumer` and acks each
/// message until `count` arrived or the consumer ended; returns how many arrived.
///
/// Always inlined (and so specialised for the consumer's type): the loop runs in the benchmark's
/// own closure, with no call, generic dispatch or allocation per message added.
///
/// It calls the iterator's `next()`, not `for try await`: in generic code that goes through
/// `next(isolation:)`, whose witness the optimiser does not resolve, so every message would pay
/// a protocol dispatch thunk (seen in the disassembly). `next()` resolves to the consumer's own
/// `Iterator.next()`, the call an inline `for try await` over the concrete consumer makes.
@inlinable @inline(__always)
public func receiveAndAck<Consumer: AsyncSequence>(_ consumer: Consumer, count: Int) async throws -> Int
where Consumer.Element == NATSJetStreamMessage {
    var received = 0
    var messages = consumer.makeAsyncIterator()
    while let message = try await messages.next() {
        try message.ack()
        received += 1
        if received == count { break }
    }
    return received
}

/// The measured consume loop of the EventBus: receives deliveries and acks each until `count`
/// arrived or the subscription ended; returns how many arrived. Always inlined, as the NATS one.
@inlinable @inline(__always)
public func receiveAndAck(_ subscription: EventSubscription, count: Int) async throws -> Int {
    var received = 0
    for try await delivery in subscription {
        try await delivery.ack()
        received += 1
        if received == count { break }
    }
    return received
}

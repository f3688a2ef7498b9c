import CNATSRaw
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Owns a cnats JetStream context (`jsCtx`) for the raw baselines and the unmeasured parts of the
/// JetStream workloads (streams, consumers, preloading).
public final class RawJetStream: @unchecked Sendable {
    // @unchecked: cnats JetStream contexts are thread-safe; the pointer never changes.
    /// The cnats JetStream context.
    public let pointer: OpaquePointer
    /// The connection the context uses (kept alive by it).
    public let connection: RawConnection
    /// Asynchronous publishes that failed (cnats's error handler counts them here).
    public let failures = RawFailureCounter()

    /// A context whose asynchronous publishes keep at most `maxPending` in flight.
    public init(connection: RawConnection, maxPending: Int64 = Int64(Workload.w5InFlight)) throws(RawFailure) {
        self.connection = connection
        var options = jsOptions()
        try rawCheck(jsOptions_Init(&options), "jsOptions_Init")
        options.PublishAsync.MaxPending = maxPending
        options.PublishAsync.ErrHandler = rawPublishFailed
        // Unretained: the counter lives as long as this context, which outlives its publishes.
        options.PublishAsync.ErrHandlerClosure = Unmanaged.passUnretained(failures).toOpaque()
        var context: OpaquePointer?
        try rawCheck(natsConnection_JetStream(&context, connection.pointer, &options), "natsConnection_JetStream")
        pointer = context!
    }

    deinit {
        // The context is ours; the connection outlives it (we hold it).
        jsCtx_Destroy(pointer)
    }

    /// Creates a file stream (the EventBus's default storage) capturing `subjects`.
    public func addStream(name: String, subjects: [String]) throws(RawFailure) {
        var config = jsStreamConfig()
        try rawCheck(jsStreamConfig_Init(&config), "jsStreamConfig_Init")
        let names = RawCString(name)
        let subjectStrings = subjects.map { RawCString($0) }
        var subjectPointers: [UnsafePointer<CChar>?] = subjectStrings.map { UnsafePointer($0.pointer) }
        config.Name = UnsafePointer(names.pointer)
        config.Storage = js_FileStorage
        var errorCode = jsErrCode(0)
        var info: UnsafeMutablePointer<jsStreamInfo>?
        let status = subjectPointers.withUnsafeMutableBufferPointer { buffer -> natsStatus in
            config.Subjects = buffer.baseAddress
            config.SubjectsLen = Int32(buffer.count)
            return js_AddStream(&info, pointer, &config, nil, &errorCode)
        }
        withExtendedLifetime((names, subjectStrings)) {}
        // The info is ours to free.
        jsStreamInfo_Destroy(info)
        try rawCheck(status, "js_AddStream(\(name)) error code \(errorCode.rawValue)")
    }

    /// Creates a durable consumer with explicit acks that starts at the beginning of the stream
    /// (or with the next message stored, with `deliverNew`):
    /// a pull consumer, or a push consumer when `deliverSubject` is given (with flow control and
    /// heartbeats, as the NATS module's push consumers use them).
    public func addConsumer(
        stream: String,
        durable: String,
        maxAckPending: Int64,
        deliverSubject: String? = nil,
        deliverNew: Bool = false
    ) throws(RawFailure) {
        var config = jsConsumerConfig()
        try rawCheck(jsConsumerConfig_Init(&config), "jsConsumerConfig_Init")
        let durableString = RawCString(durable)
        let deliverString = deliverSubject.map { RawCString($0) }
        config.Durable = UnsafePointer(durableString.pointer)
        config.AckPolicy = js_AckExplicit
        config.DeliverPolicy = deliverNew ? js_DeliverNew : js_DeliverAll
        config.MaxAckPending = maxAckPending
        if let deliverString {
            config.DeliverSubject = UnsafePointer(deliverString.pointer)
            config.FlowControl = true
            config.Heartbeat = 5_000_000_000
        }
        var errorCode = jsErrCode(0)
        var info: UnsafeMutablePointer<jsConsumerInfo>?
        let status = stream.withCString { js_AddConsumer(&info, pointer, $0, &config, nil, &errorCode) }
        withExtendedLifetime((durableString, deliverString)) {}
        // The info is ours to free.
        jsConsumerInfo_Destroy(info)
        try rawCheck(status, "js_AddConsumer(\(durable)) error code \(errorCode.rawValue)")
    }

    /// Stores `count` copies of `payload` on `subject` with asynchronous publishes (with the
    /// headers `headers(n)` gives for message `n`, if any), waits for every ack and checks that
    /// none failed.
    public func preload(
        subject: String,
        count: Int,
        payload: [UInt8],
        headers: ((Int) -> [(String, String)])? = nil
    ) throws(RawFailure) {
        let subjectString = RawCString(subject)
        var options = jsPubOptions()
        try rawCheck(jsPubOptions_Init(&options), "jsPubOptions_Init")
        // No per-publish MaxWait here: cnats 3.4.1 keeps a record (about 80 bytes) of every
        // publish with a MaxWait until its deadline passes, acked or not, which would leave
        // ~80 MB resident after preloading a million messages. The completion below is bounded.
        let failedBefore = failures.value
        let failure: natsStatus = payload.withUnsafeBytes { bytes in
            for index in 0..<count {
                var status: natsStatus
                if let headers {
                    var message: OpaquePointer?
                    status = natsMsg_Create(
                        &message, subjectString.pointer, nil, bytes.baseAddress?.assumingMemoryBound(to: CChar.self),
                        Int32(bytes.count))
                    if status != NATS_OK { return status }
                    for (name, value) in headers(index) where status == NATS_OK {
                        status = natsMsgHeader_Add(message, name, value)
                    }
                    while status == NATS_OK {
                        // On success cnats takes the message and clears our pointer.
                        status = js_PublishMsgAsync(pointer, &message, &options)
                        // NATS_TIMEOUT: the window stayed full for StallWait; try again.
                        if status != NATS_TIMEOUT { break }
                        status = NATS_OK
                    }
                    // No-op when cnats took it.
                    natsMsg_Destroy(message)
                } else {
                    repeat {
                        status = js_PublishAsync(pointer, subjectString.pointer, bytes.baseAddress, Int32(bytes.count), &options)
                    } while status == NATS_TIMEOUT
                }
                if status != NATS_OK { return status }
            }
            var completeOptions = jsPubOptions()
            jsPubOptions_Init(&completeOptions)
            completeOptions.MaxWait = 120_000
            return js_PublishAsyncComplete(pointer, &completeOptions)
        }
        try rawCheck(failure, "preloading \(count) messages on \(subject)")
        let failed = failures.value - failedBefore
        if failed > 0 { throw RawFailure(description: "preloading: \(failed) of \(count) publishes failed") }
    }

    /// Removes every message of a stream.
    public func purge(stream: String) throws(RawFailure) {
        var errorCode = jsErrCode(0)
        let status = stream.withCString { js_PurgeStream(pointer, $0, nil, &errorCode) }
        try rawCheck(status, "js_PurgeStream(\(stream)) error code \(errorCode.rawValue)")
    }

    /// The number of messages a stream holds.
    public func messageCount(stream: String) throws(RawFailure) -> UInt64 {
        var errorCode = jsErrCode(0)
        var info: UnsafeMutablePointer<jsStreamInfo>?
        let status = stream.withCString { js_GetStreamInfo(&info, pointer, $0, nil, &errorCode) }
        // The info is ours to free.
        defer { jsStreamInfo_Destroy(info) }
        try rawCheck(status, "js_GetStreamInfo(\(stream)) error code \(errorCode.rawValue)")
        return info!.pointee.State.Msgs
    }

    /// Throws unless the stream holds exactly `expected` messages (a check after a publishing
    /// iteration that every publish was stored).
    public func expectMessageCount(stream: String, _ expected: Int) throws(RawFailure) {
        let count = try messageCount(stream: stream)
        if count != UInt64(expected) {
            throw RawFailure(description: "stream \(stream) holds \(count) messages, expected \(expected)")
        }
    }

    /// Deletes a consumer (ignores "not found").
    public func deleteConsumer(stream: String, durable: String) {
        var errorCode = jsErrCode(0)
        _ = stream.withCString { streamName in
            durable.withCString { js_DeleteConsumer(pointer, streamName, $0, nil, &errorCode) }
        }
    }
}

/// Counts failed asynchronous publishes reported by cnats's error handler.
public final class RawFailureCounter: Sendable {
    private let count = Atomic<Int>(0)

    /// A counter at zero.
    public init() {}

    /// The failures counted so far.
    public var value: Int { count.load(ordering: .acquiring) }

    func increment() { count.add(1, ordering: .releasing) }
}

/// cnats's asynchronous publish error handler: counts the failure. The failed message stays
/// cnats's (it destroys it after this returns).
private let rawPublishFailed: jsPubAckErrHandler = { _, _, closure in
    Unmanaged<RawFailureCounter>.fromOpaque(closure!).takeUnretainedValue().increment()
}

/// Headers prepared once as C strings, for raw publishes that carry the EventBus's headers; the
/// id headers (`ce-id`, `Nats-Msg-Id`) get a value per message.
public final class RawEventHeaders: @unchecked Sendable {
    // @unchecked: immutable after init.
    private let fixed: [(RawCString, RawCString)]
    private let idNames: [RawCString]

    /// Prepares the headers of `template` (the id headers' values are replaced per message).
    public init(_ template: [(String, String)]) {
        let idHeaders: Set<String> = ["ce-id", "Nats-Msg-Id"]
        fixed = template.filter { !idHeaders.contains($0.0) }.map { (RawCString($0.0), RawCString($0.1)) }
        idNames = template.filter { idHeaders.contains($0.0) }.map { RawCString($0.0) }
    }

    /// A new message with these headers and `id`; the caller publishes (cnats may take it) and
    /// destroys it.
    private func message(
        subject: UnsafePointer<CChar>, payload: UnsafeRawBufferPointer, id: UnsafePointer<CChar>
    ) -> (OpaquePointer?, natsStatus) {
        var message: OpaquePointer?
        var status = natsMsg_Create(
            &message, subject, nil, payload.baseAddress?.assumingMemoryBound(to: CChar.self), Int32(payload.count))
        if status != NATS_OK { return (nil, status) }
        for (name, value) in fixed where status == NATS_OK {
            status = natsMsgHeader_Add(message, name.pointer, value.pointer)
        }
        for name in idNames where status == NATS_OK { status = natsMsgHeader_Add(message, name.pointer, id) }
        return (message, status)
    }

    /// js_PublishMsg (waiting for the ack) of a message with these headers and `id` (a C string,
    /// see ``formatEventID(into:iteration:index:)``).
    public func publishAndWait(
        js: OpaquePointer, subject: UnsafePointer<CChar>, payload: UnsafeRawBufferPointer, id: UnsafePointer<CChar>,
        errorCode: UnsafeMutablePointer<jsErrCode>
    ) -> natsStatus {
        var (message, status) = message(subject: subject, payload: payload, id: id)
        defer { natsMsg_Destroy(message) }
        if status != NATS_OK { return status }
        var ack: UnsafeMutablePointer<jsPubAck>?
        status = js_PublishMsg(&ack, js, message, nil, errorCode)
        jsPubAck_Destroy(ack)
        return status
    }

    /// js_PublishMsgAsync of a message with these headers and `id` (a C string, see
    /// ``formatEventID(into:iteration:index:)``), retrying while the window stays full.
    public func publish(
        js: OpaquePointer, subject: UnsafePointer<CChar>, payload: UnsafeRawBufferPointer, id: UnsafePointer<CChar>,
        options: UnsafeMutablePointer<jsPubOptions>
    ) -> natsStatus {
        var (message, status) = message(subject: subject, payload: payload, id: id)
        while status == NATS_OK {
            // On success cnats takes the message and clears our pointer.
            status = js_PublishMsgAsync(js, &message, options)
            if status != NATS_TIMEOUT { break }
            status = NATS_OK
        }
        // No-op when cnats took it.
        natsMsg_Destroy(message)
        return status
    }
}

/// One js_Publish that waits for its ack, as W4 and W8 raw publish: the plain payload, or (with
/// `eventHeaders`) a message with the EventBus's headers and an id of its own for message `index`
/// of `iteration`, as long as the bus's. Returns cnats's status; `errorCode` gets JetStream's.
@inline(__always)
public func rawPublishAndWait(
    js: OpaquePointer, subject: UnsafePointer<CChar>, payload: UnsafeRawBufferPointer, eventHeaders: RawEventHeaders?,
    iteration: Int, index: Int, errorCode: UnsafeMutablePointer<jsErrCode>
) -> natsStatus {
    guard let eventHeaders else {
        var ack: UnsafeMutablePointer<jsPubAck>?
        let status = js_Publish(&ack, js, subject, payload.baseAddress, Int32(payload.count), nil, errorCode)
        // The ack is ours to free.
        jsPubAck_Destroy(ack)
        return status
    }
    return withUnsafeTemporaryAllocation(of: CChar.self, capacity: 40) { id in
        formatEventID(into: id, iteration: iteration, index: index)
        return eventHeaders.publishAndWait(
            js: js, subject: subject, payload: payload, id: id.baseAddress!, errorCode: errorCode)
    }
}

/// Writes the id of raw message `index` of `iteration` into `buffer` (at least 37 bytes) and a NUL:
/// 36 upper-case hexadecimal digits and dashes, 8-4-4-4-12, the shape and length of the ids the
/// EventBus generates, so that raw messages with the bus's headers weigh what the bus's weigh (on
/// the wire, in the store and in the server's duplicate window). Formatted in place, as a C
/// program would: no allocation.
@inline(__always)
public func formatEventID(into buffer: UnsafeMutableBufferPointer<CChar>, iteration: Int, index: Int) {
    // 32 hex digits: the iteration in the first 16, the index in the last 16.
    let hex: StaticString = "0123456789ABCDEF"
    var position = 0
    func put(_ value: UInt64, digits: Int) {
        for shift in stride(from: (digits - 1) * 4, through: 0, by: -4) {
            let nibble = Int((value >> UInt64(shift)) & 0xF)
            buffer[position] = CChar(bitPattern: hex.utf8Start[nibble])
            position += 1
        }
    }
    func dash() {
        buffer[position] = CChar(UInt8(ascii: "-"))
        position += 1
    }
    let high = UInt64(truncatingIfNeeded: iteration)
    let low = UInt64(truncatingIfNeeded: index)
    put(high >> 32, digits: 8)
    dash()
    put(high >> 16, digits: 4)
    dash()
    put(high, digits: 4)
    dash()
    put(low >> 48, digits: 4)
    dash()
    put(low, digits: 12)
    buffer[position] = 0
}

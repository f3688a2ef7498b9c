import CNATS
import Dispatch
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Owns a `natsConnection`. cnats connections are thread-safe, so this class is `Sendable`;
/// methods marked "blocking" must run on the blocking executor, never on the Swift concurrency pool.
///
/// It exists before it is connected: ``NATSConnection`` holds it in a `let` from its `init`, so
/// that the publish path reaches it without reference counting (a `let` of an object the caller
/// already holds needs no retain) and reads the cnats pointer with one atomic load. Nothing holds
/// it weakly: a weak reference would move its reference count to a side table for good and make
/// every retain and release slow.
final class NativeConnection: @unchecked Sendable {
    // @unchecked: the pointer is set once (by `connect`) through an atomic and never replaced.
    private let handle = Atomic<OpaquePointer?>(nil)

    init() {}

    deinit {
        // Closes (if still open) and frees the connection; the callbacks box is released by the
        // closed callback that this triggers. Destroying may flush for up to 500 ms and joins
        // cnats's threads, so it runs on a background queue: the last reference may be dropped
        // on a Swift concurrency thread.
        guard let pointer = handle.load(ordering: .acquiring) else { return }
        let owned = UncheckedPointer(pointer)
        DispatchQueue.global(qos: .utility).async {
            natsConnection_Destroy(owned.value)
        }
    }

    /// The cnats connection, or `nil` before ``connect(_:onEvent:onMaxPayload:)`` succeeded.
    @inline(__always)
    var pointer: OpaquePointer? { handle.load(ordering: .acquiring) }

    /// Whether ``connect(_:onEvent:onMaxPayload:)`` succeeded.
    var isConnected: Bool { pointer != nil }

    /// The error of an operation on a connection that never connected.
    static let notConnected = NATSError(.notConnected, "the connection is not connected yet: call connect() or run() first")

    /// Connects (blocking). `onEvent` is called on cnats's callback thread for every connection
    /// event, the last one being `.closed`; `onMaxPayload` with the server's `max_payload` after
    /// every reconnect (another server may announce another limit). Call once.
    func connect(
        _ configuration: NATSConnectionConfiguration,
        onEvent: @escaping @Sendable (NATSConnectionEvent) -> Void,
        onMaxPayload: @escaping @Sendable (Int) -> Void
    ) throws(NATSError) {
        let options = try NativeOptions(configuration)
        let callbacks = NativeConnectionCallbacks(onEvent: onEvent, onMaxPayload: onMaxPayload)
        // Retained for cnats: released in the closed callback, or below if connecting fails
        // (cnats calls no callback for a connection that never connected).
        let closure = Unmanaged.passRetained(callbacks).toOpaque()
        do {
            try options.setCallbacks(closure)
        } catch {
            Unmanaged<NativeConnectionCallbacks>.fromOpaque(closure).release()
            throw error
        }
        var connection: OpaquePointer?
        let status = natsConnection_Connect(&connection, options.pointer)
        guard status == NATS_OK, let connection else {
            Unmanaged<NativeConnectionCallbacks>.fromOpaque(closure).release()
            let servers = configuration.servers.map(\.description).joined(separator: ", ")
            throw NativeStatus.error(status, "cannot connect to \(servers)")
        }
        let (stored, _) = handle.compareExchange(expected: nil, desired: connection, ordering: .acquiringAndReleasing)
        if !stored {
            // Connected twice (a caller bug that NATSConnection's state prevents): keep the first.
            natsConnection_Destroy(connection)
            throw NATSError(.invalidArgument, "the connection was already connected")
        }
    }

    /// The URL of the server currently connected to, credentials redacted.
    var connectedURL: String? {
        guard let pointer else { return nil }
        var buffer = [CChar](repeating: 0, count: 512)
        guard natsConnection_GetConnectedUrl(pointer, &buffer, buffer.count) == NATS_OK else { return nil }
        let url = buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        return url.isEmpty ? nil : NATSServerURL.redact(url)
    }

    /// The largest message (payload and headers) the server accepts (0 before connecting).
    var maxPayload: Int64 {
        guard let pointer else { return 0 }
        return natsConnection_GetMaxPayload(pointer)
    }

    var isClosed: Bool {
        guard let pointer else { return false }
        return natsConnection_IsClosed(pointer)
    }

    /// Publishes without headers. Non-blocking: cnats buffers and its flusher writes.
    ///
    /// The strings reach cnats through `withCString`, which needs no allocation for a native
    /// Swift string (a small one is copied to the stack, a large one already ends in a NUL); the
    /// implicit `String` to `const char *` conversion would build an array for a small string.
    @inline(__always)
    func publish(subject: String, replyTo: String?, payload: UnsafeRawBufferPointer) throws(NATSError) {
        guard let pointer else { throw Self.notConnected }
        let data = payload.baseAddress
        let length = Int32(truncatingIfNeeded: payload.count)
        let status = subject.withCString { subject in
            guard let replyTo else { return natsConnection_Publish(pointer, subject, data, length) }
            return replyTo.withCString { natsConnection_PublishRequest(pointer, subject, $0, data, length) }
        }
        if status != NATS_OK { throw NativeStatus.error(status, "publishing to '\(subject)'") }
    }

    /// Publishes and writes the bytes to the socket from this thread (when the internals are
    /// available; a plain publish, flushed by cnats's flusher, otherwise). For messages whose
    /// delay stalls a pipeline or a caller: pull requests, replies to requests. Non-blocking
    /// except for the socket write itself, as cnats's own requests.
    func publishNow(
        subject: String, replyTo: String?, headers: NATSHeaders = NATSHeaders(), payload: UnsafeRawBufferPointer
    ) throws(NATSError) {
        guard let pointer else { throw Self.notConnected }
        guard Self.canPublishNow else {
            if headers.isEmpty {
                try publish(subject: subject, replyTo: replyTo, payload: payload)
            } else {
                try publish(subject: subject, replyTo: replyTo, headers: headers, payload: payload)
            }
            return
        }
        guard let replyTo else {
            try writeNow(on: pointer, subject: subject, replyC: nil, headers: headers, payload: payload, what: "publishing to")
            return
        }
        try replyTo.withCString { reply in
            Result { () throws(NATSError) in
                try writeNow(
                    on: pointer, subject: subject, replyC: reply, headers: headers, payload: payload,
                    what: "publishing to")
            }
        }.get()
    }

    /// Builds the message and writes it through cnats's internal publish with its direct flush
    /// (``canPublishNow`` must be true). `what` begins the error message, before the subject.
    private func writeNow(
        on pointer: OpaquePointer,
        subject: String,
        replyC: UnsafePointer<CChar>?,
        headers: NATSHeaders,
        payload: UnsafeRawBufferPointer,
        what: String
    ) throws(NATSError) {
        let message = try NativeMessage.makeOutgoingWithBlock(subject: subject, replyC: replyC, headers: headers, payload: payload)!
        // natsConn_publish copies what it sends; the message stays ours to destroy.
        defer { NativeMessage.destroy(message) }
        let status = NativeInternals.publish(message, on: pointer, now: true)
        if status != NATS_OK { throw NativeStatus.error(status, "\(what) '\(subject)'") }
    }

    /// Publishes without headers to a subject given as NUL-terminated bytes (a reply subject kept
    /// in a payload slab), so that acknowledging a message builds no `String`. Non-blocking.
    func publish(subjectCString subject: UnsafeRawPointer, payload: UnsafeRawBufferPointer) throws(NATSError) {
        guard let pointer else { throw Self.notConnected }
        let subject = subject.assumingMemoryBound(to: CChar.self)
        let status = natsConnection_Publish(pointer, subject, payload.baseAddress, Int32(truncatingIfNeeded: payload.count))
        if status != NATS_OK { throw NativeStatus.error(status, "publishing to '\(String(cString: subject))'") }
    }

    /// Publishes with headers.
    func publish(subject: String, replyTo: String?, headers: NATSHeaders, payload: UnsafeRawBufferPointer) throws(NATSError) {
        guard let pointer else { throw Self.notConnected }
        let message = try NativeMessage.makeOutgoing(subject: subject, replyTo: replyTo, headers: headers, payload: payload)
        // PublishMsg copies what it sends; the message stays ours to destroy.
        defer { NativeMessage.destroy(message) }
        let status = natsConnection_PublishMsg(pointer, message)
        if status != NATS_OK { throw NativeStatus.error(status, "publishing to '\(subject)'") }
    }

    /// Whether ``publish(subject:replyPrefix:token:headers:payload:now:)`` can write a message
    /// at once without blocking for anything but the socket: always with SendAsap, otherwise
    /// through cnats's internal publish (see `NativeInternals`).
    static var canPublishNow: Bool { NativeInternals.isAvailable }

    /// Publishes a request whose reply subject is `replyPrefix` followed by `token` in decimal,
    /// built on the stack (no allocation). Non-blocking; with `now` the bytes are written to the
    /// socket from this thread (as cnats's own request does) instead of by the flusher thread up
    /// to a millisecond later. Only pass `now` when ``canPublishNow`` is true.
    func publish(
        subject: String,
        replyPrefix: [UInt8],
        token: UInt64,
        headers: NATSHeaders,
        payload: UnsafeRawBufferPointer,
        now: Bool
    ) throws(NATSError) {
        guard let pointer else { throw Self.notConnected }
        let result: Result<Void, NATSError> = withUnsafeTemporaryAllocation(of: CChar.self, capacity: replyPrefix.count + 21) { buffer in
            var end = replyPrefix.count
            replyPrefix.withUnsafeBytes { UnsafeMutableRawPointer(buffer.baseAddress!).copyMemory(from: $0.baseAddress!, byteCount: end) }
            // The token's digits, most significant first.
            var digits = 1
            var rest = token / 10
            while rest > 0 {
                digits += 1
                rest /= 10
            }
            var value = token
            for position in stride(from: end + digits - 1, through: end, by: -1) {
                buffer[position] = CChar(UInt8(ascii: "0") + UInt8(value % 10))
                value /= 10
            }
            end += digits
            buffer[end] = 0
            let reply = UnsafePointer(buffer.baseAddress!)
            if now {
                return Result { () throws(NATSError) in
                    try writeNow(
                        on: pointer, subject: subject, replyC: reply, headers: headers, payload: payload, what: "requesting on")
                }
            }
            if headers.isEmpty {
                let data = payload.baseAddress
                let length = Int32(truncatingIfNeeded: payload.count)
                let status = subject.withCString { natsConnection_PublishRequest(pointer, $0, reply, data, length) }
                return status == NATS_OK ? .success(()) : .failure(NativeStatus.error(status, "requesting on '\(subject)'"))
            }
            return Result { () throws(NATSError) in
                let message = try NativeMessage.makeOutgoing(subject: subject, replyC: reply, headers: headers, payload: payload)
                // PublishMsg copies what it sends; the message stays ours to destroy.
                defer { NativeMessage.destroy(message) }
                let status = natsConnection_PublishMsg(pointer, message)
                if status != NATS_OK { throw NativeStatus.error(status, "requesting on '\(subject)'") }
            }
        }
        try result.get()
    }

    /// Sends a PING and waits for the PONG (blocking).
    func flush(timeoutMilliseconds: Int64) throws(NATSError) {
        guard let pointer else { throw Self.notConnected }
        try NativeStatus.check(natsConnection_FlushTimeout(pointer, max(1, timeoutMilliseconds)), "flushing")
    }

    /// Sends a request and waits for one reply (blocking). cnats writes the request at once
    /// (its request functions flush in place) and its own reply subscription wakes this thread.
    func request(
        subject: String,
        headers: NATSHeaders,
        payload: UnsafeRawBufferPointer,
        timeoutMilliseconds: Int64
    ) throws(NATSError) -> NATSMessage {
        guard let pointer else { throw Self.notConnected }
        var reply: OpaquePointer?
        let status: natsStatus
        let timeout = max(1, timeoutMilliseconds)
        if headers.isEmpty {
            // No headers: no request message to build.
            let data = payload.baseAddress
            let length = Int32(truncatingIfNeeded: payload.count)
            status = subject.withCString { natsConnection_Request(&reply, pointer, $0, data, length, timeout) }
        } else {
            let message = try NativeMessage.makeOutgoing(subject: subject, replyTo: nil, headers: headers, payload: payload)
            // The request message is ours; RequestMsg does not take it.
            defer { NativeMessage.destroy(message) }
            status = natsConnection_RequestMsg(&reply, pointer, message, timeout)
        }
        if status == NATS_NO_RESPONDERS {
            throw NATSError(
                .noResponders, "no responders are subscribed to '\(subject)'", isRetriable: true,
                nativeStatus: NativeStatus.describe(status))
        }
        if status == NATS_TIMEOUT {
            throw NATSError(
                .timeout, "no reply on '\(subject)' within \(timeoutMilliseconds) ms", isRetriable: true,
                nativeStatus: NativeStatus.describe(status))
        }
        guard status == NATS_OK, let reply else { throw NativeStatus.error(status, "requesting on '\(subject)'") }
        // The reply is handed to us: copy it out and destroy it.
        defer { NativeMessage.destroy(reply) }
        if NativeMessage.isNoResponders(reply) {
            throw NATSError(.noResponders, "no responders are subscribed to '\(subject)'", isRetriable: true)
        }
        return NativeMessage.copy(reply)
    }

    /// Starts draining (non-blocking): subscriptions finish their pending messages, publishes are
    /// flushed, then the connection closes and the closed callback fires.
    func startDrain(timeoutMilliseconds: Int64) throws(NATSError) {
        guard let pointer else { throw Self.notConnected }
        try NativeStatus.check(natsConnection_DrainTimeout(pointer, timeoutMilliseconds), "draining")
    }

    /// Closes the connection (blocking: cnats flushes for up to 500 ms first).
    func close() {
        guard let pointer else { return }
        natsConnection_Close(pointer)
    }

    /// Subscribes with an asynchronous callback into `box`.
    func subscribe(
        subject: String,
        queueGroup: String?,
        limits: NATSConnectionConfiguration.SubscriptionLimits,
        box: NativeSubscriptionBox
    ) throws(NATSError) -> NativeSubscription {
        guard let pointer else { throw Self.notConnected }
        // Retained for cnats: released exactly once, by the completion callback, or at once below if
        // subscribing fails.
        let closure = Unmanaged.passRetained(box).toOpaque()
        var subscription: OpaquePointer?
        let status = subject.withCString { subject in
            guard let queueGroup else { return natsConnection_Subscribe(&subscription, pointer, subject, nativeDeliver, closure) }
            return queueGroup.withCString {
                natsConnection_QueueSubscribe(&subscription, pointer, subject, $0, nativeDeliver, closure)
            }
        }
        guard status == NATS_OK, let subscription else {
            Unmanaged<NativeSubscriptionBox>.fromOpaque(closure).release()
            throw NativeStatus.error(status, "subscribing to '\(subject)'")
        }
        let completion = natsSubscription_SetOnCompleteCB(subscription, nativeSubscriptionComplete, closure)
        if completion != NATS_OK {
            // The subscription closed before the completion callback could be attached. Its delivery
            // thread may still hold `closure`, so the box is deliberately not released (a one-off
            // leak is safer than a use after free).
            natsSubscription_Destroy(subscription)
            throw NativeStatus.error(completion, "subscribing to '\(subject)'")
        }
        _ = natsSubscription_SetPendingLimits(
            subscription, Int32(clamping: limits.messages), Int32(clamping: limits.bytes))
        return NativeSubscription(pointer: subscription, connection: self)
    }
}

/// Carries a cnats pointer to the queue that destroys it.
struct UncheckedPointer: @unchecked Sendable {
    // @unchecked: the pointer is handed over exactly once, to the destroying queue.
    let value: OpaquePointer
    init(_ value: OpaquePointer) { self.value = value }
}

/// What the connection-event trampolines call into.
final class NativeConnectionCallbacks: @unchecked Sendable {
    // @unchecked: immutable after init.
    let onEvent: @Sendable (NATSConnectionEvent) -> Void
    let onMaxPayload: @Sendable (Int) -> Void

    init(onEvent: @escaping @Sendable (NATSConnectionEvent) -> Void, onMaxPayload: @escaping @Sendable (Int) -> Void) {
        self.onEvent = onEvent
        self.onMaxPayload = onMaxPayload
    }

    static func from(_ closure: UnsafeMutableRawPointer?) -> NativeConnectionCallbacks {
        Unmanaged<NativeConnectionCallbacks>.fromOpaque(closure!).takeUnretainedValue()
    }
}

private func connectedURL(_ connection: OpaquePointer?) -> String {
    guard let connection else { return "unknown" }
    var buffer = [CChar](repeating: 0, count: 512)
    guard natsConnection_GetConnectedUrl(connection, &buffer, buffer.count) == NATS_OK else { return "unknown" }
    return NATSServerURL.redact(buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) })
}

let nativeDisconnected: natsConnectionHandler = { _, closure in
    NativeConnectionCallbacks.from(closure).onEvent(.disconnected)
}

let nativeReconnected: natsConnectionHandler = { connection, closure in
    let callbacks = NativeConnectionCallbacks.from(closure)
    // Read the new server's limit from the connection cnats hands us, before anyone hears of the
    // reconnect.
    if let connection {
        let limit = natsConnection_GetMaxPayload(connection)
        if limit > 0 { callbacks.onMaxPayload(Int(limit)) }
    }
    callbacks.onEvent(.reconnected(server: connectedURL(connection)))
}

let nativeClosed: natsConnectionHandler = { _, closure in
    // The last callback cnats makes for a connection: release the box retained at connect.
    let callbacks = Unmanaged<NativeConnectionCallbacks>.fromOpaque(closure!).takeRetainedValue()
    callbacks.onEvent(.closed)
}

let nativeLameDuck: natsConnectionHandler = { _, closure in
    NativeConnectionCallbacks.from(closure).onEvent(.lameDuckMode)
}

let nativeDiscoveredServers: natsConnectionHandler = { connection, closure in
    var servers: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
    var count: Int32 = 0
    var urls: [String] = []
    if let connection, natsConnection_GetDiscoveredServers(connection, &servers, &count) == NATS_OK, let servers {
        // The array and every string in it are ours to free.
        for index in 0..<Int(count) {
            if let server = servers[index] {
                urls.append(NATSServerURL.redact(String(cString: server)))
                free(server)
            }
        }
        free(servers)
    }
    NativeConnectionCallbacks.from(closure).onEvent(.discoveredServers(urls))
}

let nativeAsyncError: natsErrHandler = { connection, subscription, status, closure in
    let callbacks = NativeConnectionCallbacks.from(closure)
    if status == NATS_SLOW_CONSUMER, let subscription {
        let subject = natsSubscription_GetSubject(subscription).map { String(cString: $0) } ?? ""
        var dropped: Int64 = 0
        _ = natsSubscription_GetDropped(subscription, &dropped)
        callbacks.onEvent(.slowConsumer(subject: subject, droppedTotal: dropped))
        return
    }
    var lastError: UnsafePointer<CChar>?
    var text = NativeStatus.describe(status).text
    if let connection, natsConnection_GetLastError(connection, &lastError) != NATS_OK, let lastError {
        text = NATSServerURL.redact(String(cString: lastError))
    }
    callbacks.onEvent(.error(NativeStatus.error(status, "asynchronous error (\(text))")))
}

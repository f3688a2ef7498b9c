import Logging
import Synchronization

/// A connection to a NATS server or cluster, built on cnats.
///
/// ```swift
/// let connection = NATSConnection(configuration: try .init(servers: ["nats://127.0.0.1:4222"]), logger: logger)
/// try await connection.connect()
/// let orders = try await connection.subscribe(to: "orders.*", queueGroup: "workers")
/// try connection.publish(subject: "orders.created", payload: Array("hello".utf8))
/// for try await message in orders { print(message.subject, message.payload.string) }
/// ```
///
/// Lifecycle: `init` does no I/O. ``connect()`` connects; ``run()`` (from `Service`) connects if
/// needed and then holds the connection open until graceful shutdown (which drains) or task
/// cancellation (which closes). ``drain(timeout:)`` delivers what subscriptions already received,
/// flushes publishes, and closes; ``close()`` closes at once. When the connection closes, every
/// subscription sequence and the ``events`` sequence end. Dropping the last reference closes the
/// connection too (subscriptions refer to their connection, so one being iterated keeps it open).
///
/// Reconnection is cnats's, configured by ``NATSConnectionConfiguration/reconnect``: publishes
/// made while disconnected are buffered (up to the reconnect buffer size) and sent after the
/// reconnect; subscriptions are re-established. cnats closes a connection for good on most
/// `-ERR`s from the server (a control line over `max_control_line`, too many subscriptions); the
/// client then connects again itself, subscribes again and reports `.reconnected`, so that one
/// bad call fails alone (the call fails with ``NATSError/Code/serverError`` naming the reason).
public final class NATSConnection: Sendable {
    /// The configuration this connection was created with.
    public let configuration: NATSConnectionConfiguration
    let core: ConnectionCore
    /// The cnats connection, created unconnected with this object and connected by ``connect()``.
    /// A `let`, so the hot paths use it without a retain and release of their own.
    let native = NativeConnection()
    let blocking: BlockingExecutor
    /// ``NATSConnectionConfiguration/maxControlLine``, read once: every publish checks its
    /// control line against it.
    @usableFromInline let maxControlLine: Int
    /// The request multiplexer, made by the first request or JetStream publisher.
    private let responseMux = AtomicLazyReference<ResponseMux>()

    /// Creates a connection without connecting.
    public init(configuration: NATSConnectionConfiguration, logger: Logger = Logger(label: "nats")) {
        self.configuration = configuration
        var logger = logger
        if let name = configuration.name { logger[metadataKey: "nats.connection"] = "\(name)" }
        core = ConnectionCore(logger: logger, connectionName: configuration.name ?? "default")
        maxControlLine = configuration.maxControlLine
        blocking = BlockingExecutor(label: "nats.blocking.\(configuration.name ?? "connection")")
    }

    deinit {
        // The native connection closes as it is released; that disconnection is expected.
        if let finish = core.transition({ $0.released() }) { core.finish(finish) }
        // Its inbox subscription holds the native connection until it is unsubscribed.
        responseMux.load()?.close()
    }

    /// Creates a connection and connects it.
    public static func connect(
        configuration: NATSConnectionConfiguration,
        logger: Logger = Logger(label: "nats")
    ) async throws(NATSError) -> NATSConnection {
        let connection = NATSConnection(configuration: configuration, logger: logger)
        try await connection.connect()
        return connection
    }

    /// The connection's events from now on (connected, disconnected, reconnected, slow consumer,
    /// errors, closed). Each access gives a new listener.
    public var events: NATSConnectionEvents {
        NATSConnectionEvents(stream: core.makeEventStream())
    }

    /// The largest message (payload plus headers) the server accepts, as it announced it.
    public var maxPayload: Int { core.maxPayload.load(ordering: .relaxed) }

    /// The server currently connected to (credentials redacted), or `nil` while not connected
    /// (before ``connect()`` returned, once ``close()`` or ``drain(timeout:)`` was called, while
    /// cnats reconnects).
    public var connectedServer: String? {
        guard core.availability == .open, !core.isRecovering else { return nil }
        return native.connectedURL
    }

    /// How many bytes cnats holds in its write buffer, not yet written to the socket (0 when not
    /// connected).
    package var bufferedBytes: Int { native.bufferedBytes }

    /// How many requests (JetStream publishes among them) the connection wrote itself instead of
    /// leaving them to cnats's flusher: with cnats's internals each request written at once;
    /// without them each prompt flush (`NativeConnection.flushSoon`, which also serves replies
    /// and pull requests there). For tests of when bytes leave.
    package var promptWriteCount: Int { native.promptWrites.load(ordering: .relaxed) }

    /// Whether the connection is closed for good (``close()`` or ``drain(timeout:)`` finished, or
    /// cnats gave up reconnecting). A connection being closed is not closed yet, but refuses
    /// operations with ``NATSError/Code/connectionClosed`` already.
    public var isClosed: Bool { core.phase == .closed }

    /// Where a connection is, for health reports (``NATSConnection/state``).
    public enum State: String, Sendable, Hashable, CustomStringConvertible {
        /// Not connected yet (``connect()`` not called, or it failed).
        case idle
        /// ``connect()`` is running.
        case connecting
        /// Connected to a server.
        case connected
        /// The connection to the server was lost; cnats is reconnecting.
        case reconnecting
        /// ``drain(timeout:)`` is running.
        case draining
        /// ``close()`` was called; the connection is closing.
        case closing
        /// Closed for good.
        case closed

        public var description: String { rawValue }
    }

    /// Where the connection is now (takes the connection's lock: for health reports, not a hot
    /// path).
    public var state: State {
        let (phase, reconnecting) = core.phaseAndReconnecting
        switch phase {
        case .idle: return .idle
        case .connecting: return .connecting
        case .connected: return reconnecting ? .reconnecting : .connected
        case .draining: return .draining
        case .closing: return .closing
        case .closed: return .closed
        }
    }

    /// Connects to the first reachable server of the configuration.
    ///
    /// A ``close()`` or ``drain(timeout:)`` while this runs wins: the connection ends closed,
    /// the cnats connection this made is closed before it is ever used, and this throws
    /// ``NATSError/Code/connectionClosed`` ("closed while connecting").
    ///
    /// - Throws: ``NATSError`` with ``NATSError/Code/noServers`` (naming the servers, credentials
    ///   redacted) when no server answered, ``NATSError/Code/authenticationFailed``, or
    ///   ``NATSError/Code/invalidConfiguration``; ``NATSError/Code/connectionClosed`` if the
    ///   connection was closed before or while connecting; ``NATSError/Code/invalidArgument`` if
    ///   it was already connected.
    public func connect() async throws(NATSError) {
        try configuration.validate()
        if case .reject(let error) = core.transition({ $0.connectRequested() }) { throw error }
        NativeInternals.selection.log(to: core.logger)
        for warning in configuration.tlsWarnings { core.logger.warning("\(warning)") }
        let configuration = self.configuration
        let core = self.core
        let native = self.native
        let installed: Bool
        do {
            installed = try await blocking.run { () throws(NATSError) -> Bool in
                try native.connect(
                    configuration,
                    onEvent: { core.handle($0) },
                    onMaxPayload: { limit in core.maxPayload.store(limit, ordering: .relaxed) },
                    shouldRecover: { core.transition { $0.recoveryRequested() } },
                    commit: { install in core.connectSucceeded(install: install) })
            }
        } catch {
            throw core.connectFailed(error)
        }
        // Closed or drained while connecting: what cnats made is destroyed already.
        guard installed else { throw core.connectAbandoned() }
        core.maxPayload.store(Int(native.maxPayload), ordering: .relaxed)
        core.handle(.connected(server: native.connectedURL ?? configuration.servers[0].description))
    }

    /// The connected native connection, or the error that says why there is none. One atomic
    /// load: the state machine's availability, mirrored at every transition.
    @inline(__always)
    func connected() throws(NATSError) -> NativeConnection {
        guard core.isOpen else { throw notConnectedError() }
        return native
    }

    /// Why operations cannot run: closed (or closing, or closed while connecting), or not
    /// connected yet.
    func notConnectedError() -> NATSError {
        switch core.availability {
        case .closed: NATSError(.connectionClosed, "the connection is closed")
        case .notConnected, .open: NativeConnection.notConnected
        }
    }

    /// Checks a message's size against the server's `max_payload`.
    @inline(__always)
    func checkSize(payloadCount: Int, headers: NATSHeaders, subject: @autoclosure () -> String) throws(NATSError) {
        let limit = core.maxPayload.load(ordering: .relaxed)
        if payloadCount > limit - (headers.isEmpty ? 0 : headers.encodedSize) {
            let total = payloadCount + headers.encodedSize
            throw NATSError(
                .payloadTooLarge,
                "message to '\(subject())' is \(total) bytes (payload \(payloadCount), headers \(headers.encodedSize)); the server accepts at most \(limit) bytes (max_payload)"
            )
        }
    }

    /// Checks that a publish's control line (`PUB`/`HPUB` with the subject, the reply subject
    /// and the sizes) fits ``NATSConnectionConfiguration/maxControlLine``: the server closes the
    /// connection on a longer one. One comparison for any usual subject; the exact length is
    /// only worked out near the limit.
    @inline(__always)
    func checkControlLine(
        subject: String, replyTo: String? = nil, replyLength: Int? = nil, headers: NATSHeaders, payloadCount: Int
    ) throws(NATSError) {
        // Room for two sizes of up to 20 digits and the spaces between the parts.
        let known = subject.utf8.count + (replyLength ?? replyTo?.utf8.count ?? 0)
        if known + 44 <= maxControlLine { return }
        try NATSValidation.validatePublishControlLine(
            subject: subject, replyTo: replyTo, replyLength: replyLength,
            headerLength: headers.isEmpty ? nil : headers.encodedSize, payloadLength: payloadCount, limit: maxControlLine)
    }

    /// Publishes a message. Returns once it is written to the socket or buffered: a publish after
    /// a quiet spell (``NATSConnectionConfiguration/writeImmediatelyAfterIdle``, 20 µs by default)
    /// is written at once, so a reply or a lone event leaves without delay; publishes close
    /// behind one another are buffered and written together by cnats's flusher within about a
    /// millisecond (every publish at once with ``NATSConnectionConfiguration/sendAsap``). Call
    /// ``flush(timeout:)`` to know the server has it.
    ///
    /// Everything is checked before anything is sent: the subject (a literal subject, no
    /// wildcards), the reply subject, header names and values, the size against the server's
    /// `max_payload`, and the control line against ``NATSConnectionConfiguration/maxControlLine``
    /// (a too-long subject throws ``NATSError/Code/invalidSubject``).
    ///
    /// Inlinable, so that a caller's payload type (`[UInt8]`, ``NATSPayload``, a slice) is
    /// specialised in the caller's module: the work happens in one non-generic function, with no
    /// generic metadata looked up per call.
    @inlinable
    public func publish(
        subject: String,
        payload: some Sequence<UInt8>,
        headers: NATSHeaders = NATSHeaders(),
        replyTo: String? = nil
    ) throws(NATSError) {
        let contiguous: NATSError?? = payload.withContiguousStorageIfAvailable { bytes -> NATSError? in
            do throws(NATSError) {
                try publish(subject: subject, bytes: UnsafeRawBufferPointer(bytes), headers: headers, replyTo: replyTo)
                return nil
            } catch {
                return error
            }
        }
        if let contiguous {
            if let failure = contiguous { throw failure }
            return
        }
        let array = Array(payload)
        let failure: NATSError? = array.withUnsafeBytes { bytes -> NATSError? in
            do throws(NATSError) {
                try publish(subject: subject, bytes: bytes, headers: headers, replyTo: replyTo)
                return nil
            } catch {
                return error
            }
        }
        if let failure { throw failure }
    }

    /// Publishes a message whose payload is the UTF-8 bytes of a string.
    public func publish(subject: String, payload: String, headers: NATSHeaders = NATSHeaders(), replyTo: String? = nil)
        throws(NATSError)
    {
        var payload = payload
        let failure: NATSError? = payload.withUTF8 { bytes -> NATSError? in
            do throws(NATSError) {
                try publish(subject: subject, bytes: UnsafeRawBufferPointer(bytes), headers: headers, replyTo: replyTo)
                return nil
            } catch {
                return error
            }
        }
        if let failure { throw failure }
    }

    /// Publishes a message with an empty payload.
    public func publish(subject: String, headers: NATSHeaders = NATSHeaders(), replyTo: String? = nil) throws(NATSError) {
        try publish(subject: subject, bytes: UnsafeRawBufferPointer(start: nil, count: 0), headers: headers, replyTo: replyTo)
    }

    /// The one publish path every overload ends in: validation, the size check, then cnats.
    /// With `now`, the message is written to the socket from this thread instead of by cnats's
    /// flusher up to a millisecond later (see ``publishNow(subject:payload:headers:)``).
    @usableFromInline
    func publish(
        subject: String, bytes: UnsafeRawBufferPointer, headers: NATSHeaders, replyTo: String?, now: Bool = false
    ) throws(NATSError) {
        try NATSValidation.validateSubject(subject, for: .publish)
        if let replyTo {
            if let rule = NATSValidation.subjectViolation(replyTo, for: .publish) {
                throw NATSError(.invalidSubject, "invalid reply subject '\(NATSValidation.printable(replyTo))': \(rule)")
            }
        }
        if !headers.isEmpty { try NATSValidation.validateHeaders(headers) }
        try checkSize(payloadCount: bytes.count, headers: headers, subject: subject)
        try checkControlLine(subject: subject, replyTo: replyTo, headers: headers, payloadCount: bytes.count)
        guard core.isOpen else { throw notConnectedError() }
        do {
            if (now && !configuration.sendAsap) || native.publishFollowsIdle() {
                try native.publishNow(subject: subject, replyTo: replyTo, headers: headers, payload: bytes)
            } else if headers.isEmpty {
                try native.publish(subject: subject, replyTo: replyTo, payload: bytes)
            } else {
                try native.publish(subject: subject, replyTo: replyTo, headers: headers, payload: bytes)
            }
        } catch where error.code == .notConnected {
            throw notConnectedError()
        }
    }

    /// Publishes a message and writes it to the socket at once, from the calling thread, instead
    /// of leaving it to cnats's flusher (which waits up to a millisecond for more): for a reply
    /// that a requester waits for. Validated as ``publish(subject:payload:headers:replyTo:)``.
    /// Non-blocking except for the socket write. Without cnats's internals (see README, "cnats
    /// internals") it is a plain publish that a dispatch thread flushes at once.
    package func publishNow(subject: String, payload: [UInt8], headers: NATSHeaders = NATSHeaders()) throws(NATSError) {
        let failure: NATSError? = payload.withUnsafeBytes { bytes -> NATSError? in
            do throws(NATSError) {
                try publish(subject: subject, bytes: bytes, headers: headers, replyTo: nil, now: true)
                return nil
            } catch {
                return error
            }
        }
        if let failure { throw failure }
    }

    /// Publishes a control message of the client's own (subjects it built, already valid) and
    /// writes it at once instead of leaving it to cnats's flusher, which waits up to a
    /// millisecond for more: a pull consumer's next request must not sit in the buffer while the
    /// server runs out of requested messages.
    func publishNow(subject: String, body: String, replyTo: String) throws(NATSError) {
        try publishControl(body: body, subject: subject, subjectLength: subject.utf8.count, replyTo: replyTo) { bytes throws(NATSError) in
            try native.publishNow(subject: subject, replyTo: replyTo, payload: bytes)
        }
    }

    /// Publishes a small body to a subject the server gave (a JetStream ack subject, a
    /// flow-control reply): not validated again, only sized. For the client's own protocol
    /// replies, which run once per message received.
    func publishToServerSubject(_ subject: String, body: String) throws(NATSError) {
        try publishControl(body: body, subject: subject, subjectLength: subject.utf8.count) { bytes throws(NATSError) in
            try native.publish(subject: subject, replyTo: nil, payload: bytes)
        }
    }

    /// ``publishToServerSubject(_:body:)`` to a message's reply subject as its record holds it
    /// (NUL-terminated bytes in a payload slab): acknowledging a JetStream message builds no
    /// `String`.
    func publishToServerSubject(_ reply: MessageAcknowledgement, body: String) throws(NATSError) {
        try publishControl(body: body, subject: reply.subject, subjectLength: reply.count) { bytes throws(NATSError) in
            try reply.withSubjectCString { subject in
                Result { () throws(NATSError) in try native.publish(subjectCString: subject, payload: bytes) }
            }.get()
        }
    }

    /// The size and control-line checks and error mapping of the client's own small control
    /// messages (pull requests, acks, flow-control replies); `subject` is only built for an error.
    private func publishControl(
        body: String,
        subject: @autoclosure () -> String,
        subjectLength: Int,
        replyTo: String? = nil,
        send: (UnsafeRawBufferPointer) throws(NATSError) -> Void
    ) throws(NATSError) {
        var body = body
        let failure: NATSError? = body.withUTF8 { bytes -> NATSError? in
            do throws(NATSError) {
                try checkSize(payloadCount: bytes.count, headers: NATSHeaders(), subject: subject())
                if subjectLength + (replyTo?.utf8.count ?? 0) + 44 > maxControlLine {
                    try NATSValidation.validatePublishControlLine(
                        subject: subject(), replyTo: replyTo, payloadLength: bytes.count, limit: maxControlLine)
                }
                try send(UnsafeRawBufferPointer(bytes))
                return nil
            } catch where error.code == .notConnected {
                return notConnectedError()
            } catch {
                return error
            }
        }
        if let failure { throw failure }
    }

    /// Waits until the server has processed everything published so far (a PING/PONG round trip).
    ///
    /// Throws `.timeout` when no PONG came within `timeout`. A PONG that is 250 ms late (or twice
    /// the last flush's round trip, if longer, up to 1 s) is asked for again with a new PING,
    /// awaited for the rest of `timeout`: cnats can leave a flush waiting for a PONG that already
    /// arrived when another flush times out beside it (see the README, "A flush is never left
    /// waiting for a PONG that came").
    public func flush(timeout: Duration = .seconds(5)) async throws(NATSError) {
        let native = try connected()
        try await blocking.run { () throws(NATSError) in
            try native.flush(timeoutMilliseconds: timeout.millisecondsClamped)
        }
    }

    /// Subscribes to a subject (wildcards allowed) and returns the messages as an `AsyncSequence`.
    ///
    /// When this returns, the server has registered the interest (the client waited for a
    /// PING/PONG), so a message published afterwards is delivered. Subscribers sharing a
    /// `queueGroup` split the messages between them. The subscription buffers up to `limits` (the
    /// configuration's ``NATSConnectionConfiguration/subscriptionLimits`` by default); when the
    /// consumer falls further behind, cnats drops messages and the connection reports
    /// ``NATSConnectionEvent/slowConsumer(subject:droppedTotal:)``.
    ///
    /// The sequence ends when it is unsubscribed or drained, when its iteration ends (a `break`,
    /// or the consuming task being cancelled), or when the connection closes.
    public func subscribe(
        to subject: String,
        queueGroup: String? = nil,
        limits: NATSConnectionConfiguration.SubscriptionLimits? = nil
    ) async throws(NATSError) -> NATSSubscription {
        NATSSubscription(
            handle: try await subscribeBuffered(
                to: subject, queueGroup: queueGroup, limits: limits, box: CoreSubscriptionBox.init(buffer:)))
    }

    /// Subscribes a JetStream consumer: like ``subscribe(to:queueGroup:limits:)``, but each
    /// message's reply subject is kept in the payload slab as its acknowledgement record (see
    /// ``ConsumerDelivery``).
    /// `redeliveredAfter`: see ``NativeConnection/handBack(_:redeliveredAfter:)``.
    func subscribeConsumer(
        to subject: String,
        queueGroup: String? = nil,
        limits: NATSConnectionConfiguration.SubscriptionLimits? = nil,
        redeliveredAfter: Duration? = nil
    ) async throws(NATSError) -> SubscriptionHandle<ConsumerDelivery> {
        try await subscribeBuffered(
            to: subject, queueGroup: queueGroup, limits: limits,
            box: { [native] in ConsumerSubscriptionBox(buffer: $0, connection: native, redeliveredAfter: redeliveredAfter) })
    }

    /// Validates, subscribes with a box that copies messages into a new bounded buffer, and
    /// returns once the server has the interest.
    private func subscribeBuffered<Element: Sendable>(
        to subject: String,
        queueGroup: String?,
        limits: NATSConnectionConfiguration.SubscriptionLimits?,
        box makeBox: (BoundedBatchBuffer<Element>) -> NativeSubscriptionBox
    ) async throws(NATSError) -> SubscriptionHandle<Element> {
        let limits = try checkSubscription(subject: subject, queueGroup: queueGroup, limits: limits)
        let buffer = BoundedBatchBuffer<Element>(limits: .init(messages: limits.messages, bytes: limits.bytes))
        let nativeSubscription = try await subscribeConfirmed(
            subject: subject, queueGroup: queueGroup, limits: limits, box: makeBox(buffer))
        return SubscriptionHandle(subject: subject, queueGroup: queueGroup, native: nativeSubscription, buffer: buffer)
    }

    /// Validates a subscription's subject and queue group, and its limits (the connection's when
    /// `nil`); returns the limits to use.
    func checkSubscription(
        subject: String,
        queueGroup: String?,
        limits: NATSConnectionConfiguration.SubscriptionLimits?
    ) throws(NATSError) -> NATSConnectionConfiguration.SubscriptionLimits {
        try NATSValidation.validateSubject(subject, for: .subscribe)
        if let queueGroup { try NATSValidation.validateQueueGroup(queueGroup) }
        try NATSValidation.validateSubscribeControlLine(subject: subject, queueGroup: queueGroup, limit: maxControlLine)
        let limits = limits ?? configuration.subscriptionLimits
        if limits.messages < 1 || limits.bytes < 1 {
            throw NATSError(.invalidArgument, "subscription limits must be at least 1 message and 1 byte, got \(limits)")
        }
        return limits
    }

    /// Subscribes `box` and returns once the server has the interest. A failure of that last
    /// round trip (for example a disconnection) is not fatal: cnats re-subscribes after
    /// reconnecting. Unless the server closed the connection after an `-ERR` (for example
    /// `maximum subscriptions exceeded`): then this subscription is likely what it refused, so
    /// it is not carried over to the recovered connection and the call throws the server's reason.
    func subscribeConfirmed(
        subject: String,
        queueGroup: String?,
        limits: NATSConnectionConfiguration.SubscriptionLimits,
        box: NativeSubscriptionBox
    ) async throws(NATSError) -> NativeSubscription {
        let native = try connected()
        let subscription = try native.subscribe(
            subject: subject, queueGroup: queueGroup, limits: limits, box: box, confirmed: false)
        let timeout = configuration.connectTimeout.millisecondsClamped
        let flushed: Bool
        do {
            try await blocking.run { () throws(NATSError) in try native.confirmingFlush(timeoutMilliseconds: timeout) }
            flushed = true
        } catch {
            flushed = false
        }
        try native.confirm(subscription, failed: !flushed)
        if flushed, let reason = native.subscriptionRefusal(subject: subject) {
            subscription.unsubscribe()
            throw NATSError(
                .permissionDenied,
                "subscribing to '\(NATSValidation.printable(subject))': the server does not permit it (\(reason)); the connection stays open")
        }
        return subscription
    }

    /// Adds another subject whose messages go into an existing consumer subscription's buffer
    /// (see ``NATSPullConsumer/addCoreSubscription(to:queueGroup:)``).
    func addCoreSubscription(
        to handle: SubscriptionHandle<ConsumerDelivery>, subject: String, queueGroup: String?
    ) async throws(NATSError) {
        let limits = try checkSubscription(
            subject: subject, queueGroup: queueGroup,
            limits: .init(messages: handle.buffer.limits.messages, bytes: handle.buffer.limits.bytes))
        let added = try await subscribeConfirmed(
            subject: subject, queueGroup: queueGroup, limits: limits, box: ConsumerSubscriptionBox(buffer: handle.buffer, connection: native))
        handle.coreSubscriptions.withLock { $0.append(added) }
        // Stopped meanwhile: the stop did not see this one.
        if handle.buffer.isFinished { added.unsubscribe() }
    }

    /// Sends a request and waits for the first reply.
    ///
    /// The request is written to the socket at once (not after cnats's flusher's millisecond) and
    /// the reply resumes the waiting task straight from cnats's delivery thread; one inbox
    /// subscription per connection serves every request, and no thread blocks. Should cnats's
    /// internal publish not be available (a libnats release it was not verified against, see the
    /// README's "cnats internals"), a connection without ``NATSConnectionConfiguration/sendAsap``
    /// publishes the request and has a dispatch thread flush it at once (with a PING), with the
    /// same behaviour otherwise.
    ///
    /// - Throws: ``NATSError/Code/noResponders`` at once when no subscriber listens on the subject,
    ///   ``NATSError/Code/timeout`` when none answered in time, ``NATSError/Code/disconnected``
    ///   (retriable; the responder may or may not have acted) at once when the connection drops
    ///   while the reply is awaited, ``NATSError/Code/cancelled`` when the task was cancelled while
    ///   waiting; validation errors as for publish.
    public func request(
        subject: String,
        payload: some Sequence<UInt8> = [UInt8](),
        headers: NATSHeaders = NATSHeaders(),
        timeout: Duration = .seconds(5)
    ) async throws(NATSError) -> NATSMessage {
        // The synchronous part (validation, the write) stays out of this async function: its
        // frame comes from the task's allocator, which holds about 1 KB per slab, and with that
        // part inlined it was 3.4 KB, a malloc per request from a task of its own.
        let (mux, token) = try startRequest(subject: subject, payload: payload, headers: headers, timeout: timeout)
        return try await mux.wait(token: token).get()
    }

    /// ``startRequest(subject:bytes:headers:timeout:)`` with the payload's bytes.
    @inline(never)
    private func startRequest(
        subject: String, payload: some Sequence<UInt8>, headers: NATSHeaders, timeout: Duration
    ) throws(NATSError) -> (ResponseMux, UInt64) {
        let started: Result<(ResponseMux, UInt64), NATSError>
        if let contiguous = payload.withContiguousStorageIfAvailable({ bytes in
            Result { () throws(NATSError) in
                try startRequest(subject: subject, bytes: UnsafeRawBufferPointer(bytes), headers: headers, timeout: timeout)
            }
        }) {
            started = contiguous
        } else {
            started = Array(payload).withUnsafeBytes { bytes in
                Result { () throws(NATSError) in
                    try startRequest(subject: subject, bytes: bytes, headers: headers, timeout: timeout)
                }
            }
        }
        return try started.get()
    }

    /// Validates a request and sends it through the multiplexer; returns the multiplexer and the
    /// request's token. Synchronous: the caller's bytes are only valid here.
    func startRequest(subject: String, bytes: UnsafeRawBufferPointer, headers: NATSHeaders, timeout: Duration)
        throws(NATSError) -> (ResponseMux, UInt64)
    {
        try NATSValidation.validateSubject(subject, for: .publish)
        if !headers.isEmpty { try NATSValidation.validateHeaders(headers) }
        if timeout <= .zero { throw NATSError(.invalidArgument, "request timeout must be positive, got \(timeout)") }
        try checkSize(payloadCount: bytes.count, headers: headers, subject: subject)
        try checkControlLine(
            subject: subject, replyLength: NATSValidation.requestInboxReserve, headers: headers, payloadCount: bytes.count)
        guard core.isOpen else { throw notConnectedError() }
        let mux = try responseMultiplexer()
        return (mux, try mux.start(subject: subject, bytes: bytes, headers: headers, timeout: timeout))
    }

    /// Validates a request whose outcome goes to `receiver` (a JetStream publish in a
    /// publisher's window) and starts it through `mux`; see
    /// ``ResponseMux/start(subject:bytes:headers:timeout:receiver:now:)``.
    func startRequest(
        subject: String, bytes: UnsafeRawBufferPointer, headers: NATSHeaders, timeout: Duration,
        receiver: any ResponseReceiver, now: Bool, through mux: ResponseMux
    ) throws(NATSError) {
        try NATSValidation.validateSubject(subject, for: .publish)
        if !headers.isEmpty { try NATSValidation.validateHeaders(headers) }
        try checkSize(payloadCount: bytes.count, headers: headers, subject: subject)
        try checkControlLine(
            subject: subject, replyLength: mux.prefix.count + NATSValidation.decimalDigits(Int.max), headers: headers,
            payloadCount: bytes.count)
        do {
            _ = try mux.start(subject: subject, bytes: bytes, headers: headers, timeout: timeout, receiver: receiver, now: now)
        } catch where error.code == .notConnected {
            throw notConnectedError()
        }
    }

    /// The connection's request multiplexer, made on first use: the one inbox subscription for
    /// requests and for the acks of JetStream publishes.
    func responseMultiplexer() throws(NATSError) -> ResponseMux {
        if let mux = responseMux.load() { return mux }
        // Written at once explicitly only where a plain publish is not (SendAsap): through the
        // internals, or flushed at once without them (see NativeConnection.flushSoon).
        let made = try ResponseMux.make(
            native: native, limits: configuration.subscriptionLimits,
            publishNow: !configuration.sendAsap)
        let mux = responseMux.storeIfNil(made)
        // Another request made one first: use it, release ours.
        if mux !== made { made.close() }
        return mux
    }

    /// Drains the connection: subscriptions stop receiving new messages but deliver the ones
    /// already received (the iterating tasks must keep consuming), publishes are flushed, then the
    /// connection closes. Returns when it is closed. While ``connect()`` runs, there is nothing
    /// to drain: the connect ends closed (see ``connect()``) and this returns then.
    ///
    /// - Throws: ``NATSError/Code/timeout`` if draining took longer than `timeout` (the connection
    ///   is closed anyway); cnats's error if it refused to drain (the connection is then closed).
    public func drain(timeout: Duration = .seconds(30)) async throws(NATSError) {
        var refused: NATSError?
        switch core.transition({ $0.drainRequested() }) {
        case .none:
            return
        case .finish(let finish):
            core.finish(finish)
            return
        case .wait:
            break
        case .startDrain:
            do {
                try native.startDrain(timeoutMilliseconds: max(1, timeout.millisecondsClamped))
            } catch where error.code == .connectionClosed || error.code == .connectionDraining {
                // Already closing: wait for it below.
            } catch {
                refused = error
                if case .closeNative = core.transition({ $0.drainFailed() }) {
                    let native = self.native
                    await blocking.runUnchecked { native.close() }
                }
            }
        }
        await core.waitUntilClosed()
        if let refused { throw refused }
        if core.drainTimedOut {
            throw NATSError(.timeout, "draining did not finish within \(timeout); the connection was closed", isRetriable: false)
        }
        if native.drainEndedUnflushed {
            throw NATSError(
                .connectionClosed,
                "the connection closed before draining finished (closed meanwhile, or the reconnect failed); publishes not yet sent may be lost",
                isRetriable: false)
        }
    }

    /// Closes the connection at once: pending publishes are flushed for up to 500 ms, messages not
    /// yet handed to subscribers are dropped. Returns when it is closed. From the call on, every
    /// operation throws ``NATSError/Code/connectionClosed``. While ``connect()`` runs, this waits
    /// for it to end: the connect closes the connection it made and throws (see ``connect()``).
    public func close() async {
        switch core.transition({ $0.closeRequested() }) {
        case .none:
            return
        case .finish(let finish):
            core.finish(finish)
            return
        case .closeNative:
            let native = self.native
            await blocking.runUnchecked { native.close() }
        case .wait:
            break
        }
        await core.waitUntilClosed()
    }

    /// Starts closing without waiting (for cancellation handlers, which cannot await).
    func closeInBackground() {
        switch core.transition({ $0.closeRequested() }) {
        case .none, .wait:
            return
        case .finish(let finish):
            core.finish(finish)
        case .closeNative:
            let native = self.native
            blocking.submit { native.close() }
        }
    }
}

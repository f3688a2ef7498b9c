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
///
/// The cnats pointer lives in ``link``, shared with the connection's callbacks: it is set by
/// `connect` and replaced only when the link recovers a connection the server closed after an
/// `-ERR` (cnats would leave it closed for good; see ``NativeConnectionLink``).
final class NativeConnection: @unchecked Sendable {
    // @unchecked: the pointer is behind an atomic; replaced ones are kept until deinit.
    let link = NativeConnectionLink()
    /// ``NATSConnectionConfiguration/writeImmediatelyAfterIdle`` in the idle clock's units, 0
    /// when off (no clock is read then); set by ``connect(_:onEvent:onMaxPayload:)``.
    private let idleGap = Atomic<Int64>(0)
    /// Whether the idle clock is the CPU's cycle counter rather than `clock_gettime` (see
    /// ``NativeIdleClock``); set with ``idleGap``.
    private let idleClockCountsCycles = Atomic<Bool>(false)
    /// When the last application publish passed ``publishFollowsIdle()`` (idle clock units).
    private let lastPublish = Atomic<Int64>(0)
    /// ``flushSoon()``'s state: idle, a flush running, or a flush running and another asked for.
    private let flushState = Atomic<UInt8>(FlushState.idle)
    /// With the internals, how many requests were written at once; without them, how many
    /// flushes ``flushSoon()`` ran (for any message that should leave at once). For tests of
    /// when bytes leave; one relaxed add per write, next to a `send`.
    let promptWrites = Atomic<Int>(0)
    /// The round trip of this connection's last flush that got its PONG, in milliseconds.
    private let lastFlushRoundTrip = Atomic<Int64>(0)
    /// How many of this connection's flushes sent a second PING (see ``flush(_:timeoutMilliseconds:firstWait:)``).
    let flushesSentAgain = Atomic<Int>(0)
    /// Whether ``startDrain(timeoutMilliseconds:)``'s second step ran (it runs once).
    private let connectionDrainStarted = Atomic<Bool>(false)
    /// Whether cnats accepted the connection's drain (it then flushes the publishes and closes).
    private let connectionDrainAccepted = Atomic<Bool>(false)

    /// Whether a drain that ``startDrain(timeoutMilliseconds:)`` left to finish later ended without
    /// cnats draining the connection: it closed first (cnats gave up reconnecting, or it was
    /// closed), so publishes it still held may not have been sent. False for a drain cnats took at
    /// once or refused at once.
    var drainEndedUnflushed: Bool {
        connectionDrainStarted.load(ordering: .acquiring) && !connectionDrainAccepted.load(ordering: .acquiring)
    }

    private enum FlushState {
        static let idle: UInt8 = 0
        static let running: UInt8 = 1
        static let runAgain: UInt8 = 2
    }

    init() {}

    deinit {
        // Closes (if still open) and frees the connection, and the ones a recovery replaced; the
        // callbacks boxes are released by the closed callbacks this triggers. Destroying may
        // flush for up to 500 ms and joins cnats's threads, so it runs on a background queue:
        // the last reference may be dropped on a Swift concurrency thread.
        let owned = link.discard().map(UncheckedPointer.init)
        guard !owned.isEmpty else { return }
        DispatchQueue.global(qos: .utility).async {
            for pointer in owned { natsConnection_Destroy(pointer.value) }
        }
    }

    /// The cnats connection, or `nil` before ``connect(_:onEvent:onMaxPayload:shouldRecover:commit:)``
    /// installed one. Whether operations may use it is the connection's state machine's call
    /// (``ConnectionCore/isOpen``), not this pointer's.
    @inline(__always)
    var pointer: OpaquePointer? { link.handle.load(ordering: .acquiring) }

    /// Bytes in cnats's write buffer (0 when not connected).
    var bufferedBytes: Int {
        guard let pointer else { return 0 }
        return Int(max(0, natsConnection_Buffered(pointer)))
    }

    /// The error of an operation on a connection that never connected.
    static let notConnected = NATSError(.notConnected, "the connection is not connected yet: call connect() or run() first")

    /// Connects (blocking). `onEvent` is called on cnats's callback thread for every connection
    /// event, the last one being `.closed`; `onMaxPayload` with the server's `max_payload` after
    /// every reconnect (another server may announce another limit); `shouldRecover` when the
    /// server closed the connection after an `-ERR` (see ``NativeConnectionLink``). Call once.
    ///
    /// Once cnats connected, `commit` decides (under the connection's state lock) whether the
    /// new connection becomes this object's: it calls the `install` it is given, or returns false
    /// when the connection was closed or drained meanwhile. Then the connection, never seen by
    /// anyone else, is destroyed here and this returns false.
    func connect(
        _ configuration: NATSConnectionConfiguration,
        onEvent: @escaping @Sendable (NATSConnectionEvent) -> Void,
        onMaxPayload: @escaping @Sendable (Int) -> Void,
        shouldRecover: @escaping @Sendable () -> Bool,
        commit: (_ install: () -> Void) -> Bool
    ) throws(NATSError) -> Bool {
        link.configure(configuration, onEvent: onEvent, onMaxPayload: onMaxPayload, shouldRecover: shouldRecover)
        // SendAsap writes every publish anyway; without cnats's internals the rule is off (a write
        // at once would take a flush from another thread, see flushSoon).
        if let gap = configuration.writeImmediatelyAfterIdle, !configuration.sendAsap, Self.canPublishNow {
            let clock = NativeIdleClock.process
            idleClockCountsCycles.store(clock.usesCycleCounter, ordering: .relaxed)
            idleGap.store(clock.ticks(forNanoseconds: gap.nanosecondsClamped), ordering: .relaxed)
        }
        let connection = try Self.open(
            configuration, callbacks: NativeConnectionCallbacks(onEvent: onEvent, onMaxPayload: onMaxPayload, link: link))
        let opened = UncheckedPointer(connection)
        var installed = false
        let kept = commit {
            installed = link.handle.compareExchange(expected: nil, desired: opened.value, ordering: .acquiringAndReleasing).exchanged
        }
        if kept && installed { return true }
        // Closed while connecting (or connected twice, which NATSConnection's state prevents):
        // this connection was never installed, so it is ours alone. Destroy closes it (its closed
        // callback releases the callbacks box; the link does not recover it) and frees it.
        link.markCloseRequested()
        natsConnection_Destroy(connection)
        if kept { throw NATSError(.invalidArgument, "the connection was already connected") }
        return false
    }

    /// Connects a new cnats connection whose events go to `callbacks` (blocking).
    static func open(_ configuration: NATSConnectionConfiguration, callbacks: NativeConnectionCallbacks) throws(NATSError)
        -> OpaquePointer
    {
        let options = try NativeOptions(configuration)
        // Retained for cnats: released in the closed callback, or below if connecting fails
        // (cnats calls no callback for a connection that never connected).
        callbacks.signer = options.signer
        callbacks.userJWT = options.userJWT
        let closure = Unmanaged.passRetained(callbacks).toOpaque()
        do {
            try options.setCallbacks(closure)
        } catch {
            Unmanaged<NativeConnectionCallbacks>.fromOpaque(closure).release()
            throw error
        }
        var connection: OpaquePointer?
        var refused = callbacks.unsendableSignatures.load(ordering: .relaxed)
        var status = natsConnection_Connect(&connection, options.pointer)
        // A signature the library could not send failed the attempt before it reached the
        // server; a new connection gets a new nonce, whose signature begins with a zero byte
        // once in 256 times. Three more attempts leave one connect in 2^32 failing so.
        for _ in 0..<3 where status != NATS_OK {
            let now = callbacks.unsendableSignatures.load(ordering: .relaxed)
            guard now > refused else { break }
            refused = now
            connection = nil
            status = natsConnection_Connect(&connection, options.pointer)
        }
        guard status == NATS_OK, let connection else {
            Unmanaged<NativeConnectionCallbacks>.fromOpaque(closure).release()
            let servers = configuration.servers.map(\.description).joined(separator: ", ")
            let failure = NativeStatus.error(status, "cannot connect to \(servers)")
            // cnats reports a server that wants a client certificate (or a TLS-first handshake)
            // as a protocol error or a timeout: ask the server what it wants.
            if failure.code != .tls, failure.code != .authenticationFailed,
                let explained = NativeServerProbe.explainConnectFailure(configuration)
            {
                throw explained
            }
            throw failure
        }
        return connection
    }

    /// The error for a failed publish or request: when the server closed the connection after
    /// an `-ERR`, it names the server's reason (what cnats recorded as the last error), not just
    /// "connection closed"; the link is reconnecting, so it is retriable.
    static func failure(_ status: natsStatus, _ operation: @autoclosure () -> String, on pointer: OpaquePointer) -> NATSError {
        if status == NATS_CONNECTION_CLOSED, let reason = NativeConnectionLink.serverCloseReason(pointer) {
            return NATSError(
                .serverError, "\(operation()): the server closed the connection: \(reason)", isRetriable: true,
                nativeStatus: NativeStatus.describe(status))
        }
        return NativeStatus.error(status, operation())
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

    /// Whether an application publish made now follows at least
    /// ``NATSConnectionConfiguration/writeImmediatelyAfterIdle`` without another, so that it
    /// should be written at once rather than wait up to a millisecond for cnats's flusher.
    ///
    /// cnats's flusher, once woken by a publish, sleeps 1 ms before it writes so that a burst
    /// goes out in few writes; that millisecond is the whole latency of a reply or a lone
    /// publish. A publish after a quiet spell is the first of whatever follows, so writing it at
    /// once costs one write and delays nothing; publishes close behind it are buffered and leave
    /// with the flusher's write (or with the next write made at once), so bursts still coalesce.
    /// One clock read (the cycle counter, or `clock_gettime` through the vDSO: see
    /// ``NativeIdleClock``) and three relaxed atomics per publish. Threads publishing at once may
    /// both see "idle": the cost is one extra write.
    @inline(__always)
    func publishFollowsIdle() -> Bool {
        let gap = idleGap.load(ordering: .relaxed)
        guard gap > 0 else { return false }
        let now = NativeIdleClock.now(cycleCounter: idleClockCountsCycles.load(ordering: .relaxed))
        let previous = lastPublish.load(ordering: .relaxed)
        lastPublish.store(now, ordering: .relaxed)
        return now &- previous >= gap
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
        if status != NATS_OK { throw Self.failure(status, "publishing to '\(subject)'", on: pointer) }
    }

    /// Publishes and writes the bytes to the socket from this thread (when the internals are
    /// available; a plain publish and ``flushSoon()`` otherwise). For messages whose
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
            flushSoon()
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
        if status != NATS_OK { throw Self.failure(status, "\(what) '\(subject)'", on: pointer) }
    }

    /// Publishes without headers to a subject given as NUL-terminated bytes (a reply subject kept
    /// in a payload slab), so that acknowledging a message builds no `String`. Non-blocking.
    func publish(subjectCString subject: UnsafeRawPointer, payload: UnsafeRawBufferPointer) throws(NATSError) {
        guard let pointer else { throw Self.notConnected }
        let subject = subject.assumingMemoryBound(to: CChar.self)
        let status = natsConnection_Publish(pointer, subject, payload.baseAddress, Int32(truncatingIfNeeded: payload.count))
        if status != NATS_OK { throw Self.failure(status, "publishing to '\(String(cString: subject))'", on: pointer) }
    }

    /// Publishes with headers.
    func publish(subject: String, replyTo: String?, headers: NATSHeaders, payload: UnsafeRawBufferPointer) throws(NATSError) {
        guard let pointer else { throw Self.notConnected }
        let message = try NativeMessage.makeOutgoing(subject: subject, replyTo: replyTo, headers: headers, payload: payload)
        // PublishMsg copies what it sends; the message stays ours to destroy.
        defer { NativeMessage.destroy(message) }
        let status = natsConnection_PublishMsg(pointer, message)
        if status != NATS_OK { throw Self.failure(status, "publishing to '\(subject)'", on: pointer) }
    }

    /// Whether ``publish(subject:replyPrefix:token:headers:payload:now:)`` and
    /// ``publishNow(subject:replyTo:headers:payload:)`` can write a message at once without
    /// blocking for anything but the socket: through cnats's internal publish (see
    /// `NativeInternals`). Without it, messages that should leave at once are published and
    /// ``flushSoon()`` writes them.
    static var canPublishNow: Bool { NativeInternals.isAvailable }

    /// Has cnats's buffer written promptly from a dispatch thread instead of by cnats's flusher,
    /// which sleeps 1 ms before it writes: that millisecond would be most of a request's round
    /// trip to a nearby server. Only without cnats's internals (``canPublishNow`` false), for
    /// every message that should leave at once (requests, replies, pull requests, JetStream
    /// publishes a caller waits on): a consumer confirming each ack with `ackSync` would
    /// otherwise run at a quarter of the speed. `natsConnection_FlushTimeout` writes the buffer
    /// and a PING, then waits at most 1 ms for the PONG; nothing is flushed unless connected.
    ///
    /// Non-blocking. One flush runs at a time; calls while it runs ask for one more after it, so a
    /// burst costs a write per flush and at most one thread, publishes made during a flush leave
    /// with the next one, and a request waits at most for the flush in progress.
    func flushSoon() {
        while true {
            let (exchanged, original) = flushState.compareExchange(
                expected: FlushState.idle, desired: FlushState.running, ordering: .acquiringAndReleasing)
            if exchanged {
                DispatchQueue.global(qos: .userInitiated).async { self.runFlushes() }
                return
            }
            if original == FlushState.runAgain { return }
            if flushState.compareExchange(
                expected: FlushState.running, desired: FlushState.runAgain, ordering: .acquiringAndReleasing
            ).exchanged { return }
        }
    }

    /// Flushes until no more flushes were asked for (on a dispatch thread; holds a reference to
    /// this object, so the cnats connection outlives the call).
    private func runFlushes() {
        while true {
            if let pointer, natsConnection_Status(pointer) == NATS_CONN_STATUS_CONNECTED {
                // A timeout only means the PONG is still on its way: the bytes were written.
                _ = natsConnection_FlushTimeout(pointer, 1)
            }
            promptWrites.add(1, ordering: .relaxed)
            if flushState.compareExchange(
                expected: FlushState.running, desired: FlushState.idle, ordering: .acquiringAndReleasing
            ).exchanged { return }
            flushState.store(FlushState.running, ordering: .releasing)
        }
    }

    /// Publishes a request whose reply subject is `replyPrefix` followed by `token` in decimal,
    /// built on the stack (no allocation). Non-blocking; with `now` the bytes are written to the
    /// socket from this thread (as cnats's own request does) instead of by the flusher thread up
    /// to a millisecond later, or without the internals (``canPublishNow``) by ``flushSoon()``.
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
            if now && Self.canPublishNow {
                return Result { () throws(NATSError) in
                    try writeNow(
                        on: pointer, subject: subject, replyC: reply, headers: headers, payload: payload, what: "requesting on")
                }
            }
            if headers.isEmpty {
                let data = payload.baseAddress
                let length = Int32(truncatingIfNeeded: payload.count)
                let status = subject.withCString { natsConnection_PublishRequest(pointer, $0, reply, data, length) }
                return status == NATS_OK ? .success(()) : .failure(Self.failure(status, "requesting on '\(subject)'", on: pointer))
            }
            return Result { () throws(NATSError) in
                let message = try NativeMessage.makeOutgoing(subject: subject, replyC: reply, headers: headers, payload: payload)
                // PublishMsg copies what it sends; the message stays ours to destroy.
                defer { NativeMessage.destroy(message) }
                let status = natsConnection_PublishMsg(pointer, message)
                if status != NATS_OK { throw Self.failure(status, "requesting on '\(subject)'", on: pointer) }
            }
        }
        try result.get()
        if now {
            if Self.canPublishNow { promptWrites.add(1, ordering: .relaxed) } else { flushSoon() }
        }
    }

    /// Sends a PING and waits for the PONG (blocking).
    func flush(timeoutMilliseconds: Int64) throws(NATSError) {
        guard let pointer else { throw Self.notConnected }
        try NativeStatus.check(noted(Self.flush(pointer, timeoutMilliseconds: timeoutMilliseconds, firstWait: firstFlushWait)), "flushing")
    }

    /// The first wait of ``flush(_:timeoutMilliseconds:firstWait:)`` for its PONG before it sends
    /// another PING, when nothing is known of the connection's round trip. Longer than a round trip
    /// to any server a client should use (a loaded host answers in milliseconds, another continent
    /// in about 250 ms), so a flush sends one PING unless it was stranded.
    static let flushFirstWaitMilliseconds: Int64 = 250

    /// The longest first wait: a flush that waited through a reconnect measures the reconnect as
    /// its round trip, and a stranded flush should not wait that long before its second PING.
    static let flushFirstWaitLimitMilliseconds: Int64 = 1_000

    /// The first wait of this connection's flushes: ``flushFirstWaitMilliseconds``, or twice the
    /// round trip of its last flush when that was longer (up to
    /// ``flushFirstWaitLimitMilliseconds``), so that a slow link pays the second PING once, not on
    /// every flush.
    private var firstFlushWait: Int64 {
        let learned = min(2 * lastFlushRoundTrip.load(ordering: .relaxed), Self.flushFirstWaitLimitMilliseconds)
        return max(Self.flushFirstWaitMilliseconds, learned)
    }

    /// Keeps what a flush learned: its round trip when it got its PONG, and whether it had to
    /// send a second PING.
    private func noted(_ flush: FlushOutcome) -> natsStatus {
        if flush.status == NATS_OK { lastFlushRoundTrip.store(flush.roundTripMilliseconds, ordering: .relaxed) }
        if flush.sentAgain { flushesSentAgain.add(1, ordering: .relaxed) }
        return flush.status
    }

    /// What ``flush(_:timeoutMilliseconds:firstWait:)`` did.
    struct FlushOutcome {
        var status: natsStatus
        /// From the PING that was answered to its PONG (0 unless `status` is `NATS_OK`).
        var roundTripMilliseconds: Int64 = 0
        /// Whether the first wait ended without the PONG, so a second PING was sent.
        var sentAgain = false
    }

    /// `natsConnection_FlushTimeout` for up to `timeoutMilliseconds` in all, in two waits: the
    /// first for `firstWait`, then, if its PONG has not come, a new PING and a wait for the rest
    /// of the time.
    ///
    /// Why not one wait: cnats (3.4.1, and its main branch as of 3.13) can strand a waiting
    /// flush. A flush starting while no other is pending uses the connection's one cached
    /// record for its PONG. When the PONG of flush A has arrived but A has not yet woken up
    /// (its thread waits for the connection lock), a flush B that starts then takes that same
    /// record for its own PING. If B's wait times out before its PONG (a flush of a millisecond,
    /// as ``flushSoon()`` makes), B removes and clears the record without waking anyone, and no
    /// PONG matches it any more: A sleeps until its whole timeout and reports a timeout from a
    /// healthy server. Measured with cnats alone on loopback: 37 of 20,000 flushes of 300 ms,
    /// each beside one flush of 1 ms, timed out that way; sent again after 50 ms, none did. The
    /// stranded wait ends with the first wait, and the PING sent then is answered like any other.
    ///
    /// Why two waits, not more: a wait that ends drops its PING's record, so a PONG counts only
    /// if it comes within the wait of its own PING. The second wait keeps all of the remaining
    /// time, so any round trip up to the timeout less the first wait still succeeds.
    ///
    /// cnats sends a PING without checking the write, and a flush whose PING could not be written
    /// returns at once with success. A second PING goes out when a PONG is late, which is also
    /// when a connection is being lost: success from it counts only while the connection is still
    /// connected (or draining), otherwise the flush reports `NATS_CONNECTION_DISCONNECTED` (the
    /// first PING keeps cnats's behaviour).
    static func flush(_ connection: OpaquePointer, timeoutMilliseconds: Int64, firstWait: Int64) -> FlushOutcome {
        let timeout = max(1, timeoutMilliseconds)
        // Monotonic (cnats's own waits use the wall clock): how long the second wait may take.
        let start = ContinuousClock.now
        let status = natsConnection_FlushTimeout(connection, min(timeout, max(1, firstWait)))
        guard status == NATS_TIMEOUT else {
            return FlushOutcome(status: status, roundTripMilliseconds: (ContinuousClock.now - start).millisecondsClamped)
        }
        let again = ContinuousClock.now
        let remaining = (start + .milliseconds(timeout) - again).millisecondsClamped
        guard remaining > 0 else { return FlushOutcome(status: status) }
        var outcome = FlushOutcome(status: natsConnection_FlushTimeout(connection, remaining), sentAgain: true)
        if outcome.status == NATS_OK {
            outcome.roundTripMilliseconds = (ContinuousClock.now - again).millisecondsClamped
            switch natsConnection_Status(connection) {
            case NATS_CONN_STATUS_CONNECTED, NATS_CONN_STATUS_DRAINING_SUBS, NATS_CONN_STATUS_DRAINING_PUBS: break
            default: outcome.status = NATS_CONNECTION_DISCONNECTED
            }
        }
        return outcome
    }

    /// ``flush(timeoutMilliseconds:)`` for a round trip that confirms what the server accepted.
    func confirmingFlush(timeoutMilliseconds: Int64) throws(NATSError) {
        guard let pointer else { throw Self.notConnected }
        let status = Self.confirmingFlush(pointer, timeoutMilliseconds: timeoutMilliseconds, firstWait: firstFlushWait, note: noted)
        try NativeStatus.check(status, "flushing")
    }

    /// A PING/PONG that confirms what was sent before it, asked once more after a timeout: a process
    /// that was stalled (a loaded host, a paused VM) can see its wait time out before its reader
    /// thread has read what the server sent meanwhile, such as an -ERR that closes the connection
    /// (`maximum subscriptions exceeded`). Taken as a slow answer, a refused subscription would be
    /// carried over to the recovered connection and refused again, every time. A second round trip
    /// is answered after that -ERR, so it tells.
    ///
    /// `note` sees each flush's outcome and gives its status (a connection keeps what it learned).
    static func confirmingFlush(
        _ connection: OpaquePointer, timeoutMilliseconds: Int64, firstWait: Int64 = flushFirstWaitMilliseconds,
        note: (FlushOutcome) -> natsStatus = { $0.status }
    ) -> natsStatus {
        let status = note(flush(connection, timeoutMilliseconds: timeoutMilliseconds, firstWait: firstWait))
        guard status == NATS_TIMEOUT else { return status }
        return note(flush(connection, timeoutMilliseconds: timeoutMilliseconds, firstWait: firstWait))
    }

    /// The server's reason when it refused subscribing to `subject`: cnats records the `-ERR` as
    /// the connection's last error before it processes the PONG that follows, so after a flush
    /// that went out after the SUB, a refusal of this subject is visible here.
    func subscriptionRefusal(subject: String) -> String? {
        guard let pointer else { return nil }
        var text: UnsafePointer<CChar>?
        guard natsConnection_GetLastError(pointer, &text) == NATS_NOT_PERMITTED, let text else { return nil }
        let reason = String(cString: text)
        return Self.deniedSubject(in: reason, operation: "Subscription") == subject ? reason : nil
    }

    /// The subject of a permissions violation text (`Permissions Violation for Publish to
    /// "orders.x"`, `… for Subscription to "orders.>" using queue "q"`) for `operation`.
    static func deniedSubject(in text: String, operation: String) -> String? {
        guard let range = text.firstRange(of: "Permissions Violation for \(operation) to ") else { return nil }
        var rest = text[range.upperBound...]
        if rest.first == "\"" { rest = rest.dropFirst() }
        let subject = rest.prefix { $0 != "\"" && $0 != " " && $0 != "'" }
        return subject.isEmpty ? nil : String(subject)
    }

    /// Starts draining (non-blocking): subscriptions finish their pending messages, publishes are
    /// flushed, then the connection closes and the closed callback fires.
    ///
    /// The subscriptions are drained first, one by one, and the connection's drain starts when the
    /// last one ended (see ``NativeConnectionLink/drainSubscriptions(allEnded:)``: cnats's own wait
    /// for them costs at least 100 ms). If they have not all ended by the deadline, the drain timed
    /// out: that is reported, and the connection closed, as cnats does. While cnats reconnects, the
    /// drain waits for the reconnect (until the deadline) instead of failing.
    func startDrain(timeoutMilliseconds: Int64) throws(NATSError) {
        // Marked before the pointer is read: a recovery either sees the mark or has stored the
        // connection this drains.
        link.markCloseRequested()
        guard let pointer else { throw Self.notConnected }
        let deadline = DispatchTime.now().uptimeNanoseconds &+ UInt64(max(0, timeoutMilliseconds)) &* 1_000_000
        switch natsConnection_Status(pointer) {
        case NATS_CONN_STATUS_RECONNECTING, NATS_CONN_STATUS_DISCONNECTED:
            // cnats refuses to drain while it reconnects; closing would drop the publishes its
            // reconnect buffer holds. Drained once reconnected, within the same deadline.
            _ = connectionDrainStarted.exchange(true, ordering: .acquiringAndReleasing)
            DispatchQueue.global(qos: .userInitiated).async { [weak self] in self?.drainConnectionOnceConnected(deadline: deadline) }
            return
        case NATS_CONN_STATUS_CONNECTED:
            let started = link.drainSubscriptions { [weak self] in
                guard let self else { return }
                // Not on the delivery thread that ended last: closing may wait for it.
                DispatchQueue.global(qos: .userInitiated).async { self.drainConnection(deadline: deadline, timedOut: false) }
            }
            if started {
                DispatchQueue.global(qos: .userInitiated).asyncAfter(deadline: DispatchTime(uptimeNanoseconds: deadline)) {
                    [weak self] in self?.drainConnection(deadline: deadline, timedOut: true)
                }
                return
            }
        default:
            break
        }
        try NativeStatus.check(natsConnection_DrainTimeout(pointer, timeoutMilliseconds), "draining")
    }

    /// The drain's second step, once: the connection's own drain (it flushes the publishes, then
    /// closes) when every subscription ended, or, at the deadline, a timeout and a close.
    private func drainConnection(deadline: UInt64, timedOut: Bool) {
        guard !connectionDrainStarted.exchange(true, ordering: .acquiringAndReleasing) else { return }
        if timedOut {
            closeDrain(reporting: NATSError(.timeout, "timeout waiting for subscriptions to drain; closing", isRetriable: false))
        } else {
            drainConnectionOnceConnected(deadline: deadline)
        }
    }

    /// Starts the connection's drain with the time left. cnats refuses to drain a connection that
    /// is reconnecting, and closing it then would drop the publishes its reconnect buffer holds:
    /// so this tries again every 10 ms (rescheduled, not blocking a thread) until the deadline.
    private func drainConnectionOnceConnected(deadline: UInt64) {
        guard let pointer, !natsConnection_IsClosed(pointer) else { return }
        let now = DispatchTime.now().uptimeNanoseconds
        guard now < deadline else {
            closeDrain(
                reporting: NATSError(.timeout, "timeout waiting to reconnect before flushing the publishes; closing", isRetriable: false))
            return
        }
        let status = natsConnection_DrainTimeout(pointer, max(1, Int64((deadline - now) / 1_000_000)))
        if status == NATS_OK {
            connectionDrainAccepted.store(true, ordering: .releasing)
            return
        }
        if natsConnection_IsClosed(pointer) { return }
        // cnats refuses a drain on an open connection only while it reconnects (the status may
        // read connected again already): try again.
        if status == NATS_ILLEGAL_STATE {
            DispatchQueue.global(qos: .userInitiated).asyncAfter(deadline: .now() + .milliseconds(10)) { [weak self] in
                self?.drainConnectionOnceConnected(deadline: deadline)
            }
            return
        }
        closeDrain(reporting: NativeStatus.error(status, "draining the connection after its subscriptions; closing"))
    }

    /// Ends a drain that cannot finish: `error` is reported (a `.timeout` makes
    /// ``NATSConnection/drain(timeout:)`` throw it), then the connection is closed.
    private func closeDrain(reporting error: NATSError) {
        guard let pointer, !natsConnection_IsClosed(pointer) else { return }
        link.report(error)
        natsConnection_Close(pointer)
    }

    /// Closes the connection (blocking: cnats flushes for up to 500 ms first).
    func close() {
        // Marked before the pointer is read: a recovery either sees the mark or has stored the
        // connection this closes.
        link.markCloseRequested()
        guard let pointer else { return }
        natsConnection_Close(pointer)
    }

    /// Subscribes with an asynchronous callback into `box`.
    ///
    /// `confirmed` says whether the server is taken to have the subscription at once; a caller
    /// that confirms it with a round trip passes false and reports the outcome with
    /// ``confirm(_:failed:)`` (a recovery only carries confirmed subscriptions over).
    func subscribe(
        subject: String,
        queueGroup: String?,
        limits: NATSConnectionConfiguration.SubscriptionLimits,
        box: NativeSubscriptionBox,
        confirmed: Bool = true
    ) throws(NATSError) -> NativeSubscription {
        guard let pointer else { throw Self.notConnected }
        let record = NativeSubscriptionRecord(
            subject: subject, queueGroup: queueGroup, limits: limits, box: box, link: link, confirmed: confirmed)
        record.connection = pointer
        record.pointerConnection = pointer
        // Set before cnats can end the subscription (its completion callback reads it).
        box.record = record
        guard link.register(record) else {
            _ = record.finish()
            throw NativeStatus.error(NATS_DRAINING, "subscribing to '\(subject)'")
        }
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
            _ = link.unsubscribe(record, forget: true)
            _ = record.finish()
            Unmanaged<NativeSubscriptionBox>.fromOpaque(closure).release()
            throw Self.failure(status, "subscribing to '\(subject)'", on: pointer)
        }
        let completion = natsSubscription_SetOnCompleteCB(subscription, nativeSubscriptionComplete, closure)
        if completion != NATS_OK {
            // The subscription closed before the completion callback could be attached. Its delivery
            // thread may still hold `closure`, so the box is deliberately not released (a one-off
            // leak is safer than a use after free).
            _ = link.unsubscribe(record, forget: true)
            natsSubscription_Destroy(subscription)
            throw NativeStatus.error(completion, "subscribing to '\(subject)'")
        }
        _ = natsSubscription_SetPendingLimits(
            subscription, Int32(clamping: limits.messages), Int32(clamping: limits.bytes))
        link.attach(subscription, to: record)
        return NativeSubscription(record: record, connection: self)
    }

    /// Reports how a subscription's confirming round trip ended (see
    /// ``subscribe(subject:queueGroup:limits:box:confirmed:)``). Throws the server's reason when
    /// the server closed the connection after it: the subscription is then not carried over to
    /// the recovered connection, since it is likely what the server refused.
    func confirm(_ subscription: NativeSubscription, failed: Bool) throws(NATSError) {
        let record = subscription.record
        let (reason, finish, resubscribe) = link.confirm(record, failed: failed)
        finish?.completed()
        if let resubscribe { link.resubscribe(record, on: resubscribe) }
        if let reason {
            throw NATSError(
                .serverError, "subscribing to '\(record.subject)': the server closed the connection: \(reason)",
                isRetriable: true)
        }
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
    /// Decides whether a closed connection is recovered (see ``NativeConnectionLink``).
    let link: NativeConnectionLink
    /// Signs the server's nonce for NKey and credentials authentication; set once, before the
    /// box is handed to cnats.
    var signer: NativeNKeySigner?
    /// The user JWT of a credentials file; set with `signer`.
    var userJWT: String?
    /// Signatures refused because this libnats would leave them out of CONNECT (see
    /// ``NativeNKeySigner/libraryDropsSignaturesStartingWithZero``); `open` connects again then.
    let unsendableSignatures = Atomic<Int>(0)

    init(
        onEvent: @escaping @Sendable (NATSConnectionEvent) -> Void,
        onMaxPayload: @escaping @Sendable (Int) -> Void,
        link: NativeConnectionLink
    ) {
        self.onEvent = onEvent
        self.onMaxPayload = onMaxPayload
        self.link = link
    }

    static func from(_ closure: UnsafeMutableRawPointer?) -> NativeConnectionCallbacks {
        Unmanaged<NativeConnectionCallbacks>.fromOpaque(closure!).takeUnretainedValue()
    }
}

/// The URL a cnats connection is connected to, credentials redacted (`unknown` if none).
func nativeConnectedURL(_ connection: OpaquePointer?) -> String {
    guard let connection else { return "unknown" }
    var buffer = [CChar](repeating: 0, count: 512)
    guard natsConnection_GetConnectedUrl(connection, &buffer, buffer.count) == NATS_OK else { return "unknown" }
    return NATSServerURL.redact(buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) })
}

let nativeDisconnected: natsConnectionHandler = { connection, closure in
    let callbacks = NativeConnectionCallbacks.from(closure)
    // Requests in flight fail before anyone hears of the disconnection, so that a listener
    // reacting to it finds them settled. Not when the server closed the connection after an
    // `-ERR`: the closed callback that follows fails them naming the server's reason.
    if connection.map({ NativeConnectionLink.serverCloseReason($0) == nil }) ?? true {
        callbacks.link.connectionDropped()
    }
    callbacks.onEvent(.disconnected)
}

let nativeReconnected: natsConnectionHandler = { connection, closure in
    let callbacks = NativeConnectionCallbacks.from(closure)
    // Read the new server's limit from the connection cnats hands us, before anyone hears of the
    // reconnect.
    if let connection {
        let limit = natsConnection_GetMaxPayload(connection)
        if limit > 0 { callbacks.onMaxPayload(Int(limit)) }
    }
    callbacks.onEvent(.reconnected(server: nativeConnectedURL(connection)))
}

let nativeClosed: natsConnectionHandler = { connection, closure in
    // The last callback cnats makes for a connection: release the box retained at connect.
    let callbacks = Unmanaged<NativeConnectionCallbacks>.fromOpaque(closure!).takeRetainedValue()
    // Closed by the server after an -ERR, not by the application: the link reconnects, and the
    // connection is not closed for its users.
    if let connection, callbacks.link.connectionClosed(connection) { return }
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
    if status == NATS_NOT_PERMITTED {
        // `Permissions Violation for Publish to "subject"`: cnats keeps the connection open.
        // Requests waiting on that subject fail now rather than at their timeout.
        if let subject = NativeConnection.deniedSubject(in: text, operation: "Publish") {
            callbacks.link.publishDenied(subject: subject, reason: text)
        }
        callbacks.onEvent(.error(NATSError(
            .permissionDenied, "the server refused: \(text); the connection stays open",
            nativeStatus: NativeStatus.describe(status))))
        return
    }
    callbacks.onEvent(.error(NativeStatus.error(status, "asynchronous error (\(text))")))
}

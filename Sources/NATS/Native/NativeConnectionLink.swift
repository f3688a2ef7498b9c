import CNATS
import Dispatch
import Synchronization

/// What a ``NativeConnection`` shares with the callbacks of its cnats connections: the current
/// `natsConnection`, the subscriptions to carry over, and whether closing was asked for.
///
/// It exists for one cnats behaviour (cnats 3.4.1, `conn.c` `natsConn_processErr`): on an `-ERR`
/// from the server that is not a permissions violation, an authorization error or a stale
/// connection (for example `maximum control line exceeded`, `maximum subscriptions exceeded`,
/// `Unknown Protocol Operation`), cnats closes the connection for good instead of reconnecting.
/// One call's bad input would then leave the connection, and everything built on it, unusable.
/// So when a connection the application did not close was closed after such an error, the link
/// connects a new cnats connection with the same options, subscribes every live subscription
/// again (as cnats's own reconnect does) and reports `.reconnected`; ``NativeConnection`` keeps
/// the same object. cnats's own reconnects (stale connection, lost socket) are untouched, and a
/// connection cnats closed for another reason (reconnect attempts used up, credentials refused
/// twice) stays closed.
///
/// The callbacks hold the link, not the ``NativeConnection``, so that dropping the connection
/// still closes it (the link never keeps it alive).
final class NativeConnectionLink: @unchecked Sendable {
    // @unchecked: `handle` is atomic; everything else is behind `state`; cnats pointers are
    // thread-safe.

    /// The current cnats connection: set by the first connect and replaced only by a recovery.
    let handle = Atomic<OpaquePointer?>(nil)
    private let state = Mutex(State())

    private struct State: ~Copyable {
        var configuration: NATSConnectionConfiguration?
        var onEvent: (@Sendable (NATSConnectionEvent) -> Void)?
        var onMaxPayload: (@Sendable (Int) -> Void)?
        /// Asks the connection's state machine whether a connection the server closed may be
        /// recovered (not once the application closes or drains it).
        var shouldRecover: (@Sendable () -> Bool)?
        /// Connections a recovery replaced. Never destroyed before the link is discarded: a
        /// publish that loaded the old pointer may still be using it.
        var retired: [OpaquePointer] = []
        var records: [ObjectIdentifier: NativeSubscriptionRecord] = [:]
        /// The application closed or drained the connection.
        var closeRequested = false
        /// The owning ``NativeConnection`` was released; its pointers are destroyed.
        var discarded = false
        /// A recovery is connecting.
        var recovering = false
        /// The connection is closed for good: nothing is carried over any more.
        var gaveUp = false
        /// A recovered connection whose resubscriptions the server has not confirmed yet: if the
        /// server closes it too, they are what it refused, and the link gives up instead of looping.
        var unconfirmed: UncheckedPointer?
        /// The subscriptions are being drained (see ``drainSubscriptions(allEnded:)``):
        /// no new one is made.
        var drainingSubscriptions = false
        /// Called once no subscription is left while draining.
        var drainWaiter: (@Sendable () -> Void)?

        /// The drain's waiter, once the last subscription ended (taken: it runs once).
        mutating func takeDrainWaiterIfAllEnded() -> (@Sendable () -> Void)? {
            guard records.isEmpty, let waiter = drainWaiter else { return nil }
            drainWaiter = nil
            return waiter
        }

        /// Marks the connection closed for good and returns the boxes waiting for a recovery, to
        /// finish.
        mutating func giveUp() -> [NativeSubscriptionBox] {
            gaveUp = true
            recovering = false
            var finish: [NativeSubscriptionBox] = []
            for (id, record) in records where record.phase == .detached {
                records[id] = nil
                if let box = record.finish() { finish.append(box) }
            }
            return finish
        }
    }

    /// What to do with a subscription whose cnats subscription ended.
    enum EndAction {
        /// Finish the box: no message follows.
        case finish
        /// Keep the box: a recovery subscribes it again.
        case keep
        /// A recovery already replaced the connection: subscribe again on it now.
        case resubscribe(OpaquePointer)
    }

    /// Remembers what a recovery needs (called by the first connect, before cnats can call back).
    func configure(
        _ configuration: NATSConnectionConfiguration,
        onEvent: @escaping @Sendable (NATSConnectionEvent) -> Void,
        onMaxPayload: @escaping @Sendable (Int) -> Void,
        shouldRecover: @escaping @Sendable () -> Bool
    ) {
        state.withLock { state in
            state.configuration = configuration
            state.onEvent = onEvent
            state.onMaxPayload = onMaxPayload
            state.shouldRecover = shouldRecover
        }
    }

    /// Records that the application closes or drains the connection: its close is not recovered.
    func markCloseRequested() {
        state.withLock { $0.closeRequested = true }
    }

    /// The owner is gone: returns every cnats connection to destroy; a recovery in progress
    /// destroys what it connects.
    func discard() -> [OpaquePointer] {
        state.withLock { state in
            state.discarded = true
            state.closeRequested = true
            var pointers = state.retired
            state.retired.removeAll()
            if let current = handle.load(ordering: .acquiring) { pointers.append(current) }
            return pointers
        }
    }

    // MARK: Draining

    /// Starts draining every subscription itself (each stops receiving, hands over what it holds
    /// and ends, as cnats's connection drain makes them do) and calls `allEnded` once the last one
    /// ended (on that subscription's delivery thread), or at once when there is none. cnats puts no
    /// deadline on them: the caller's own ends the drain.
    ///
    /// cnats's connection drain waits for its subscriptions by checking every 100 ms (`conn.c`
    /// `_flushAndDrain`), so every drain of a connection with a subscription took at least 100 ms:
    /// each command of a command-line tool, each graceful shutdown. Drained here first, they end
    /// on their own completion callbacks, and the connection's drain that follows finds none.
    ///
    /// Returns false, having started nothing, while a subscription is not simply active (a
    /// recovery is carrying subscriptions over): the caller drains through cnats then.
    func drainSubscriptions(allEnded: @escaping @Sendable () -> Void) -> Bool {
        let waiter = state.withLock { state -> (@Sendable () -> Void)?? in
            guard !state.recovering, state.records.values.allSatisfy({ $0.phase == .active }) else { return .none }
            state.drainingSubscriptions = true
            state.drainWaiter = allEnded
            // Under the lock: a subscription released meanwhile is destroyed only after its record
            // leaves `records`, which needs this lock. Draining never calls back synchronously. A
            // record without a pointer yet is drained by `attach`.
            for record in state.records.values where !record.unsubscribed {
                if let pointer = record.pointer { Self.drain(pointer) }
            }
            return .some(state.takeDrainWaiterIfAllEnded())
        }
        guard let waiter else { return false }
        waiter?()
        return true
    }

    /// Drains one cnats subscription with no timeout of cnats's: the connection's deadline decides
    /// (see ``NativeConnection/startDrain(timeoutMilliseconds:)``). With one, cnats would close a
    /// subscription still handing over at its deadline and the drain could end as if complete.
    private static func drain(_ subscription: OpaquePointer) {
        _ = natsSubscription_DrainTimeout(subscription, 0)
    }

    /// Reports an error on the connection's events (as cnats's asynchronous errors are).
    func report(_ error: NATSError) {
        let onEvent = state.withLock { $0.onEvent }
        onEvent?(.error(error))
    }

    // MARK: Subscriptions

    /// Registers a subscription to carry over (before cnats may end it). Returns false, registering
    /// nothing, once the subscriptions are being drained (checked under the same lock as the drain
    /// sets it, so a subscription is either refused or drained).
    func register(_ record: NativeSubscriptionRecord) -> Bool {
        state.withLock { state in
            if state.drainingSubscriptions { return false }
            state.records[ObjectIdentifier(record)] = record
            return true
        }
    }

    /// Runs `body` with the record's current cnats subscription under the lock (so that it is not
    /// replaced meanwhile).
    func withPointer<Result>(of record: NativeSubscriptionRecord, _ body: (OpaquePointer?) -> Result) -> Result {
        state.withLock { _ in body(record.pointer) }
    }

    /// The application unsubscribed (or released) the subscription: it is not carried over.
    /// Returns the box to finish at once when no cnats subscription would finish it (the
    /// subscription waits for a recovery).
    func unsubscribe(_ record: NativeSubscriptionRecord, forget: Bool) -> (pointer: OpaquePointer?, finish: NativeSubscriptionBox?) {
        let (result, waiter) = state.withLock {
            state -> ((pointer: OpaquePointer?, finish: NativeSubscriptionBox?), (@Sendable () -> Void)?) in
            record.unsubscribed = true
            if forget {
                record.forgotten = true
                state.records[ObjectIdentifier(record)] = nil
            }
            if record.phase == .detached {
                state.records[ObjectIdentifier(record)] = nil
                return ((nil, record.finish()), state.takeDrainWaiterIfAllEnded())
            }
            return ((record.phase == .active ? record.pointer : nil, nil), state.takeDrainWaiterIfAllEnded())
        }
        waiter?()
        return result
    }

    /// A cnats subscription of `record` ended (its completion callback, on its delivery thread).
    func subscriptionEnded(_ record: NativeSubscriptionRecord) -> EndAction {
        let (action, waiter) = state.withLock { state -> (EndAction, (@Sendable () -> Void)?) in
            let connection = record.connection
            let carry = !record.unsubscribed && !state.discarded && !state.closeRequested && !state.gaveUp
                && connection.map { Self.serverCloseReason($0) != nil } == true
            guard carry else {
                state.records[ObjectIdentifier(record)] = nil
                _ = record.finish()
                return (.finish, state.takeDrainWaiterIfAllEnded())
            }
            let current = handle.load(ordering: .acquiring)
            if !state.recovering, let current, current != connection, record.confirmed {
                record.phase = .resubscribing
                return (.resubscribe(current), nil)
            }
            record.phase = .detached
            return (.keep, nil)
        }
        waiter?()
        return action
    }

    /// The subscribe call's confirming round trip ended. `failed` when it did not come back.
    /// Returns the server's reason when the server closed the connection after this
    /// subscription (it is then not carried over: it is likely what the server refused), the box
    /// to finish when no cnats subscription will, and the connection to subscribe again on when a
    /// recovery left this subscription waiting for the answer.
    func confirm(_ record: NativeSubscriptionRecord, failed: Bool)
        -> (reason: String?, finish: NativeSubscriptionBox?, resubscribe: OpaquePointer?)
    {
        state.withLock { state in
            if failed, let connection = record.pointerConnection, let reason = Self.serverCloseReason(connection) {
                record.unsubscribed = true
                state.records[ObjectIdentifier(record)] = nil
                return (reason, record.phase == .detached ? record.finish() : nil, nil)
            }
            record.confirmed = true
            if record.phase == .detached, !state.recovering, let current = handle.load(ordering: .acquiring),
                current != record.connection
            {
                record.phase = .resubscribing
                return (nil, nil, current)
            }
            return (nil, nil, nil)
        }
    }

    /// Stores the cnats subscription made for `record` (unless a recovery already replaced it).
    func attach(_ subscription: OpaquePointer, to record: NativeSubscriptionRecord) {
        state.withLock { state in
            if record.pointer == nil {
                record.pointer = subscription
                // Registered before the drain began, subscribed after it went through the
                // subscriptions: drained now.
                if state.drainingSubscriptions && !record.unsubscribed { Self.drain(subscription) }
            } else {
                record.retiredPointers.append(subscription)
            }
        }
    }

    /// Subscribes `record`'s box again on `connection` (a recovered connection), without blocking.
    func resubscribe(_ record: NativeSubscriptionRecord, on connection: OpaquePointer) {
        guard let box = record.box else { return }
        // Retained for cnats: released by the completion callback, or at once if this fails.
        let closure = Unmanaged.passRetained(box).toOpaque()
        var subscription: OpaquePointer?
        let status = record.subject.withCString { subject in
            guard let queueGroup = record.queueGroup else {
                return natsConnection_Subscribe(&subscription, connection, subject, nativeDeliver, closure)
            }
            return queueGroup.withCString {
                natsConnection_QueueSubscribe(&subscription, connection, subject, $0, nativeDeliver, closure)
            }
        }
        guard status == NATS_OK, let subscription,
            natsSubscription_SetOnCompleteCB(subscription, nativeSubscriptionComplete, closure) == NATS_OK
        else {
            if subscription == nil { Unmanaged<NativeSubscriptionBox>.fromOpaque(closure).release() }
            // With a subscription whose completion callback could not be set, the box is not
            // released (its delivery thread may hold it), as in NativeConnection.subscribe.
            let finish = state.withLock { state -> NativeSubscriptionBox? in
                state.records[ObjectIdentifier(record)] = nil
                return record.finish()
            }
            finish?.completed()
            return
        }
        _ = natsSubscription_SetPendingLimits(
            subscription, Int32(clamping: record.limits.messages), Int32(clamping: record.limits.bytes))
        let (unsubscribed, forgotten) = state.withLock { _ -> (Bool, Bool) in
            if record.forgotten { return (true, true) }
            if let old = record.pointer { record.retiredPointers.append(old) }
            record.pointer = subscription
            record.pointerConnection = connection
            record.connection = connection
            record.phase = .active
            return (record.unsubscribed, false)
        }
        // Unsubscribed while this ran: the completion callback finishes the box. Released
        // meanwhile: nobody else will destroy this subscription (Destroy also unsubscribes).
        if forgotten {
            natsSubscription_Destroy(subscription)
        } else if unsubscribed {
            _ = natsSubscription_Unsubscribe(subscription)
        }
    }

    // MARK: Connection closed

    /// The server's reason when `connection` was closed by cnats after an `-ERR` (cnats records
    /// the server's text as the connection's last error, status `NATS_ERR`); `nil` otherwise.
    static func serverCloseReason(_ connection: OpaquePointer) -> String? {
        guard natsConnection_IsClosed(connection) else { return nil }
        var text: UnsafePointer<CChar>?
        // The text lives in the connection: copied at once.
        guard natsConnection_GetLastError(connection, &text) == NATS_ERR else { return nil }
        let reason = text.map { String(cString: $0) } ?? ""
        return reason.isEmpty ? "server error" : reason
    }

    /// cnats closed `connection` (its closed callback). Returns true when a recovery starts, in
    /// which case no `.closed` event is reported.
    func connectionClosed(_ connection: OpaquePointer) -> Bool {
        let closed = UncheckedPointer(connection)
        let decision = state.withLock { state -> (reason: String?, finish: [NativeSubscriptionBox]) in
            let reason = Self.serverCloseReason(closed.value)
            let refusedAgain = state.unconfirmed?.value == closed.value
            // The state machine is asked last and under this lock (lock order: link, then the
            // connection's state; the state never calls the link under its lock): it refuses once
            // the application closes or drains, even before that close reaches cnats.
            if let reason, !state.discarded, !state.closeRequested, !refusedAgain,
                handle.load(ordering: .acquiring) == closed.value, state.configuration != nil,
                state.shouldRecover?() == true
            {
                state.recovering = true
                return (reason, [])
            }
            return (nil, state.giveUp())
        }
        for box in decision.finish { box.completed() }
        guard let reason = decision.reason else { return false }
        // What is in flight now was lost with this connection.
        let (onEvent, boxes) = state.withLock { state in (state.onEvent, state.records.values.compactMap(\.box)) }
        for box in boxes { box.connectionLost(reason: reason) }
        onEvent?(.error(NATSError(
            .serverError, "the server closed the connection: \(reason); reconnecting", isRetriable: true)))
        DispatchQueue.global(qos: .userInitiated).async { self.recover(reason: reason, attempt: 1) }
        return true
    }

    /// Connects a new cnats connection (blocking; on a dispatch thread), then carries the
    /// subscriptions over; gives up after the configured reconnect attempts.
    private func recover(reason: String, attempt: Int) {
        let (configuration, onEvent, onMaxPayload, stop) = state.withLock {
            ($0.configuration, $0.onEvent, $0.onMaxPayload, $0.discarded || $0.closeRequested)
        }
        guard let configuration, let onEvent, let onMaxPayload else { return }
        if stop {
            // Closed or released while waiting to retry: closed for good.
            notifyRecovered()
            let finish = state.withLock { $0.giveUp() }
            for box in finish { box.completed() }
            onEvent(.closed)
            return
        }
        let connection: OpaquePointer
        do {
            connection = try NativeConnection.open(
                configuration, callbacks: NativeConnectionCallbacks(onEvent: onEvent, onMaxPayload: onMaxPayload, link: self))
        } catch {
            let attempts: Int
            switch configuration.reconnect.maxAttempts {
            case .unlimited: attempts = .max
            case .limited(let limit): attempts = max(1, limit)
            }
            let stop = state.withLock { $0.discarded || $0.closeRequested }
            if attempt < attempts && !stop {
                let wait = max(0, configuration.reconnect.wait.millisecondsClamped)
                DispatchQueue.global(qos: .userInitiated).asyncAfter(deadline: .now() + .milliseconds(Int(wait))) {
                    self.recover(reason: reason, attempt: attempt + 1)
                }
                return
            }
            notifyRecovered()
            let finish = state.withLock { $0.giveUp() }
            for box in finish { box.completed() }
            onEvent(.closed)
            return
        }
        let recovered = UncheckedPointer(connection)
        let outcome = state.withLock { state -> (carried: [NativeSubscriptionRecord], keep: Bool) in
            if state.discarded || state.closeRequested { return ([], false) }
            if let old = handle.load(ordering: .acquiring) { state.retired.append(old) }
            handle.store(recovered.value, ordering: .releasing)
            state.recovering = false
            state.unconfirmed = recovered
            var carried: [NativeSubscriptionRecord] = []
            for record in state.records.values where record.phase == .detached && record.confirmed {
                record.phase = .resubscribing
                carried.append(record)
            }
            return (carried, true)
        }
        guard outcome.keep else {
            // Closed or released meanwhile: this connection's closed callback reports `.closed`
            // (the link no longer recovers), and destroying it here is the only reference.
            let finish = state.withLock { $0.giveUp() }
            for box in finish { box.completed() }
            natsConnection_Destroy(connection)
            return
        }
        for record in outcome.carried { resubscribe(record, on: connection) }
        let limit = natsConnection_GetMaxPayload(connection)
        if limit > 0 { onMaxPayload(Int(limit)) }
        // A PING/PONG: once it is back, the server accepted the subscriptions carried over.
        // Refused again only if the server closed this connection too; a slow answer is no refusal.
        let timeout = configuration.connectTimeout.millisecondsClamped
        if NativeConnection.confirmingFlush(connection, timeoutMilliseconds: timeout) == NATS_OK
            || Self.serverCloseReason(connection) == nil
        {
            state.withLock { state in
                if state.unconfirmed?.value == recovered.value { state.unconfirmed = nil }
            }
        }
        onEvent(.reconnected(server: nativeConnectedURL(connection)))
        notifyRecovered()
    }

    /// Tells every live subscription's box that the recovery ended (request multiplexers now
    /// fail the requests that were in flight when the server closed the old connection: their
    /// replies are lost). After the recovery, so that a caller that retries at once finds a
    /// working connection.
    /// cnats reported the connection dropped: tells every live subscription's box (see
    /// ``NativeSubscriptionBox/connectionDropped()``).
    /// Not when the application closes or drains: its requests then end as closed.
    func connectionDropped() {
        let boxes = state.withLock { state in
            state.discarded || state.closeRequested ? [] : state.records.values.compactMap(\.box)
        }
        for box in boxes { box.connectionDropped() }
    }

    /// The server refused a publish to `subject`: tells every live subscription's box (see
    /// ``NativeSubscriptionBox/publishDenied(subject:reason:)``).
    func publishDenied(subject: String, reason: String) {
        let boxes = state.withLock { state in state.records.values.compactMap(\.box) }
        for box in boxes { box.publishDenied(subject: subject, reason: reason) }
    }

    private func notifyRecovered() {
        let boxes = state.withLock { state in state.records.values.compactMap(\.box) }
        for box in boxes { box.connectionRecovered() }
    }
}

/// A subscription as the link carries it over: what to subscribe again and the box that
/// receives. Its mutable fields are only touched under the link's lock.
final class NativeSubscriptionRecord: @unchecked Sendable {
    // @unchecked: the vars are guarded by the owning link's mutex.
    enum Phase {
        /// A cnats subscription delivers into the box.
        case active
        /// The cnats subscription ended with a connection the server closed; a recovery
        /// subscribes the box again.
        case detached
        /// Being subscribed again.
        case resubscribing
        /// The box was finished; nothing follows.
        case finished
    }

    let subject: String
    let queueGroup: String?
    let limits: NATSConnectionConfiguration.SubscriptionLimits
    let link: NativeConnectionLink
    /// The receiving box; `nil` once finished (the box refers to this record: the cycle ends here).
    var box: NativeSubscriptionBox?
    /// The current cnats subscription and the connection it belongs to.
    var pointer: OpaquePointer?
    var pointerConnection: OpaquePointer?
    /// The connection the subscription lives on (or lived on, while detached).
    var connection: OpaquePointer?
    /// Replaced cnats subscriptions: destroyed with the record's owner.
    var retiredPointers: [OpaquePointer] = []
    var phase = Phase.active
    var unsubscribed = false
    /// The owning ``NativeSubscription`` was released (it destroyed the pointers it knew).
    var forgotten = false
    /// Whether the server is known to have accepted the subscription (its subscribe call's
    /// round trip came back, or it was made without one). Only confirmed subscriptions are carried
    /// over: one the server closed the connection for is not sent again.
    var confirmed: Bool

    init(
        subject: String, queueGroup: String?, limits: NATSConnectionConfiguration.SubscriptionLimits,
        box: NativeSubscriptionBox, link: NativeConnectionLink, confirmed: Bool
    ) {
        self.subject = subject
        self.queueGroup = queueGroup
        self.limits = limits
        self.box = box
        self.link = link
        self.confirmed = confirmed
    }

    /// Marks the record finished and returns its box to finish (once).
    func finish() -> NativeSubscriptionBox? {
        phase = .finished
        defer { box = nil }
        return box
    }
}

/// Where a connection is in its life. Raw values are mirrored into an atomic for the hot path.
enum ConnectionPhase: UInt8, Sendable, Equatable, CustomStringConvertible {
    /// Created, never connected (or the last connect failed): `connect()` may be called.
    case idle
    /// `connect()` is running.
    case connecting
    /// Connected (cnats may be reconnecting underneath, or the link recovering).
    case connected
    /// `drain()` started; cnats closes the connection when it is done.
    case draining
    /// `close()` asked cnats to close; its closed callback ends this.
    case closing
    /// Closed for good.
    case closed

    var description: String {
        switch self {
        case .idle: "idle"
        case .connecting: "connecting"
        case .connected: "connected"
        case .draining: "draining"
        case .closing: "closing"
        case .closed: "closed"
        }
    }
}

/// What operations on the connection may do, as the hot path reads it (one atomic byte).
enum ConnectionAvailability: UInt8, Sendable {
    /// Not connected yet: operations fail with `.notConnected`.
    case notConnected
    /// Connected or draining: operations go to cnats.
    case open
    /// Closing or closed, or asked to close while connecting: operations fail with
    /// `.connectionClosed`.
    case closed
}

/// The one state of a ``NATSConnection``: its phase, the event listeners and the tasks waiting for
/// it to close. Every change goes through a mutating method here (called under the connection's
/// one `Mutex`), which returns what the caller must do outside the lock: close or destroy the
/// native connection, yield events, finish listeners, resume waiters.
///
/// The cnats connection pointer is installed only by ``connectSucceeded()`` returning
/// `.connected`, so a connection closed while connecting never publishes anything: the connect's
/// completion destroys what it made.
///
/// Generic over the waiter and listener types so that its transitions can be tested without
/// continuations; ``ConnectionCore`` uses checked continuations and `AsyncStream` continuations.
struct ConnectionStateMachine<Waiter, Listener>: ~Copyable {
    /// Why a connection that is still connecting must end closed.
    enum StopRequest: Equatable, Sendable {
        /// `close()` (or releasing the connection).
        case close
        /// `drain()`: with nothing received or published yet, the same as a close.
        case drain
        /// cnats closed the connection it was making before `connect()` completed.
        case nativeClosed
    }

    /// The listeners and waiters to end when the connection closes.
    struct Finish {
        var listeners: [Listener]
        var waiters: [Waiter]
    }

    private(set) var phase: ConnectionPhase = .idle
    /// Set while ``phase`` is `.connecting` and something asked it to end closed.
    private(set) var stopRequest: StopRequest?
    /// The link is recovering a connection the server closed after an `-ERR` (see
    /// `NativeConnectionLink`); `.reconnected` or `.closed` ends it.
    private(set) var recovering = false
    /// cnats reported a disconnection and no reconnection yet (it is reconnecting).
    private(set) var disconnected = false
    /// cnats reported a timeout while draining: `drain()` throws it.
    private(set) var drainTimedOut = false
    private var listeners: [Int: Listener] = [:]
    private var nextListenerID = 0
    private var closeWaiters: [Waiter] = []

    init() {}

    /// What operations may do now (mirrored for the hot path).
    var availability: ConnectionAvailability {
        switch phase {
        case .idle: .notConnected
        case .connecting: stopRequest == nil ? .notConnected : .closed
        case .connected, .draining: .open
        case .closing, .closed: .closed
        }
    }

    /// Whether a disconnection now is the application's doing (close, drain, release), so not
    /// reported as a failure.
    var isStopping: Bool {
        switch phase {
        case .idle, .connected: false
        case .connecting: stopRequest != nil
        case .draining, .closing, .closed: true
        }
    }

    // MARK: Connecting

    /// What `connect()` may do.
    enum ConnectStart: Sendable {
        /// Connect (the phase is now `.connecting`).
        case proceed
        /// Do not: the error says why.
        case reject(NATSError)
    }

    /// `connect()` was called.
    mutating func connectRequested() -> ConnectStart {
        switch phase {
        case .idle:
            phase = .connecting
            stopRequest = nil
            return .proceed
        case .closing, .closed:
            return .reject(NATSError(.connectionClosed, "connect() called on a connection that is \(phase); make a new NATSConnection"))
        case .connecting, .connected, .draining:
            return .reject(NATSError(.invalidArgument, "connect() called on a connection that is \(phase), not new"))
        }
    }

    /// What to do with the cnats connection `connect()` just made.
    enum ConnectSucceeded: Sendable {
        /// Install it: the phase is `.connected`.
        case connected
        /// Destroy it (it was never installed), then call ``connectAbandoned()``.
        case abandon
    }

    /// cnats connected.
    mutating func connectSucceeded() -> ConnectSucceeded {
        guard phase == .connecting, stopRequest == nil else { return .abandon }
        phase = .connected
        return .connected
    }

    /// The connection made by a connect that was asked to stop has been destroyed: closed for
    /// good. Returns what to finish and the error `connect()` throws.
    mutating func connectAbandoned() -> (finish: Finish, error: NATSError) {
        let reason = stopRequest
        return (close(), Self.stoppedWhileConnecting(reason, failure: nil))
    }

    /// What follows a failed connect.
    enum ConnectFailed {
        /// Back to `.idle`: `connect()` may be called again; throw the failure.
        case idle
        /// Asked to stop meanwhile: closed for good; finish, and throw `error`.
        case closed(Finish, error: NATSError)
    }

    /// cnats could not connect.
    mutating func connectFailed(_ failure: NATSError) -> ConnectFailed {
        guard phase == .connecting else { return .idle }
        guard let reason = stopRequest else {
            phase = .idle
            return .idle
        }
        return .closed(close(), error: Self.stoppedWhileConnecting(reason, failure: failure))
    }

    private static func stoppedWhileConnecting(_ reason: StopRequest?, failure: NATSError?) -> NATSError {
        let why: String
        switch reason {
        case .drain: why = "drained while connecting"
        case .nativeClosed: why = "the connection closed while connecting"
        case .close, nil: why = "closed while connecting"
        }
        if let failure { return NATSError(.connectionClosed, "\(why) (connecting had failed: \(failure.message))") }
        return NATSError(.connectionClosed, "\(why); the connection it made was closed")
    }

    // MARK: Closing and draining

    /// What `close()` must do.
    enum CloseAction {
        /// Nothing: already closed.
        case none
        /// Never connected: closed now; finish these.
        case finish(Finish)
        /// Close the native connection, then wait until closed.
        case closeNative
        /// Wait until closed (a connect, close or drain in progress ends it).
        case wait
    }

    /// `close()` was called (or cancellation).
    mutating func closeRequested() -> CloseAction {
        switch phase {
        case .idle:
            return .finish(close())
        case .connecting:
            if stopRequest != .nativeClosed { stopRequest = .close }
            return .wait
        case .connected, .draining:
            phase = .closing
            return .closeNative
        case .closing:
            return .wait
        case .closed:
            return .none
        }
    }

    /// What `drain()` must do.
    enum DrainAction {
        /// Nothing: already closed.
        case none
        /// Never connected: closed now; finish these.
        case finish(Finish)
        /// Start cnats's drain, then wait until closed.
        case startDrain
        /// Wait until closed.
        case wait
    }

    /// `drain()` was called (or graceful shutdown).
    mutating func drainRequested() -> DrainAction {
        switch phase {
        case .idle:
            return .finish(close())
        case .connecting:
            if stopRequest == nil { stopRequest = .drain }
            return .wait
        case .connected:
            phase = .draining
            return .startDrain
        case .draining, .closing:
            return .wait
        case .closed:
            return .none
        }
    }

    /// cnats refused to start draining for another reason than already closing: close instead.
    mutating func drainFailed() -> CloseAction {
        guard phase == .draining else { return phase == .closed ? .none : .wait }
        phase = .closing
        return .closeNative
    }

    /// The last reference to the connection was dropped: its native connection is destroyed
    /// next (or never existed). Returns what to finish when there was none.
    mutating func released() -> Finish? {
        switch phase {
        case .idle:
            return close()
        case .connecting:
            // Not reachable (connect() holds the connection); treated as a close.
            stopRequest = .close
            return nil
        case .connected, .draining:
            phase = .closing
            return nil
        case .closing, .closed:
            return nil
        }
    }

    // MARK: Native events

    /// What to do with an event of the native connection.
    struct EventAction {
        /// Yield the event to these.
        var listeners: [Listener] = []
        /// The connection closed: finish these (the event is then `.closed`).
        var finish: Finish?
        /// The event arrived after the connection closed (or for a connection being abandoned)
        /// and is ignored.
        var ignored = false
        /// A disconnection the application caused (close, drain, release).
        var expected = false
    }

    /// An event from cnats's callbacks or the link, or `.connected` after ``connectSucceeded()``.
    mutating func received(_ event: NATSConnectionEvent) -> EventAction {
        if phase == .closed { return EventAction(ignored: true, expected: true) }
        // Events of a connection that will be abandoned are not the application's business.
        let abandoning = phase == .connecting && stopRequest != nil
        var action = EventAction(expected: isStopping)
        switch event {
        case .closed:
            switch phase {
            case .idle:
                action.ignored = true
            case .connecting:
                // The connect's completion destroys what it made and finishes.
                if stopRequest == nil { stopRequest = .nativeClosed }
                action.ignored = true
            case .connected, .draining, .closing:
                action.finish = close()
            case .closed:
                action.ignored = true
            }
            return action
        case .connected:
            guard phase == .connected else {
                action.ignored = true
                return action
            }
        case .reconnected:
            recovering = false
            disconnected = false
        case .error(let error):
            if error.code == .timeout, phase == .draining { drainTimedOut = true }
        case .disconnected:
            disconnected = true
        case .discoveredServers, .lameDuckMode, .slowConsumer:
            break
        }
        if abandoning {
            action.ignored = true
        } else {
            action.listeners = Array(listeners.values)
        }
        return action
    }

    /// The link found the connection closed by the server after an `-ERR` and asks whether to
    /// connect again. Only a connection the application still uses is recovered.
    mutating func recoveryRequested() -> Bool {
        guard phase == .connected else { return false }
        recovering = true
        return true
    }

    // MARK: Listeners and waiters

    /// Adds an event listener; `nil` when closed (the caller ends it at once).
    mutating func addListener(_ listener: Listener) -> Int? {
        guard phase != .closed else { return nil }
        let id = nextListenerID
        nextListenerID += 1
        listeners[id] = listener
        return id
    }

    /// Removes a listener that ended (its consumer stopped).
    mutating func removeListener(_ id: Int) {
        listeners[id] = nil
    }

    /// Adds a task waiting for the close; false when closed (the caller resumes it at once).
    mutating func addCloseWaiter(_ waiter: Waiter) -> Bool {
        guard phase != .closed else { return false }
        closeWaiters.append(waiter)
        return true
    }

    /// Closed for good: takes every listener and waiter, once.
    private mutating func close() -> Finish {
        phase = .closed
        stopRequest = nil
        recovering = false
        let finish = Finish(listeners: Array(listeners.values), waiters: closeWaiters)
        listeners.removeAll()
        closeWaiters.removeAll()
        return finish
    }
}

extension ConnectionStateMachine.Finish: Sendable where Waiter: Sendable, Listener: Sendable {}
extension ConnectionStateMachine.EventAction: Sendable where Waiter: Sendable, Listener: Sendable {}
extension ConnectionStateMachine.CloseAction: Sendable where Waiter: Sendable, Listener: Sendable {}
extension ConnectionStateMachine.DrainAction: Sendable where Waiter: Sendable, Listener: Sendable {}
extension ConnectionStateMachine.ConnectFailed: Sendable where Waiter: Sendable, Listener: Sendable {}

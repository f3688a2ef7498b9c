import Logging
import Metrics
import Synchronization

/// The state a connection shares with cnats's callback thread.
///
/// It is separate from ``NATSConnection`` so that the callbacks (which cnats keeps alive until the
/// connection closes) do not keep the public object alive: dropping the last reference to a
/// `NATSConnection` closes it.
final class ConnectionCore: Sendable {
    enum Phase: Sendable, Equatable {
        case idle
        case connecting
        case connected
        case draining
        case closed
    }

    struct StateMachine: ~Copyable {
        var phase: Phase = .idle
        var listeners: [Int: AsyncStream<NATSConnectionEvent>.Continuation] = [:]
        var nextListenerID = 0
        var closeWaiters: [CheckedContinuation<Void, Never>] = []
        var drainTimedOut = false
        /// Set when the application asked to close or drain, so that the disconnection that
        /// follows is not reported as a failure.
        var closingRequested = false

        enum CloseAction {
            case none
            case finish(listeners: [AsyncStream<NATSConnectionEvent>.Continuation], waiters: [CheckedContinuation<Void, Never>])
        }

        mutating func closed() -> CloseAction {
            if phase == .closed && listeners.isEmpty && closeWaiters.isEmpty { return .none }
            phase = .closed
            let action = CloseAction.finish(listeners: Array(listeners.values), waiters: closeWaiters)
            listeners.removeAll()
            closeWaiters.removeAll()
            return action
        }
    }

    let state = Mutex(StateMachine())
    /// The server's `max_payload`, refreshed on every (re)connect (the reconnected callback reads
    /// it from the cnats connection it is given).
    let maxPayload = Atomic<Int>(1024 * 1024)
    /// How many times the connection reconnected.
    let reconnects = Atomic<Int>(0)
    let logger: Logger
    private let slowConsumerEvents: Counter
    private let disconnections: Counter
    private let permissionViolations: Counter

    init(logger: Logger, connectionName: String) {
        self.logger = logger
        slowConsumerEvents = Counter(label: "nats_slow_consumer_events_total", dimensions: [("connection", connectionName)])
        disconnections = Counter(label: "nats_disconnections_total", dimensions: [("connection", connectionName)])
        permissionViolations = Counter(
            label: "nats_permission_violations_total", dimensions: [("connection", connectionName)])
    }

    /// A new listener for events from now on.
    func makeEventStream() -> AsyncStream<NATSConnectionEvent> {
        let (stream, continuation) = AsyncStream.makeStream(
            of: NATSConnectionEvent.self, bufferingPolicy: .bufferingNewest(1024))
        let alreadyClosed = state.withLock { state -> Bool in
            if state.phase == .closed { return true }
            let id = state.nextListenerID
            state.nextListenerID += 1
            state.listeners[id] = continuation
            continuation.onTermination = { [weak self] _ in
                self?.state.withLock { _ = $0.listeners.removeValue(forKey: id) }
            }
            return false
        }
        if alreadyClosed {
            continuation.yield(.closed)
            continuation.finish()
        }
        return stream
    }

    /// Called for every connection event, on cnats's callback thread or after connect.
    func handle(_ event: NATSConnectionEvent) {
        switch event {
        case .connected(let server):
            logger.info("NATS connected", metadata: ["server": "\(server)"])
        case .disconnected:
            if state.withLock({ $0.closingRequested }) {
                logger.debug("NATS disconnected while closing")
            } else {
                disconnections.increment()
                logger.warning("NATS disconnected; reconnecting")
            }
        case .reconnected(let server):
            reconnects.add(1, ordering: .releasing)
            logger.notice("NATS reconnected", metadata: ["server": "\(server)"])
        case .discoveredServers(let servers):
            logger.debug("NATS discovered servers", metadata: ["servers": "\(servers)"])
        case .lameDuckMode:
            logger.warning("NATS server entered lame duck mode")
        case .slowConsumer(let subject, let dropped):
            slowConsumerEvents.increment()
            logger.warning(
                "NATS slow consumer: messages dropped",
                metadata: ["subject": "\(subject)", "droppedTotal": "\(dropped)"])
        case .error(let error) where error.code == .permissionDenied:
            // The server refused one publish or subscription and keeps the connection open
            // (`-ERR 'Permissions Violation for Publish to "subject"'`): later calls work.
            permissionViolations.increment()
            logger.warning(
                "NATS permission violation: the server refused a publish or subscription; the connection stays open",
                metadata: ["reason": "\(error.message)"])
        case .error(let error):
            logger.error("NATS asynchronous error", metadata: ["error": "\(error)"])
            if error.code == .timeout {
                state.withLock { state in
                    if state.phase == .draining { state.drainTimedOut = true }
                }
            }
        case .closed:
            logger.info("NATS connection closed")
        }

        if case .closed = event {
            let action = state.withLock { $0.closed() }
            if case .finish(let listeners, let waiters) = action {
                for listener in listeners {
                    listener.yield(.closed)
                    listener.finish()
                }
                for waiter in waiters { waiter.resume() }
            }
        } else {
            let listeners = state.withLock { Array($0.listeners.values) }
            for listener in listeners { listener.yield(event) }
        }
    }

    /// Waits until the connection is closed. Returns at once if it is.
    func waitUntilClosed() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let closed = state.withLock { state -> Bool in
                if state.phase == .closed { return true }
                state.closeWaiters.append(continuation)
                return false
            }
            if closed { continuation.resume() }
        }
    }

    var phase: Phase { state.withLock { $0.phase } }

    /// Records that the application is closing the connection.
    func markClosingRequested() {
        state.withLock { $0.closingRequested = true }
    }
}

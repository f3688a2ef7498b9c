import Logging
import Metrics
import Synchronization

/// The state a connection shares with cnats's callback thread.
///
/// It is separate from ``NATSConnection`` so that the callbacks (which cnats keeps alive until the
/// connection closes) do not keep the public object alive: dropping the last reference to a
/// `NATSConnection` closes it.
final class ConnectionCore: Sendable {
    typealias Phase = ConnectionPhase
    typealias StateMachine = ConnectionStateMachine<
        CheckedContinuation<Void, Never>, AsyncStream<NATSConnectionEvent>.Continuation
    >
    typealias Finish = StateMachine.Finish

    /// The connection's one state; change it only through ``transition(_:)``.
    private let state = Mutex(StateMachine())
    /// ``StateMachine/availability`` as of the last transition, for the hot path (publish,
    /// subscribe, request) to read without the lock. Written only inside ``transition(_:)``.
    private let availabilityMirror = Atomic<UInt8>(ConnectionAvailability.notConnected.rawValue)
    /// The server's `max_payload`, refreshed on every (re)connect (the reconnected callback reads
    /// it from the cnats connection it is given).
    let maxPayload = Atomic<Int>(1024 * 1024)
    /// How many times the connection reconnected.
    let reconnects = Atomic<Int>(0)
    let logger: Logger
    private let slowConsumerEvents: Counter
    private let disconnections: Counter
    private let reconnections: Counter
    private let permissionViolations: Counter

    init(logger: Logger, connectionName: String) {
        self.logger = logger
        slowConsumerEvents = Counter(label: "nats_slow_consumer_events_total", dimensions: [("connection", connectionName)])
        disconnections = Counter(label: "nats_disconnections_total", dimensions: [("connection", connectionName)])
        reconnections = Counter(label: "nats_reconnects_total", dimensions: [("connection", connectionName)])
        permissionViolations = Counter(
            label: "nats_permission_violations_total", dimensions: [("connection", connectionName)])
    }

    /// Runs one transition of the state machine under the lock and refreshes the mirror. What it
    /// returns is performed by the caller, outside the lock.
    func transition<Result: Sendable>(_ body: (inout StateMachine) -> Result) -> Result {
        state.withLock { machine in
            let result = body(&machine)
            availabilityMirror.store(machine.availability.rawValue, ordering: .releasing)
            return result
        }
    }

    /// Whether operations may go to cnats (connected or draining): one atomic load.
    @inline(__always)
    var isOpen: Bool { availabilityMirror.load(ordering: .acquiring) == ConnectionAvailability.open.rawValue }

    /// What operations may do now, as of the last transition.
    var availability: ConnectionAvailability {
        ConnectionAvailability(rawValue: availabilityMirror.load(ordering: .acquiring)) ?? .closed
    }

    var phase: Phase { state.withLock { $0.phase } }

    /// Whether the link is recovering a connection the server closed (no server is connected).
    var isRecovering: Bool { state.withLock { $0.recovering } }

    /// The phase and whether cnats is reconnecting (or the link recovering), read together.
    var phaseAndReconnecting: (Phase, Bool) { state.withLock { ($0.phase, $0.disconnected || $0.recovering) } }

    /// Whether cnats reported a timeout while draining.
    var drainTimedOut: Bool { state.withLock { $0.drainTimedOut } }

    /// Ends listeners (after a last `.closed`) and resumes the tasks waiting for the close.
    func finish(_ finish: Finish) {
        for listener in finish.listeners {
            listener.yield(.closed)
            listener.finish()
        }
        for waiter in finish.waiters { waiter.resume() }
    }

    /// cnats connected: installs the connection (`install`, under the lock, so that the hot path
    /// never sees "open" without it) unless the connect was asked to stop. Returns whether it
    /// was installed; if not, the caller destroys it and calls ``connectAbandoned()``.
    func connectSucceeded(install: () -> Void) -> Bool {
        transition { machine in
            guard case .connected = machine.connectSucceeded() else { return false }
            install()
            return true
        }
    }

    /// The connection a stopped connect made is destroyed: closed. Returns the error
    /// `connect()` throws.
    func connectAbandoned() -> NATSError {
        let (finish, error) = transition { $0.connectAbandoned() }
        self.finish(finish)
        logger.debug("NATS connect stopped: \(error.message)")
        return error
    }

    /// A connect failed: back to idle (rethrow `failure`), or closed when asked to stop meanwhile
    /// (throw the returned error).
    func connectFailed(_ failure: NATSError) -> NATSError {
        switch transition({ $0.connectFailed(failure) }) {
        case .idle:
            return failure
        case .closed(let finish, let error):
            self.finish(finish)
            return error
        }
    }

    /// A new listener for events from now on.
    func makeEventStream() -> AsyncStream<NATSConnectionEvent> {
        let (stream, continuation) = AsyncStream.makeStream(
            of: NATSConnectionEvent.self, bufferingPolicy: .bufferingNewest(1024))
        // Registered under the lock before onTermination can run, so that removal finds it.
        let alreadyClosed = state.withLock { machine -> Bool in
            guard let id = machine.addListener(continuation) else { return true }
            continuation.onTermination = { [weak self] _ in
                self?.state.withLock { $0.removeListener(id) }
            }
            return false
        }
        if alreadyClosed {
            continuation.yield(.closed)
            continuation.finish()
        }
        return stream
    }

    /// Called for every connection event, on cnats's callback thread or after connect: the one
    /// entry point of cnats's callbacks (and the link's recovery events) into the state machine.
    func handle(_ event: NATSConnectionEvent) {
        let action = transition { $0.received(event) }
        switch event {
        case .connected(let server):
            logger.info("NATS connected", metadata: ["server": "\(server)"])
        case .disconnected:
            if action.expected {
                logger.debug("NATS disconnected while closing")
            } else {
                disconnections.increment()
                logger.warning("NATS disconnected; reconnecting")
            }
        case .reconnected(let server):
            reconnects.add(1, ordering: .releasing)
            reconnections.increment()
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
        case .closed:
            // A second `.closed` (the abandoned connection of a stopped connect, a link that gave
            // up after a close) is not news.
            if !action.ignored { logger.info("NATS connection closed") }
        }

        if let finish = action.finish { self.finish(finish) }
        for listener in action.listeners { listener.yield(event) }
    }

    /// Waits until the connection is closed. Returns at once if it is.
    func waitUntilClosed() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let added = state.withLock { $0.addCloseWaiter(continuation) }
            if !added { continuation.resume() }
        }
    }
}

import EventBus
import Logging
import NATS
import Synchronization

extension JetStreamEventBus {
    /// The bus's health: its NATS connection (connected, reconnecting, closed) and each of this
    /// process's subscriptions with its consumer's state, the age of its last event and
    /// heartbeat, the consumer's pending count, what the application holds unsettled,
    /// redeliveries and recoveries. Sends nothing to the server.
    public func health() async -> EventBusHealth {
        let (connection, closed) = lifecycleForHealth()
        guard let connection else {
            return EventBusHealth(backend: "jetstream", connection: closed ? .closed : .connecting)
        }
        let state: EventBusHealth.ConnectionState =
            switch connection.state {
            case .idle, .connecting: .connecting
            case .connected, .draining: .connected
            case .reconnecting: .reconnecting
            case .closing, .closed: .closed
            }
        let subscriptions = subscriptions().map(\.health).sorted { ($0.group ?? "", $0.pattern) < ($1.group ?? "", $1.pattern) }
        return EventBusHealth(
            backend: "jetstream", connection: state, server: connection.connectedServer, subscriptions: subscriptions)
    }

    /// The subscriptions' recovery events from now on: why a consumer re-issued its pull
    /// requests, was resubscribed or its leader changed, or its heartbeats stopped. Each access
    /// is a new listener that keeps the newest 64 events it has not read; the sequence ends when
    /// the bus closes.
    public var recoveryEvents: AsyncStream<EventBusRecoveryEvent> {
        recoveryBroadcaster.listen()
    }

    /// A subscription's consumer recovered: logged (the NATS module logged the consumer's side)
    /// and passed to the listeners.
    func recovered(_ event: EventBusRecoveryEvent) {
        logger.notice(
            "event bus subscription recovering",
            metadata: [
                "reason": "\(event.reason)", "detail": "\(event.detail)", "pattern": "\(event.pattern)",
                "group": "\(event.group ?? "-")", "consumer": "\(event.consumer ?? "-")",
            ])
        recoveryBroadcaster.send(event)
    }
}

/// The listeners of ``JetStreamEventBus/recoveryEvents``, each bounded.
final class RecoveryBroadcaster: Sendable {
    private struct State {
        var listeners: [Int: AsyncStream<EventBusRecoveryEvent>.Continuation] = [:]
        var next = 0
        var finished = false
    }

    private let state = Mutex(State())

    func listen() -> AsyncStream<EventBusRecoveryEvent> {
        let (stream, continuation) = AsyncStream.makeStream(of: EventBusRecoveryEvent.self, bufferingPolicy: .bufferingNewest(64))
        let finished = state.withLock { state -> Bool in
            if state.finished { return true }
            let id = state.next
            state.next += 1
            state.listeners[id] = continuation
            continuation.onTermination = { [weak self] _ in self?.state.withLock { _ = $0.listeners.removeValue(forKey: id) } }
            return false
        }
        if finished { continuation.finish() }
        return stream
    }

    func send(_ event: EventBusRecoveryEvent) {
        for listener in state.withLock({ Array($0.listeners.values) }) { listener.yield(event) }
    }

    func finish() {
        let listeners = state.withLock { state in
            state.finished = true
            defer { state.listeners = [:] }
            return Array(state.listeners.values)
        }
        for listener in listeners { listener.finish() }
    }
}

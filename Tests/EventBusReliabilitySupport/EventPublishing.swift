import EventBus
import NATS

/// Publishes an event on any ``EventBus`` the way a careful service does under faults: retry
/// every retriable failure with the same event id (the JetStream bus sends it as `Nats-Msg-Id`,
/// so a retry of an event that was stored but whose ack was lost is recognised as a duplicate)
/// until acked or out of budget, and say which of acked / failed / unknown it ended as.
public enum EventPublishing {
    /// Whether a failed publish certainly stored nothing: it was refused before the wire, or no
    /// stream received it ("no responders"). Timeouts and dropped connections may have stored it.
    public static func definitelyNotStored(_ error: any Error) -> Bool {
        if let error = error as? EventBusError {
            if [.invalidEvent, .invalidSubject, .invalidOption].contains(error.code) { return true }
            if let underlying = error.underlying as? NATSError { return underlying.code == .noResponders }
            return false
        }
        if let error = error as? NATSError { return error.code == .noResponders }
        return false
    }

    /// Publishes `event`, retrying retriable failures for up to `budget`.
    public static func publish(_ event: Event, on bus: any EventBus, budget: Duration) async -> PublishRecord {
        let startedAt = wallClock()
        let deadline = ContinuousClock.now + budget
        var attempts = 0
        var ambiguous = false
        while true {
            attempts += 1
            do {
                let receipt = try await bus.publish(event)
                return PublishRecord(
                    id: event.id, outcome: .acked(sequence: receipt.sequence, duplicate: receipt.duplicate), attempts: attempts,
                    startedAt: startedAt, completedAt: wallClock())
            } catch {
                if !definitelyNotStored(error) { ambiguous = true }
                let retriable = (error as? EventBusError)?.isRetriable ?? false
                if !retriable || ContinuousClock.now >= deadline {
                    let reason = "\(error)"
                    return PublishRecord(
                        id: event.id, outcome: ambiguous ? .unknown(reason: reason) : .failed(reason: reason), attempts: attempts,
                        startedAt: startedAt, completedAt: wallClock())
                }
                try? await Task.sleep(for: .milliseconds(min(100 * attempts, 500)))
            }
        }
    }
}

import Logging
import NATS

/// Runs `attempt` until it succeeds, for up to `budget` while JetStream has no leader for it: a
/// stream that another service is creating at this moment, or whose leader was just lost, leaves
/// API requests unanswered (timeout) or answers 503 until a leader is elected (seconds). Other
/// errors fail at once. Shared by the bus's and the event store's start-up, which services on a
/// cluster often run at the same moment.
func retryingThroughElections<Value>(
    _ what: String,
    logger: Logger,
    budget: Duration = .seconds(30),
    _ attempt: () async throws(NATSError) -> Value
) async throws(NATSError) -> Value {
    let deadline = ContinuousClock.now + budget
    while true {
        do {
            return try await attempt()
        } catch where (error.code == .timeout || (error.code == .jetStream && error.isRetriable))
            && ContinuousClock.now < deadline && !Task.isCancelled
        {
            logger.warning("\(what) not ready (leader election?), retrying", metadata: ["error": "\(error.message)"])
            try? await Task.sleep(for: .milliseconds(500))
        }
    }
}

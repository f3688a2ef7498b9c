/// When and how long to wait before trying an operation again: exponential backoff with jitter.
///
/// The delay before retry *n* (after attempt *n* failed) is `initialDelay * multiplier^(n-1)`, capped at
/// `maxDelay`, then scaled by a random factor in `1 - jitter ... 1` so that many clients failing together
/// do not retry together.
public struct RetryPolicy: Sendable {
    /// How many attempts in all, the first included. 1 means no retry.
    public var maxAttempts: Int
    /// The delay before the first retry, before jitter.
    public var initialDelay: Duration
    /// How much each delay grows over the one before.
    public var multiplier: Double
    /// The longest delay, before jitter.
    public var maxDelay: Duration
    /// The share of each delay that is random, in 0...1 (1: "full jitter").
    public var jitter: Double
    /// Which errors are worth another attempt; by default ``EventBusError/isRetriable``.
    public var shouldRetry: @Sendable (any Error) -> Bool

    /// Creates a policy; the defaults retry up to 5 attempts from 50 ms, doubling, capped at 5 s, half jitter.
    public init(
        maxAttempts: Int = 5,
        initialDelay: Duration = .milliseconds(50),
        multiplier: Double = 2,
        maxDelay: Duration = .seconds(5),
        jitter: Double = 0.5,
        shouldRetry: @escaping @Sendable (any Error) -> Bool = RetryPolicy.retriableEventBusErrors
    ) {
        self.maxAttempts = maxAttempts
        self.initialDelay = initialDelay
        self.multiplier = multiplier
        self.maxDelay = maxDelay
        self.jitter = jitter
        self.shouldRetry = shouldRetry
    }

    /// Retries ``EventBusError``s that say they are retriable, and nothing else.
    public static let retriableEventBusErrors: @Sendable (any Error) -> Bool = { error in
        (error as? EventBusError)?.isRetriable ?? false
    }

    /// Throws ``EventBusError/Code/invalidOption`` naming the first value out of range.
    public func validate() throws(EventBusError) {
        guard maxAttempts >= 1 else {
            throw EventBusError(.invalidOption, "retry maxAttempts \(maxAttempts) must be at least 1")
        }
        guard initialDelay >= .zero, maxDelay >= initialDelay else {
            throw EventBusError(
                .invalidOption,
                "retry delays must satisfy 0 <= initialDelay (\(initialDelay)) <= maxDelay (\(maxDelay))"
            )
        }
        guard multiplier >= 1 else {
            throw EventBusError(.invalidOption, "retry multiplier \(multiplier) must be at least 1")
        }
        guard (0...1).contains(jitter) else {
            throw EventBusError(.invalidOption, "retry jitter \(jitter) must be in 0...1")
        }
    }

    /// The delay after attempt `attempt` (1-based) failed; `random` is a number in 0...1 (pass a fixed one
    /// in tests).
    public func delay(afterAttempt attempt: Int, random: Double = Double.random(in: 0...1)) -> Duration {
        let exponent = Double(max(0, attempt - 1))
        let unjittered = min(initialDelay.seconds * pow(multiplier, exponent), maxDelay.seconds)
        let factor = 1 - jitter * min(max(random, 0), 1)
        return .nanoseconds(Int64((unjittered * factor * 1e9).rounded()))
    }

    /// Runs `operation` until it succeeds, fails with an error ``shouldRetry`` rejects, or ``maxAttempts`` are
    /// used up (then the last error is thrown). Cancellation stops the waiting.
    public func run<Result: Sendable>(_ operation: () async throws -> Result) async throws -> Result {
        var attempt = 1
        while true {
            do {
                return try await operation()
            } catch {
                guard attempt < maxAttempts, shouldRetry(error) else { throw error }
                try await Task.sleep(for: delay(afterAttempt: attempt))
                attempt += 1
            }
        }
    }
}

extension Duration {
    /// The duration in seconds, as a `Double`.
    var seconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}

/// `base` raised to `exponent`, without Foundation.
private func pow(_ base: Double, _ exponent: Double) -> Double {
    var result = 1.0
    var remaining = Int(exponent)
    while remaining > 0 {
        result *= base
        remaining -= 1
    }
    return result
}

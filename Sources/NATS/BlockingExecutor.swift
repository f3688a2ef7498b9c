import Dispatch

/// Runs blocking cnats calls (connect, flush, request, close, JetStream API calls, fetch) off the
/// Swift concurrency pool, which has only as many threads as cores: one blocked call there would
/// stall every task in the process.
///
/// Calls go to a concurrent dispatch queue, whose thread pool grows while threads are blocked, so
/// a slow request does not hold up an unrelated flush.
struct BlockingExecutor: Sendable {
    private let queue: DispatchQueue

    init(label: String) {
        queue = DispatchQueue(label: label, qos: .userInitiated, attributes: .concurrent)
    }

    /// Runs `body` on the blocking queue and returns its result to the awaiting task. (An unsafe
    /// continuation: it is resumed exactly once, by the block, and needs no allocation of its
    /// own, which a checked one does.)
    func run<Result: Sendable>(_ body: @escaping @Sendable () throws(NATSError) -> Result) async throws(NATSError) -> Result {
        let result: Swift.Result<Result, NATSError> = await withUnsafeContinuation { continuation in
            queue.async {
                do throws(NATSError) {
                    continuation.resume(returning: .success(try body()))
                } catch {
                    continuation.resume(returning: .failure(error))
                }
            }
        }
        return try result.get()
    }

    /// Runs a call that cannot fail on the blocking queue and waits for it.
    func runUnchecked(_ body: @escaping @Sendable () -> Void) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            queue.async {
                body()
                continuation.resume()
            }
        }
    }

    /// Starts a call on the blocking queue without waiting for it.
    func submit(_ body: @escaping @Sendable () -> Void) {
        queue.async(execute: body)
    }
}

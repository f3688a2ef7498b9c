import Dispatch
import Synchronization

/// An actor on an executor of its own that counts the jobs enqueued on it. A task that leaves the
/// actor for another executor and comes back costs one such job, so tests use the count to show
/// that calls made from an actor ran there instead of hopping off and back.
public actor CountingActor {
    private let executor = CountingSerialExecutor()

    public init() {}

    /// The actor runs on the counting executor.
    public nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    /// Jobs enqueued on the actor so far.
    public nonisolated var enqueuedJobs: Int { executor.enqueued.load(ordering: .acquiring) }

    /// Runs `body` isolated to the actor; returns its result and the jobs enqueued on the actor
    /// meanwhile (entering it is one).
    public nonisolated func run<Result: Sendable>(
        _ body: @Sendable (isolated CountingActor) async throws -> Result
    ) async rethrows -> (result: Result, enqueuedJobs: Int) {
        let before = enqueuedJobs
        let result = try await isolatedRun(body)
        return (result, enqueuedJobs - before)
    }

    private func isolatedRun<Result: Sendable>(_ body: @Sendable (isolated CountingActor) async throws -> Result) async rethrows -> Result {
        try await body(self)
    }
}

/// A serial executor on a dispatch queue that counts what it is given.
final class CountingSerialExecutor: SerialExecutor {
    let enqueued = Atomic<Int>(0)
    private let queue = DispatchQueue(label: "counting-actor")

    func enqueue(_ job: consuming ExecutorJob) {
        enqueued.add(1, ordering: .releasing)
        let job = UnownedJob(job)
        queue.async { job.runSynchronously(on: self.asUnownedSerialExecutor()) }
    }
}

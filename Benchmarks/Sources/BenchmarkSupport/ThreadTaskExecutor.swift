import Dispatch
import Foundation
import Synchronization

/// A task executor with one thread of its own, for a benchmark task that must run beside the benchmark's.
///
/// package-benchmark runs an async benchmark by blocking one thread of Swift's cooperative pool until the
/// benchmark finishes (`Benchmark.runAsync`: `DispatchSemaphore.wait()` from the runner's async code). On
/// a 2-core machine the pool has 2 threads, so the benchmark's own tasks share the one that is left: a
/// publisher and a subscriber then take turns instead of running at the same time, as they would in a
/// service. A subscriber task started with `executorPreference:` one of these runs on this thread instead.
///
/// One FIFO of jobs under a `Mutex`, a semaphore to sleep on when it is empty. The thread ends after
/// ``shutdown()`` once the queue is empty.
public final class ThreadTaskExecutor: TaskExecutor, @unchecked Sendable {
    // @unchecked: `jobs` is behind its Mutex, the semaphore is thread-safe, `thread` is set once in init.
    private let jobs = Mutex<(queue: [UnownedJob], stopping: Bool)>(([], false))
    private let wakeUp = DispatchSemaphore(value: 0)

    public init(name: String) {
        let thread = Thread { [self] in run() }
        thread.name = name
        thread.start()
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        jobs.withLock { $0.queue.append(job) }
        wakeUp.signal()
    }

    /// Lets the thread end once it has run what is queued.
    public func shutdown() {
        jobs.withLock { $0.stopping = true }
        wakeUp.signal()
    }

    private func run() {
        while true {
            wakeUp.wait()
            let (job, stop) = jobs.withLock { state -> (UnownedJob?, Bool) in
                state.queue.isEmpty ? (nil, state.stopping) : (state.queue.removeFirst(), false)
            }
            if let job {
                job.runSynchronously(on: asUnownedTaskExecutor())
            } else if stop {
                return
            }
        }
    }
}

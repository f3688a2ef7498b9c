import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A task executor that lets the delivery thread which hands a waiting consumer its messages run
/// that consumer's task itself, instead of waking a concurrency-pool thread to run it.
///
/// A consumer task that waits for a buffer (``BoundedBatchBuffer``) is resumed by cnats's
/// delivery thread. Resumed the ordinary way, the task's next step is queued on the global
/// executor, which wakes a pool thread (a `futex` call on each side and a context switch, about
/// 4 µs on a 2-core VM): that hand-off is most of what an iterated consumer's latency has over a
/// callback on the delivery thread. A task that prefers this executor
/// (`withTaskExecutorPreference`) and is resumed by ``resume(_:)`` runs its next step at once
/// on the resuming thread, as a cnats callback would, until it waits again.
///
/// Only that one step runs there: every other job (the task's child tasks, a step resumed by
/// a timer, an actor hop's return, anything enqueued from another thread) goes to the global
/// executor, so the delivery thread runs nothing it was not about to hand over anyway, and
/// child tasks keep running in parallel.
package final class DeliveryThreadExecutor: TaskExecutor, @unchecked Sendable {
    private struct Capture {
        /// The thread inside ``resume(_:)``, whose enqueue is kept rather than forwarded.
        var thread: pthread_t?
        var job: UnownedJob?
    }

    // Unchecked Sendable: `pthread_t` and `UnownedJob` are only touched under this lock.
    private let capture = Mutex(Capture())

    package init() {}

    package func enqueue(_ job: consuming ExecutorJob) {
        let unownedJob = UnownedJob(job)
        let kept = capture.withLock { capture -> Bool in
            guard capture.job == nil, let thread = capture.thread, pthread_equal(thread, pthread_self()) != 0 else {
                return false
            }
            capture.job = unownedJob
            return true
        }
        if !kept { globalConcurrentExecutor.enqueue(ExecutorJob(unownedJob)) }
    }

    /// Resumes `continuation`; when that enqueued the resumed task's next step here, runs it on
    /// the calling thread before returning. Call with no lock held: the step runs arbitrary code.
    func resume(_ continuation: UnsafeContinuation<Void, Never>) {
        capture.withLock { $0.thread = pthread_self() }
        continuation.resume()
        let job = capture.withLock { capture -> UnownedJob? in
            capture.thread = nil
            defer { capture.job = nil }
            return capture.job
        }
        job?.runSynchronously(on: asUnownedTaskExecutor())
    }
}

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
/// executor, which wakes a pool thread (a `futex` call on each side and a context switch): that
/// hand-off is most of what an iterated consumer's latency has over a callback on the delivery
/// thread. A task that prefers this executor (`withTaskExecutorPreference`) and is resumed by
/// ``resume(_:)`` goes on at once on the resuming thread, as a cnats callback would, until it
/// waits again.
///
/// What runs on that thread: the step the resume queued, and the steps that step queues here
/// from the same thread, at most ``stepsPerResume`` in all. Every other job, such as a step
/// resumed by a timer or by another thread, goes to the global executor.
///
/// The cost of the preference: the Swift runtime switches executors in place only on the global
/// executor, so under it every hop back from an actor, and every resumption from another thread,
/// is a job queued here and passed on: 200,000 calls to an idle actor took 2.1 µs each (4 µs of
/// CPU) under the preference against 0.06 µs without, on this project's 2-core VM. `consume`
/// therefore stops preferring it once its handler does that (see ``forwardedJobCount``).
package final class DeliveryThreadExecutor: TaskExecutor, @unchecked Sendable {
    private struct Capture {
        /// The thread inside ``resume(_:)``, whose enqueues here are kept rather than forwarded.
        var thread: pthread_t?
        var job: UnownedJob?
    }

    /// A bound on the steps one resume runs, so that a task preferring this executor in a loop
    /// that never waits for the buffer (yielding, say) cannot keep the delivery thread.
    static let stepsPerResume = 4

    // Unchecked Sendable: `pthread_t` and `UnownedJob` are only touched under this lock.
    private let capture = Mutex(Capture())
    private let forwarded = Atomic<Int>(0)

    package init() {}

    /// Jobs passed on to the global executor so far: `consume` watches it to notice a handler
    /// that left the delivery thread, and tests to see what ran where.
    package var forwardedJobCount: Int { forwarded.load(ordering: .relaxed) }

    package func enqueue(_ job: consuming ExecutorJob) {
        let unownedJob = UnownedJob(job)
        let kept = capture.withLock { capture -> Bool in
            guard capture.job == nil, let thread = capture.thread, pthread_equal(thread, pthread_self()) != 0 else {
                return false
            }
            capture.job = unownedJob
            return true
        }
        if !kept {
            forwarded.add(1, ordering: .relaxed)
            globalConcurrentExecutor.enqueue(ExecutorJob(unownedJob))
        }
    }

    /// Resumes `continuation`; when that queued the resumed task's next step here, runs it on the
    /// calling thread before returning, and the steps it queues here in turn (see
    /// ``stepsPerResume``). Call with no lock held: the steps run arbitrary code.
    func resume(_ continuation: UnsafeContinuation<Void, Never>) {
        let thread = pthread_self()
        capture.withLock { $0.thread = thread }
        continuation.resume()
        for step in 1...Self.stepsPerResume {
            let job = capture.withLock { capture -> UnownedJob? in
                defer { capture.job = nil }
                // Capturing ends with the last step allowed (which runs with its own enqueues
                // forwarded) or once no step was queued, under the same lock hold.
                if capture.job == nil || step == Self.stepsPerResume { capture.thread = nil }
                return capture.job
            }
            guard let job else { return }
            job.runSynchronously(on: asUnownedTaskExecutor())
        }
    }
}

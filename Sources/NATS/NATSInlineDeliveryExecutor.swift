#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A task executor that runs a task iterating a subscription or consumer on the thread that
/// just delivered its message, instead of waking a thread of the cooperative pool for it.
///
/// cnats hands each message to its subscription's own delivery thread. A task iterating the
/// subscription (`for try await message in subscription`) is resumed from there and then waits
/// for a pool thread to wake up and pick it up: a futex wake and a context switch, about 5-7 µs
/// per message on a small VM, most of what such a task pays over a C callback. A task that
/// prefers this executor is instead run right there, as a callback would be, until it suspends
/// again, typically to wait for the next message:
///
/// ```swift
/// let consumer = try await connection.jetStream().pullConsumer(stream: "ORDERS", name: "billing")
/// let task = Task(executorPreference: NATSInlineDeliveryExecutor.shared) {
///     for try await message in consumer {
///         try await handle(message)
///         try message.ack()
///     }
/// }
/// ```
///
/// Only a resumption from inside the delivery of one of the client's buffered subscriptions runs
/// inline, and one task at a time per thread. Every other job of such a task (a timer, a reply
/// to a request, a hop back from an actor, anything the inline task itself resumes) goes to the
/// global concurrent executor as usual. What running inline costs is what a callback costs: while
/// the task runs, its subscription's delivery thread delivers nothing else (messages wait in
/// cnats's pending queue, within the subscription's limits), and code that blocks the thread (which
/// async code must not do) holds back that subscription. The EventBus's `consume` on JetStream
/// uses it for its handlers unless `inlineDelivery` is off.
public final class NATSInlineDeliveryExecutor: TaskExecutor, @unchecked Sendable {
    // @unchecked: stateless; the per-thread state lives in a pthread key.

    /// The executor; it has no state of its own (which thread may run a task inline is per thread).
    public static let shared = NATSInlineDeliveryExecutor()

    private init() {}

    private enum ThreadState: Int {
        case none = 0
        case delivering = 1
        case running = 2
    }

    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        precondition(pthread_key_create(&key, nil) == 0, "pthread_key_create failed")
        return key
    }()

    private static var threadState: ThreadState {
        get { ThreadState(rawValue: Int(bitPattern: pthread_getspecific(key))) ?? .none }
        set { pthread_setspecific(key, UnsafeRawPointer(bitPattern: newValue.rawValue)) }
    }

    /// Whether the calling code runs inline on a subscription's delivery thread (in a task that
    /// prefers this executor), where blocking the thread would hold back that subscription.
    public static var isRunningInline: Bool { threadState == .running }

    /// Runs `body` (a delivery into a buffer a task may wait on) with this thread allowed to run
    /// one resumed task inline.
    @inline(__always)
    static func allowingInlineRun<Result>(_ body: () -> Result) -> Result {
        let previous = threadState
        // A task already runs inline here: what it wakes goes to the pool, not nested on its stack.
        if previous == .running { return body() }
        threadState = .delivering
        defer { threadState = previous }
        return body()
    }

    /// Runs `job` at once when called from a subscription's delivery that allows it and no task
    /// runs inline on this thread yet; otherwise hands it to the global concurrent executor.
    public func enqueue(_ job: consuming ExecutorJob) {
        guard Self.threadState == .delivering else {
            globalConcurrentExecutor.enqueue(job)
            return
        }
        Self.threadState = .running
        job.runSynchronously(on: asUnownedTaskExecutor())
        Self.threadState = .delivering
    }
}

import Foundation
import Synchronization

/// Thread-safe list of values collected by a test.
public final class Collected<Value: Sendable>: @unchecked Sendable {
    // @unchecked: guarded by `lock`.
    private let lock = NSLock()
    private var storage: [Value] = []

    /// Creates an empty list.
    public init() {}

    /// Appends a value.
    public func append(_ value: Value) { lock.withLock { storage.append(value) } }

    /// A snapshot of the values.
    public var values: [Value] { lock.withLock { storage } }

    /// The number of values.
    public var count: Int { lock.withLock { storage.count } }
}

/// Waits until `condition` holds, checking every 10 ms; returns false after `timeout`.
public func eventually(
    timeout: Duration = .seconds(10),
    _ condition: () async throws -> Bool
) async rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return try await condition()
}

/// Runs `body` with a deadline; throws ``TimedOut`` naming `what` (say, "the message on 'a.b'") if it
/// has not finished by then.
///
/// On timeout the body's task is cancelled, and this still waits for it to return (a structured task
/// cannot be abandoned). So `onTimeout` runs first: give it what ends a wait that cancellation does not,
/// such as cancelling the unstructured task whose `value` the body awaits, or closing what it reads.
public func withDeadline<Result: Sendable>(
    _ timeout: Duration,
    _ what: String = "the step",
    onTimeout: @escaping @Sendable () async -> Void = {},
    _ body: @escaping @Sendable () async throws -> Result
) async throws -> Result {
    try await withThrowingTaskGroup(of: Result?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: timeout)
            return nil
        }
        guard let first = try await group.next(), let result = first else {
            await onTimeout()
            group.cancelAll()
            throw TimedOut(timeout: timeout, what: what)
        }
        group.cancelAll()
        return result
    }
}

/// A test step did not finish in time.
public struct TimedOut: Error, CustomStringConvertible {
    /// The time that was allowed.
    public var timeout: Duration
    /// What was awaited.
    public var what: String
    /// Says what did not finish, and how long was allowed.
    public var description: String { "\(what) did not finish within \(timeout)" }
}

/// The threads that called ``record()``, in order: where a test's code ran.
public final class ThreadRecord: Sendable {
    private let storage = Mutex<[UInt]>([])

    /// An empty record.
    public init() {}

    /// Records the kernel's thread id: a `pthread_t` is the address of the thread's descriptor,
    /// which a thread started after the producer's exit may get again (seen under
    /// ThreadSanitizer, where the pool started a thread for the resumed step).
    public func record() {
        #if os(Linux)
        // "<pid>/task/<tid>"
        let link = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/thread-self")) ?? ""
        let id = UInt(link.split(separator: "/").last ?? "") ?? 0
        #else
        var id64: UInt64 = 0
        pthread_threadid_np(nil, &id64)
        let id = UInt(id64)
        #endif
        storage.withLock { $0.append(id) }
    }

    /// The recorded thread ids, one per ``record()`` call.
    public var threads: [UInt] { storage.withLock { $0 } }
    /// How many calls were recorded.
    public var count: Int { threads.count }
}

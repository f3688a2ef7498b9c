import Dispatch
import Synchronization

/// A bounded hand-off from producer threads (cnats delivery threads, usually one) to one
/// consuming task.
///
/// The producer appends under a lock and resumes the consumer only if it is waiting; the consumer
/// takes the whole pending batch at once by swapping arrays, so a busy stream costs one lock per
/// message and one resume per batch, never one resume per message (measured: one `AsyncStream`
/// yield per message costs 5-6x cnats's own CPU per message).
///
/// A consumer that keeps up is nearly always waiting, so resuming it whenever it waits would
/// still mean one wake-up (a futex call on each side) per message. The producer therefore defers
/// the wake-up while the batch is small and it knows it will be called again soon (`moreComing`:
/// cnats still holds messages for the subscription, so its delivery thread returns to `append`
/// with the next one). The last message of a burst finds nothing more coming and wakes the
/// consumer at once, so nothing waits for a later message or a timer: a message is handed over
/// by the `append` that stores it, by a later `append` of the same producer, or by ``finish``.
///
/// When the buffer holds `limits` worth of elements, the producer's thread blocks until the
/// consumer takes a batch (waking it first, in case a deferred wake-up left it waiting). That
/// thread belongs to cnats (never to the Swift concurrency pool), so the back pressure flows into
/// cnats's own pending limits, where cnats reports a slow consumer instead of growing memory. At
/// most `limits` are pending plus the batch the consumer is working through.
final class BoundedBatchBuffer<Element: Sendable>: Sendable {
    struct Limits: Sendable {
        var messages: Int
        var bytes: Int
    }

    /// A waiting consumer is woken once this many messages or bytes are pending, whatever
    /// `moreComing` says (at most the limits, so that a full buffer always has a woken consumer).
    static var wakeBatch: Limits { Limits(messages: 256, bytes: 64 * 1024) }

    private struct State: ~Copyable {
        var pending: [Element] = []
        var pendingBytes = 0
        /// The waiting consumer. Unsafe (not checked) continuations: their layout is known to
        /// the compiler (a checked one is a resilient type, and every copy of the optional went
        /// through runtime witness calls on the delivery thread), and each is resumed exactly
        /// once because whoever resumes takes it out of the state under the lock.
        var consumer: UnsafeContinuation<Void, Never>?
        /// Producer threads waiting for room.
        var blockedProducers = 0
        var finished = false
        var failure: NATSError?
        /// Set by ``wakeConsumer()``: the waiting consumer returns `.timedOut`.
        var wakeupRequested = false
        /// When the current ``takeBatch(into:timeout:)`` gives up (`DispatchTime` nanoseconds).
        var timedWaitDeadline: UInt64?
        /// The earliest wake-up scheduled for timed waits and not yet run.
        var armedDeadline: UInt64?
    }

    /// What ``takeBatch(into:)`` found.
    enum TakeResult {
        /// `batch` holds new elements.
        case took
        /// The buffer is finished and empty.
        case finished
        /// ``wakeConsumer()`` was called (a timer fired) before anything arrived.
        case wokenUp
        /// The calling task was cancelled.
        case cancelled
    }

    private enum AppendOutcome {
        /// Stored; resume this consumer (if any).
        case appended(UnsafeContinuation<Void, Never>?)
        /// Stored, the consumer waits and the batch is small: ask the producer whether more is
        /// coming before waking it.
        case consumerWaitsForSmallBatch
        /// No room: resume this consumer (if any), then block.
        case full(UnsafeContinuation<Void, Never>?)
        case finished
    }

    /// What a scheduled wake-up for a timed wait does.
    private enum WakeupStep {
        case nothing
        case wake(UnsafeContinuation<Void, Never>?)
        case schedule(UInt64)
    }

    private enum TakeStep {
        case took(wakeProducers: Int)
        case finished(NATSError?)
        case wokenUp
        case wait
    }

    private let state = Mutex(State())
    private let producerWakeup = DispatchSemaphore(value: 0)
    let limits: Limits
    private let wakeMessages: Int
    private let wakeBytes: Int
    /// Runs the resumed consumer's next step on the producer's thread when the consumer's wait
    /// prefers it (see ``DeliveryThreadExecutor``).
    let consumerExecutor = DeliveryThreadExecutor()

    init(limits: Limits) {
        self.limits = limits
        wakeMessages = max(1, min(Self.wakeBatch.messages, limits.messages))
        wakeBytes = max(1, min(Self.wakeBatch.bytes, limits.bytes))
    }

    /// Appends an element; blocks the calling (non-Swift-concurrency) thread while the buffer is
    /// full. Returns false when the buffer was finished and the element was discarded.
    ///
    /// `moreComing` is asked only when the consumer waits and fewer than ``wakeBatch`` are
    /// pending. Return true only if this producer is certain to call `append` (or the buffer's
    /// ``finish(failure:)`` to be called) again; the wake-up is then left to that call.
    @discardableResult
    func append(_ element: consuming Element, size: Int, moreComing: () -> Bool = { false }) -> Bool {
        appendReturningRefused(element, size: size, moreComing: moreComing) == nil
    }

    /// ``append(_:size:moreComing:)`` that gives the element back when the buffer was finished,
    /// so that the producer can still dispose of it (a JetStream consumer hands such a message
    /// back to the server instead of leaving it to its ack wait).
    func appendReturningRefused(_ element: consuming Element, size: Int, moreComing: () -> Bool = { false }) -> Element? {
        var element = Optional(consume element)
        while true {
            let outcome: AppendOutcome = state.withLock { state in
                if state.finished { return .finished }
                if !state.pending.isEmpty
                    && (state.pending.count >= limits.messages || state.pendingBytes + size > limits.bytes)
                {
                    state.blockedProducers += 1
                    let consumer = state.consumer
                    state.consumer = nil
                    return .full(consumer)
                }
                state.pending.append(element.take()!)
                state.pendingBytes += size
                guard state.consumer != nil else { return .appended(nil) }
                if state.pending.count < wakeMessages && state.pendingBytes < wakeBytes {
                    return .consumerWaitsForSmallBatch
                }
                let consumer = state.consumer
                state.consumer = nil
                return .appended(consumer)
            }
            switch outcome {
            case .appended(let consumer):
                if let consumer { consumerExecutor.resume(consumer) }
                return nil
            case .consumerWaitsForSmallBatch:
                // The next append of this producer decides (it is on its way).
                if moreComing() { return nil }
                let consumer = state.withLock { state -> UnsafeContinuation<Void, Never>? in
                    defer { state.consumer = nil }
                    return state.consumer
                }
                if let consumer { consumerExecutor.resume(consumer) }
                return nil
            case .finished:
                return element.take()
            case .full(let consumer):
                consumer?.resume()
                producerWakeup.wait()
            }
        }
    }

    /// Ends the buffer: elements already pending are still handed out, then the consumer gets
    /// `nil` (or `failure`, if given). A blocked producer is released.
    func finish(failure: NATSError? = nil) {
        let (consumer, blocked) = state.withLock { state -> (UnsafeContinuation<Void, Never>?, Int) in
            if !state.finished {
                state.finished = true
                state.failure = failure
            }
            let consumer = state.consumer
            state.consumer = nil
            let blocked = state.blockedProducers
            state.blockedProducers = 0
            return (consumer, blocked)
        }
        consumer?.resume()
        for _ in 0..<blocked { producerWakeup.signal() }
    }

    /// Ends the buffer and drops what is pending (the consumer went away).
    func discard() {
        _ = discardReturningPending()
    }

    /// Ends the buffer and returns what was pending, which the consumer will never see.
    func discardReturningPending() -> [Element] {
        finish()
        return state.withLock { state in
            defer {
                state.pending.removeAll()
                state.pendingBytes = 0
            }
            return state.pending
        }
    }

    /// Whether ``finish(failure:)`` was called.
    var isFinished: Bool { state.withLock { $0.finished } }

    /// Elements stored and not yet taken (for health reports, not the hot path).
    var bufferedCount: Int { state.withLock { $0.pending.count } }

    /// Whether the consumer waits for elements (for tests of the wake-up rules).
    var hasWaitingConsumer: Bool { state.withLock { $0.consumer != nil } }

    /// Makes a waiting (or the next) ``takeBatch(into:)`` return `.wokenUp` if nothing is pending.
    func wakeConsumer() {
        let consumer = state.withLock { state -> UnsafeContinuation<Void, Never>? in
            state.wakeupRequested = true
            defer { state.consumer = nil }
            return state.consumer
        }
        consumer?.resume()
    }

    /// Replaces `batch` (which the caller has emptied) with everything pending, waiting while
    /// there is nothing.
    ///
    /// Runs on the caller's executor, as the iterators calling it do: a nonisolated async function
    /// starts with a switch to the global executor, and under a task executor preference (a
    /// consumer on its delivery thread) each switch reads the preference under the task's lock.
    nonisolated(nonsending) func takeBatch(into batch: inout [Element]) async throws(NATSError) -> TakeResult {
        while true {
            let step: TakeStep = state.withLock { state in
                if !state.pending.isEmpty {
                    swap(&state.pending, &batch)
                    state.pendingBytes = 0
                    state.wakeupRequested = false
                    let wake = state.blockedProducers
                    state.blockedProducers = 0
                    return .took(wakeProducers: wake)
                }
                if state.finished { return .finished(state.failure) }
                if state.wakeupRequested {
                    state.wakeupRequested = false
                    return .wokenUp
                }
                return .wait
            }
            switch step {
            case .took(let wakeProducers):
                for _ in 0..<wakeProducers { producerWakeup.signal() }
                return .took
            case .finished(let failure):
                if let failure { throw failure }
                return .finished
            case .wokenUp:
                return .wokenUp
            case .wait:
                if Task.isCancelled { return .cancelled }
                await withTaskCancellationHandler {
                    await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
                        let resumeNow = state.withLock { state -> Bool in
                            if !state.pending.isEmpty || state.finished || state.wakeupRequested || Task.isCancelled {
                                return true
                            }
                            state.consumer = continuation
                            return false
                        }
                        if resumeNow { continuation.resume() }
                    }
                } onCancel: {
                    let consumer = state.withLock { state -> UnsafeContinuation<Void, Never>? in
                        defer { state.consumer = nil }
                        return state.consumer
                    }
                    consumer?.resume()
                }
                if Task.isCancelled && state.withLock({ $0.pending.isEmpty }) { return .cancelled }
            }
        }
    }

    /// Like ``takeBatch(into:)``, but returns `.wokenUp` after `timeout` without elements.
    ///
    /// A consumer that keeps up waits every few messages, so a timer per wait (a child task and
    /// a sleep: about three allocations and 0.4 µs of CPU per message in a pull consumer) cost
    /// more than the message itself. A wake-up is scheduled only when none is scheduled before
    /// the new deadline; when it runs early (the consumer waited again since), it schedules
    /// itself for the current deadline. So a busy consumer schedules about one per `timeout`.
    nonisolated(nonsending) func takeBatch(into batch: inout [Element], timeout: Duration) async throws(NATSError) -> TakeResult {
        // Fast path: something is pending already, no deadline needed.
        let ready = state.withLock { !$0.pending.isEmpty || $0.finished }
        if ready { return try await takeBatch(into: &batch) }
        let deadline = DispatchTime.now().uptimeNanoseconds &+ UInt64(clamping: timeout.nanosecondsClamped)
        let schedule = state.withLock { state -> Bool in
            state.timedWaitDeadline = deadline
            guard state.armedDeadline.map({ deadline < $0 }) ?? true else { return false }
            state.armedDeadline = deadline
            return true
        }
        if schedule { scheduleWakeup(at: deadline) }
        defer {
            state.withLock { state in
                state.timedWaitDeadline = nil
                state.wakeupRequested = false
            }
        }
        return try await takeBatch(into: &batch)
    }

    /// Runs ``timedWaitExpired(scheduledFor:)`` at `deadline`. The block keeps the buffer alive
    /// until then (at most one timeout).
    private func scheduleWakeup(at deadline: UInt64) {
        DispatchQueue.global().asyncAfter(deadline: DispatchTime(uptimeNanoseconds: deadline)) {
            self.timedWaitExpired(scheduledFor: deadline)
        }
    }

    /// A scheduled wake-up: wakes the consumer if its timed wait is over, or schedules again for
    /// the deadline of the wait in progress.
    private func timedWaitExpired(scheduledFor fired: UInt64) {
        let step = state.withLock { state -> WakeupStep in
            if state.armedDeadline == fired { state.armedDeadline = nil }
            guard let deadline = state.timedWaitDeadline else { return .nothing }
            if DispatchTime.now().uptimeNanoseconds >= deadline {
                state.timedWaitDeadline = nil
                state.wakeupRequested = true
                defer { state.consumer = nil }
                return .wake(state.consumer)
            }
            guard state.armedDeadline.map({ deadline < $0 }) ?? true else { return .nothing }
            state.armedDeadline = deadline
            return .schedule(deadline)
        }
        switch step {
        case .nothing: break
        case .wake(let consumer): consumer?.resume()
        case .schedule(let deadline): scheduleWakeup(at: deadline)
        }
    }
}

extension Array {
    /// Reverses the array by moving elements, not copying them: `reverse()` on an array of
    /// structs holding references retains and releases each element it swaps (about 3% of a
    /// JetStream consumer's client time), while the buffer pointer's swap moves the bytes.
    /// Consumers reverse each taken batch so that they can move messages out with `popLast()`.
    mutating func reverseInPlace() {
        withUnsafeMutableBufferPointer { $0.reverse() }
    }
}

import Synchronization

/// The handlers of one `consume` with ``SubscriptionOptions/handlerConcurrency`` above 1: a fixed number
/// of slots, each running at most one handler in a task of its own, and the task iterating the
/// subscription (the runner), which takes a free slot before it asks for the next delivery, so no more
/// than the limit are ever received for handling at once.
///
/// Stopping (the consume's task cancelled, a settlement failed, the subscription ended) lets no new
/// handler start; only once the running ones have settled is the runner cancelled out of its wait for
/// the next delivery, which closes the subscription and hands back what it still holds.
final class HandlerPool: Sendable {
    private struct State: ~Copyable {
        var free: [Int]
        var tasks: [Task<Void, Never>?]
        var running = 0
        var stopping = false
        /// The runner is still in its loop (it may be waiting for a delivery).
        var looping = true
        var runnerCancelled = false
        var failure: (any Error)?
        var runner: Task<Void, any Error>?
        var slotWaiter: CheckedContinuation<Int?, Never>?
        var idleWaiter: CheckedContinuation<Void, Never>?

        /// The runner to cancel now: stopping, nothing running, and it may be waiting for a delivery.
        mutating func runnerToCancel() -> Task<Void, any Error>? {
            guard stopping, running == 0, looping, !runnerCancelled, let runner else { return nil }
            runnerCancelled = true
            return runner
        }
    }

    private let state: Mutex<State>

    init(limit: Int) {
        state = Mutex(State(free: Array((0..<limit).reversed()), tasks: Array(repeating: nil, count: limit)))
    }

    func setRunner(_ runner: Task<Void, any Error>) {
        let cancel = state.withLock { state in
            state.runner = runner
            return state.runnerToCancel()
        }
        cancel?.cancel()
    }

    /// The consume's task was cancelled: cancel the running handlers (each settles by
    /// ``SubscriptionOptions/onCancel``) and start no more.
    func cancel() {
        let (tasks, waiter, runner) = state.withLock { state in
            state.stopping = true
            let waiter = state.slotWaiter.take()
            return (state.tasks.compactMap { $0 }, waiter, state.runnerToCancel())
        }
        for task in tasks { task.cancel() }
        waiter?.resume(returning: nil)
        runner?.cancel()
    }

    /// The runner's loop: take a slot, receive a delivery, start its handler; then wait for the handlers
    /// and close the subscription.
    func drive(
        _ subscription: EventSubscription,
        options: SubscriptionOptions,
        extender: AckExtender?,
        handler: @escaping @Sendable (Delivery) async throws -> Void
    ) async throws {
        var iterator = subscription.makeAsyncIterator()
        while let slot = await acquire() {
            let delivery: Delivery?
            do {
                delivery = try await iterator.next()
            } catch {
                release(slot)
                // Cancelled by the pool once stopping: the end of iteration, not a failure.
                if !Task.isCancelled { fail(error) }
                break
            }
            guard let delivery else {
                release(slot)
                break
            }
            // Refused when stopping: the delivery stays unsettled and the close below hands it back.
            guard start(delivery, in: slot, options: options, extender: extender, handler: handler) else { break }
        }
        state.withLock { state in
            state.stopping = true
            state.looping = false
        }
        await waitUntilIdle()
        await subscription.close()
        if let failure = state.withLock({ $0.failure }) {
            throw failure
        }
    }

    private func acquire() async -> Int? {
        enum Attempt {
            case slot(Int)
            case stopped
            case wait
        }
        let attempt = state.withLock { state -> Attempt in
            if state.stopping { return .stopped }
            if let slot = state.free.popLast() { return .slot(slot) }
            return .wait
        }
        switch attempt {
        case .slot(let slot): return slot
        case .stopped: return nil
        case .wait: break
        }
        return await withCheckedContinuation { (continuation: CheckedContinuation<Int?, Never>) in
            let now = state.withLock { state -> Int?? in
                if state.stopping { return .some(nil) }
                if let slot = state.free.popLast() { return .some(slot) }
                state.slotWaiter = continuation
                return .none
            }
            if let now { continuation.resume(returning: now) }
        }
    }

    private func release(_ slot: Int) {
        state.withLock { $0.free.append(slot) }
    }

    private func start(
        _ delivery: Delivery,
        in slot: Int,
        options: SubscriptionOptions,
        extender: AckExtender?,
        handler: @escaping @Sendable (Delivery) async throws -> Void
    ) -> Bool {
        state.withLock { state in
            guard !state.stopping else {
                state.free.append(slot)
                return false
            }
            state.running += 1
            // Made under the lock so that a cancel cannot miss it; the task itself takes the lock only
            // when it finishes.
            state.tasks[slot] = Task {
                extender?.begin(delivery, slot: slot)
                do {
                    try await DeliverySettlement.run(
                        { delivery in
                            defer { extender?.end(slot: slot) }
                            try await handler(delivery)
                        }, on: delivery, options: options)
                } catch {
                    self.fail(error)
                }
                self.finish(slot)
            }
            return true
        }
    }

    /// A settlement failed: stop taking deliveries; `consume` throws `error` once the others are done.
    private func fail(_ error: any Error) {
        let waiter = state.withLock { state in
            if state.failure == nil { state.failure = error }
            state.stopping = true
            return state.slotWaiter.take()
        }
        waiter?.resume(returning: nil)
    }

    private func finish(_ slot: Int) {
        let (waiter, idle, runner) = state.withLock { state in
            state.tasks[slot] = nil
            state.running -= 1
            let waiter = state.slotWaiter.take()
            if waiter == nil { state.free.append(slot) }
            let idle = state.running == 0 ? state.idleWaiter.take() : nil
            return (waiter, idle, state.runnerToCancel())
        }
        waiter?.resume(returning: slot)
        idle?.resume()
        runner?.cancel()
    }

    private func waitUntilIdle() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let idle = state.withLock { state in
                if state.running == 0 { return true }
                state.idleWaiter = continuation
                return false
            }
            if idle { continuation.resume() }
        }
    }
}

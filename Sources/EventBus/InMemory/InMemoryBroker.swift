#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Logging
import Synchronization

/// The shared core behind every client of one in-memory bus: the locked state machine and the code that
/// runs its effects after the lock is released.
///
/// Timers need no background task: an iterator that waits while a deadline is in force sleeps until that
/// deadline beside its wait (in a task group it owns), and whichever comes first wakes it.
final class InMemoryBroker: Sendable {
    let state: Mutex<BrokerState>
    let logger: Logger
    /// Metrics, spans and per-event logs (inactive unless the application bootstrapped them).
    let telemetry: EventBusTelemetry
    let clock = BrokerClock()
    private let waitTokens = Atomic<UInt64>(0)

    init(configuration: InMemoryEventBus.Configuration, logger: Logger, observability: EventBusObservability = .bootstrapped) {
        self.state = Mutex(BrokerState(configuration: configuration))
        self.logger = logger
        telemetry = EventBusTelemetry(
            backend: .memory, stream: configuration.streamName, logger: logger, observability: observability)
    }

    /// Runs what a state transition asked for, outside the lock.
    func run(_ effects: consuming BrokerEffects) {
        if let (continuation, outcome) = effects.firstResume {
            continuation.resume(returning: outcome)
        }
        guard let more = effects.more else { return }
        for (continuation, outcome) in more.resumes {
            continuation.resume(returning: outcome)
        }
        for replies in more.failedReplies {
            replies.fail(EventBusError(.closed, "the in-memory event bus client was closed before a reply came"))
        }
        for warning in more.warnings {
            logger.warning("\(warning)")
        }
        // Discarded events (`firstDiscarded`, `more.discarded`) are freed here, when `effects` ends.
    }

    /// Runs `body` on the state under the lock, then its effects outside it.
    func withState<Result, Failure: Error>(
        _ body: (inout BrokerState, BrokerInstant, inout BrokerEffects) throws(Failure) -> Result
    ) throws(Failure) -> Result {
        let now = clock.now
        let (result, effects) = try state.withLock { (state) throws(Failure) -> (Result, BrokerEffects) in
            var effects = BrokerEffects()
            let result = try body(&state, now, &effects)
            return (result, effects)
        }
        run(effects)
        return result
    }

    // MARK: Waiting

    /// Waits until the subscriber's consumer may have work, `timer` passes, the subscription ends or the task
    /// is cancelled.
    func park(_ subscriber: SubscriberID, timer: BrokerInstant?) async -> WaitOutcome {
        let token = waitTokens.wrappingAdd(1, ordering: .relaxed).newValue
        guard let timer else {
            return await parkUntilWoken(subscriber, token: token, timer: nil)
        }
        return await withTaskGroup(of: Void.self, returning: WaitOutcome.self) { group in
            group.addTask(operation: { [self] in
                try? await Task.sleep(until: clock.continuousInstant(timer), clock: clock.clock)
                wake(subscriber, token: token, with: .retry)
            })
            let outcome = await parkUntilWoken(subscriber, token: token, timer: timer)
            group.cancelAll()
            return outcome
        }
    }

    private func parkUntilWoken(_ subscriber: SubscriberID, token: UInt64, timer: BrokerInstant?) async -> WaitOutcome {
        await withTaskCancellationHandler {
            await withUnsafeContinuation { (continuation: UnsafeContinuation<WaitOutcome, Never>) in
                // Both read under the lock: a wake by the timer or the cancellation handler that ran before
                // this finds no one parked and is lost, and only these reads can tell that it happened.
                let immediate = state.withLock { state in
                    state.park(
                        subscriber, token: token, timer: timer, continuation: continuation,
                        isCancelled: Task.isCancelled, now: clock.now
                    )
                }
                if let immediate {
                    continuation.resume(returning: immediate)
                }
            }
        } onCancel: {
            wake(subscriber, token: token, with: .cancelled)
        }
    }

    /// Resumes the parked iterator `token`, if it is still parked.
    private func wake(_ subscriber: SubscriberID, token: UInt64, with outcome: WaitOutcome) {
        let waiter = state.withLock { $0.unpark(subscriber, token: token) }
        waiter?.continuation.resume(returning: outcome)
    }

    // MARK: Settling

    func settle(
        _ settlement: ConsumerCore.Settlement,
        consumer: ConsumerID,
        sequence: UInt64,
        attempt: UInt32
    ) throws(EventBusError) {
        // No clock read up front: an ack needs none (the state reads it if it does).
        let effects = try state.withLock { (state) throws(EventBusError) -> BrokerEffects in
            var effects = BrokerEffects()
            try state.settle(
                settlement, consumer: consumer, sequence: sequence, attempt: attempt, clock: clock, effects: &effects
            )
            return effects
        }
        run(effects)
    }

    /// Ends `subscriber`; with `handingBack`, also takes back what it holds unsettled (a group member's).
    func closeSubscriber(_ subscriber: SubscriberID, consumer: ConsumerID, handingBack held: HeldDeliveries?) {
        withState { state, now, effects in
            state.closeSubscriber(subscriber, now: now, effects: &effects)
            if let held {
                state.handBack(held, to: consumer, now: now, effects: &effects)
            }
        }
    }
}

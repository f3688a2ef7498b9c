import EventBus
import Synchronization
import Testing

/// How many handlers run at once, and the most that ever did.
final class ConcurrencyGauge: Sendable {
    private let state = Mutex<(running: Int, highest: Int)>((0, 0))

    func enter() {
        state.withLock { state in
            state.running += 1
            state.highest = max(state.highest, state.running)
        }
    }

    func leave() {
        state.withLock { $0.running -= 1 }
    }

    var highest: Int {
        state.withLock { $0.highest }
    }
}

extension EventBusConformance {
    static let consumeHandlingChecks: [Check] = [
        longHandlerKeepsItsDelivery, cancelledHandlerNaksWithDelay, handlerConcurrencyIsBounded,
        handlerConcurrencyOverLimitIsRejected,
    ]

    static let longHandlerKeepsItsDelivery = Check(
        "longHandlerKeepsItsDelivery",
        "consume() sends in-progress for a handler running three ack waits: it completes once and the event is not delivered again (1 and 2 handlers at once)"
    ) { context in
        // Twice the timing's ack wait: the extension's first in-progress leaves at half of it, and
        // under a loaded test machine a timer can run a few hundred milliseconds late.
        let ackWait = context.timing.ackWait * 2
        // With 2 handlers the loop waits for the next delivery while the long one runs, so a redelivery
        // would arrive then (a backend may only notice an expired ack wait while a subscriber waits).
        for concurrency in [1, 2] {
            let tail = "extend.long\(concurrency)"
            let options = SubscriptionOptions(maxInFlight: 4, ackWait: ackWait, maxDeliver: 5, handlerConcurrency: concurrency)
            let attempts = Recorder<Int>()
            let finished = Recorder<Bool>()
            let ended = Recorder<Bool>()
            let subscription = try await context.bus.subscribe(context.pattern(tail), options: options)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask(operation: {
                    defer { ended.append(true) }
                    try await context.bus.consume(subscription, options: options) { delivery in
                        attempts.append(delivery.deliveryCount)
                        if attempts.count == 1 {
                            try await Task.sleep(for: ackWait * 3)
                        }
                        finished.append(true)
                    }
                })
                try await context.bus.publish(context.event(tail))
                try #require(
                    await context.expectEventually("the long handler finished", timeout: ackWait * 3 + context.timing.stepTimeout) {
                        finished.count >= 1
                    })
                // A redelivery made while one handler ran would reach a sequential consumer only now.
                try await Task.sleep(for: ackWait + context.timing.quietPeriod)
                #expect(
                    attempts.all == [1],
                    "concurrency \(concurrency): attempts delivered \(attempts.all); the long handler's event was delivered again")
                try await context.closeAndAwaitEnd([subscription], ended: ended, expected: 1, group: &group)
            }
        }
    }

    static let cancelledHandlerNaksWithDelay = Check(
        "cancelledHandlerNaksWithDelay",
        requires: .consumerGroups,
        "cancelling consume() with onCancel .nak(delay:) brings its running handlers' events back to the group after the delay, not before, and not dead-lettered (1 and 2 handlers at once)"
    ) { context in
        let clock = ContinuousClock()
        let delay = context.timing.ackWait * 1.5
        let longAckWait = context.longAckWait
        for concurrency in [1, 2] {
            let tail = "cancel.nak\(concurrency)"
            let options = SubscriptionOptions(
                group: "cancelnak\(concurrency)", ackWait: longAckWait, maxDeliver: 5, handlerConcurrency: concurrency,
                onCancel: .nak(delay: delay))
            let a = try await context.bus.subscribe(context.pattern(tail), options: options)
            let aTook = Recorder<String>()
            try await withThrowingTaskGroup(of: Void.self) { memberA in
                // Member A in a group of its own, so that it alone can be cancelled.
                memberA.addTask {
                    try await context.bus.consume(a, options: options) { delivery in
                        aTook.append(delivery.event.id)
                        // Busy until cancelled.
                        try await Task.sleep(for: longAckWait)
                    }
                }
                var ids: [String] = []
                for index in 0..<concurrency {
                    let event = context.event(tail, index)
                    ids.append(event.id)
                    try await context.bus.publish(event)
                }
                try #require(await context.expectEventually("member A's handlers took \(concurrency) events") { aTook.count >= concurrency })
                let ended = Recorder<Bool>()
                let bGot = Recorder<(id: String, attempt: Int, at: ContinuousClock.Instant)>()
                let b = try await context.bus.subscribe(context.pattern(tail), options: options)
                try await withThrowingTaskGroup(of: Void.self) { group in
                    iterate(b, in: &group, ended: ended) { delivery in
                        bGot.append((delivery.event.id, delivery.deliveryCount, clock.now))
                        try await delivery.ack()
                    }
                    let cancelledAt = clock.now
                    memberA.cancelAll()
                    _ = await memberA.nextResult()
                    try #require(
                        await context.expectEventually(
                            "member B got \(bGot.count) of the \(concurrency) events A's cancelled handlers held",
                            timeout: delay + context.timing.stepTimeout
                        ) { bGot.count >= concurrency })
                    let got = bGot.all
                    #expect(Set(got.map { $0.id }) == Set(ids), "B got \(got.map { $0.id }), A's handlers held \(ids)")
                    for delivery in got {
                        let gap = cancelledAt.duration(to: delivery.at)
                        #expect(gap >= delay * 0.9, "concurrency \(concurrency): back \(gap) after the cancel; onCancel says nak after \(delay)")
                        #expect(delivery.attempt == 2, "concurrency \(concurrency): came back as attempt \(delivery.attempt), expected 2 (nak'd once)")
                    }
                    try await context.closeAndAwaitEnd([b], ended: ended, expected: 1, group: &group)
                }
            }
        }
    }

    static let handlerConcurrencyIsBounded = Check(
        "handlerConcurrencyIsBounded",
        "consume() with handlerConcurrency 3 runs three handlers at once and never more, each event once"
    ) { context in
        let concurrency = 3
        let total = 12
        let options = SubscriptionOptions(maxInFlight: 8, ackWait: context.longAckWait, handlerConcurrency: concurrency)
        let gauge = ConcurrencyGauge()
        let handled = Recorder<String>()
        let ended = Recorder<Bool>()
        let subscription = try await context.bus.subscribe(context.pattern("concurrent.*"), options: options)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask(operation: {
                defer { ended.append(true) }
                try await context.bus.consume(subscription, options: options) { delivery in
                    gauge.enter()
                    defer { gauge.leave() }
                    try await Task.sleep(for: .milliseconds(200))
                    handled.append(delivery.event.id)
                }
            })
            var ids: [String] = []
            for index in 0..<total {
                let event = context.event("concurrent.e\(index)", index)
                ids.append(event.id)
                try await context.bus.publish(event)
            }
            try #require(await context.expectEventually("handled \(handled.count) of \(total)") { handled.count >= total })
            try await Task.sleep(for: context.timing.quietPeriod)
            #expect(gauge.highest == concurrency, "at most \(gauge.highest) handlers ran at once; expected exactly \(concurrency)")
            #expect(handled.all.sorted() == ids.sorted(), "each event handled once: \(describeMissing(ids, from: handled.all))")
            try await context.closeAndAwaitEnd([subscription], ended: ended, expected: 1, group: &group)
        }
    }

    static let handlerConcurrencyOverLimitIsRejected = Check(
        "handlerConcurrencyOverLimitIsRejected",
        "consume() with handlerConcurrency above maxInFlight is refused with invalidOption naming both values"
    ) { context in
        let options = SubscriptionOptions(maxInFlight: 2, handlerConcurrency: 3)
        do {
            try await context.bus.consume(context.pattern("overlimit"), options: options) { _ in }
            Issue.record("consume with handlerConcurrency 3 and maxInFlight 2 was accepted")
        } catch let error as EventBusError {
            #expect(error.code == .invalidOption, "expected invalidOption, got \(error)")
            #expect(
                error.message.contains("handlerConcurrency 3") && error.message.contains("maxInFlight 2"),
                "the message names neither value: \(error.message)")
        }
        await expectEventBusError(.invalidOption, "handlerConcurrency 0") {
            try await context.bus.consume(context.pattern("overlimit"), options: .init(handlerConcurrency: 0)) { _ in }
        }
    }
}

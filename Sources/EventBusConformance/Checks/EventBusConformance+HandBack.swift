import EventBus
import Testing

extension CheckContext {
    /// An ack wait no delivery in a check may reach: four step timeouts (and at least four of the harness's
    /// ack waits). A check that needs an event back promptly waits one step timeout for it, so only a
    /// prompt hand-back passes, never the ack wait's expiry.
    var longAckWait: Duration {
        max(timing.ackWait, timing.stepTimeout) * 4
    }
}

extension EventBusConformance {
    static let handBackChecks: [Check] = [
        consumeSubscriptionIsReady, brokenLoopHandsBackAtOnce, cancelledConsumeHandsBackAtOnce,
        closeHandsBackUnsettled,
    ]

    static let consumeSubscriptionIsReady = Check(
        "consumeSubscriptionIsReady",
        requires: .consumerGroups,
        "consume(subscription) started in a task right after subscribe returned handles every event published from then on (new group, start .new)"
    ) { context in
        let total = context.scaled(short: 100, long: 1000)
        let pattern = try context.pattern("ready.*")
        let options = SubscriptionOptions(group: "ready")
        let handled = Recorder<String>()
        let ended = Recorder<Bool>()
        var ids: [String] = []
        try await withThrowingTaskGroup(of: Void.self) { group in
            // The readiness point: the group's consumer exists once subscribe returns.
            let subscription = try await context.bus.subscribe(pattern, options: options)
            // Half before the consuming task even starts: a backend that made its consumer on the first
            // next() would miss these for good.
            for index in 0..<total / 2 {
                let event = context.event("ready.before", index)
                ids.append(event.id)
                try await context.bus.publish(event)
            }
            group.addTask(operation: {
                defer { ended.append(true) }
                try await context.bus.consume(subscription, options: options) { delivery in
                    handled.append(delivery.event.id)
                }
            })
            for index in total / 2..<total {
                let event = context.event("ready.after", index)
                ids.append(event.id)
                try await context.bus.publish(event)
            }
            try await context.expectEventually("the group handled \(Set(handled.all).count) of \(total) events") {
                Set(handled.all).count >= total
            }
            let complete = Set(handled.all) == Set(ids)
            #expect(complete, "events missed by a group consumed right after subscribe: \(describeMissing(ids, from: handled.all))")
            try await context.closeAndAwaitEnd([subscription], ended: ended, expected: 1, group: &group)
        }
    }

    /// Member A of a fresh group (ack wait ``CheckContext/longAckWait``) subscribes and `total` events are
    /// published, so A alone has been offered all of them; once A has taken one, member B joins from another
    /// client. Returns A's subscription, B's subscription and what B handled; B handles (and acks)
    /// everything it gets.
    private static func startHandBackScenario(
        _ context: CheckContext,
        tail: String,
        total: Int,
        in group: inout ThrowingTaskGroup<Void, any Error>,
        ended: Recorder<Bool>,
        memberA: @escaping @Sendable (EventSubscription, SubscriptionOptions) async throws -> Void,
        aTook: Recorder<String>
    ) async throws -> (a: EventSubscription, b: EventSubscription, bHandled: Recorder<String>, ids: [String])? {
        let pattern = try context.pattern(tail)
        // The default maxInFlight, so a pulling backend prefetches many for A.
        let options = SubscriptionOptions(group: "handback", ackWait: context.longAckWait)
        let a = try await context.bus.subscribe(pattern, options: options)
        var ids: [String] = []
        for index in 0..<total {
            let event = context.event(tail, index)
            ids.append(event.id)
            try await context.bus.publish(event)
        }
        group.addTask(operation: {
            defer { ended.append(true) }
            try await memberA(a, options)
        })
        guard try await context.expectEventually("member A took its first event", { aTook.count >= 1 }) else {
            return nil
        }
        let b = try await context.connect().subscribe(pattern, options: options)
        let bHandled = Recorder<String>()
        iterate(b, in: &group, ended: ended) { delivery in
            bHandled.append(delivery.event.id)
            try await delivery.ack()
        }
        return (a, b, bHandled, ids)
    }

    static let brokenLoopHandsBackAtOnce = Check(
        "brokenLoopHandsBackAtOnce",
        requires: .consumerGroups,
        "a group member that breaks out of its loop after one event hands the rest it received to another member at once, not after the ack wait"
    ) { context in
        let total = context.scaled(short: 40, long: 200)
        let aTook = Recorder<String>()
        let release = Recorder<Bool>()
        let ended = Recorder<Bool>()
        try await withThrowingTaskGroup(of: Void.self) { group in
            guard
                let scenario = try await startHandBackScenario(
                    context, tail: "handback.break", total: total, in: &group, ended: ended,
                    memberA: { subscription, _ in
                        for try await delivery in subscription {
                            aTook.append(delivery.event.id)
                            _ = try await waitUntil(timeout: context.timing.stepTimeout) { release.count > 0 }
                            try await delivery.ack()
                            break
                        }
                    },
                    aTook: aTook
                )
            else {
                group.cancelAll()
                return
            }
            release.append(true)
            let expected = Set(scenario.ids).subtracting(aTook.all)
            let handedBack = try await context.expectEventually(
                "member B handled \(Set(scenario.bHandled.all).intersection(expected).count) of the \(expected.count) events member A did not handle"
            ) {
                expected.isSubset(of: scenario.bHandled.all)
            }
            if !handedBack {
                Issue.record("still missing after A broke out of its loop: \(describeMissing(expected, from: scenario.bHandled.all))")
            }
            // A's loop ended by itself; B's ends when it is closed. A stays open until now: the hand-back
            // must come from leaving the loop, not from closing or releasing the subscription.
            try await context.closeAndAwaitEnd([scenario.b, scenario.a], ended: ended, expected: 2, group: &group)
        }
    }

    static let cancelledConsumeHandsBackAtOnce = Check(
        "cancelledConsumeHandsBackAtOnce",
        requires: .consumerGroups,
        "cancelling a group member's consume() while its handler runs hands that event and the rest it received to another member at once"
    ) { context in
        let total = context.scaled(short: 40, long: 200)
        let aTook = Recorder<String>()
        let cancelA = Recorder<Bool>()
        let ended = Recorder<Bool>()
        let longAckWait = context.longAckWait
        try await withThrowingTaskGroup(of: Void.self) { group in
            guard
                let scenario = try await startHandBackScenario(
                    context, tail: "handback.cancel", total: total, in: &group, ended: ended,
                    memberA: { subscription, options in
                        // A task group of its own, so that only A's consume is cancelled.
                        try await withThrowingTaskGroup(of: Void.self) { memberGroup in
                            memberGroup.addTask(operation: {
                                try await context.bus.consume(subscription, options: options) { delivery in
                                    aTook.append(delivery.event.id)
                                    // Busy until cancelled: the event is neither acked nor failed.
                                    try await Task.sleep(for: longAckWait)
                                }
                            })
                            _ = try await waitUntil(timeout: context.timing.stepTimeout) { cancelA.count > 0 }
                            memberGroup.cancelAll()
                            do {
                                try await memberGroup.waitForAll()
                            } catch is CancellationError {
                                // consume may end by rethrowing the cancellation.
                            }
                        }
                    },
                    aTook: aTook
                )
            else {
                group.cancelAll()
                return
            }
            cancelA.append(true)
            // Every event, the one A's cancelled handler held included: it was never settled.
            let expected = Set(scenario.ids)
            let handedBack = try await context.expectEventually(
                "member B handled \(Set(scenario.bHandled.all).intersection(expected).count) of \(expected.count) events after A's consume was cancelled"
            ) {
                expected.isSubset(of: scenario.bHandled.all)
            }
            if !handedBack {
                Issue.record("still missing after A was cancelled: \(describeMissing(expected, from: scenario.bHandled.all))")
            }
            try await context.closeAndAwaitEnd([scenario.b], ended: ended, expected: 2, group: &group)
        }
    }

    static let closeHandsBackUnsettled = Check(
        "closeHandsBackUnsettled",
        requires: .consumerGroups,
        "closing a group member while its code holds an unsettled delivery redelivers that event (and the rest it received) to another member at once"
    ) { context in
        let total = context.scaled(short: 40, long: 200)
        let aTook = Recorder<String>()
        let closed = Recorder<Bool>()
        let ended = Recorder<Bool>()
        try await withThrowingTaskGroup(of: Void.self) { group in
            guard
                let scenario = try await startHandBackScenario(
                    context, tail: "handback.close", total: total, in: &group, ended: ended,
                    memberA: { subscription, _ in
                        // Holds the iterator and one unsettled delivery until the check is done, so that only
                        // close() can hand them back.
                        var iterator = subscription.makeAsyncIterator()
                        guard let delivery = try await iterator.next() else { return }
                        aTook.append(delivery.event.id)
                        _ = try await waitUntil(timeout: context.timing.stepTimeout) { closed.count > 0 }
                        withExtendedLifetime(iterator) {}
                        withExtendedLifetime(delivery) {}
                    },
                    aTook: aTook
                )
            else {
                group.cancelAll()
                return
            }
            await scenario.a.close()
            let expected = Set(scenario.ids)
            let handedBack = try await context.expectEventually(
                "member B handled \(Set(scenario.bHandled.all).intersection(expected).count) of \(expected.count) events after A was closed holding one"
            ) {
                expected.isSubset(of: scenario.bHandled.all)
            }
            if !handedBack {
                Issue.record("still missing after A was closed: \(describeMissing(expected, from: scenario.bHandled.all))")
            }
            closed.append(true)
            try await context.closeAndAwaitEnd([scenario.b], ended: ended, expected: 2, group: &group)
        }
    }
}

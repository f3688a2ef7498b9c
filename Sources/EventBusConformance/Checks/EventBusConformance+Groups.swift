import EventBus
import Testing

extension EventBusConformance {
    static let groupChecks: [Check] = [groupsEachGetEverythingAndSplitWork, loadBalanceAcrossWorkers, resubscribeManyTimesLosesNothing]

    /// Runs `members` consumers of `group` on `pattern` in `outer`, each recording the ids it handled.
    static func startGroupMembers(
        _ members: Int,
        group: String,
        pattern: SubjectPattern,
        bus: any EventBus,
        work: Duration,
        in outer: inout ThrowingTaskGroup<Void, any Error>,
        ended: Recorder<Bool>
    ) async throws -> (subscriptions: [EventSubscription], handled: [Recorder<String>]) {
        var subscriptions: [EventSubscription] = []
        var handled: [Recorder<String>] = []
        for _ in 0..<members {
            let subscription = try await bus.subscribe(pattern, options: .init(group: group))
            let recorder = Recorder<String>()
            iterate(subscription, in: &outer, ended: ended) { delivery in
                try await Task.sleep(for: work)
                recorder.append(delivery.event.id)
                try await delivery.ack()
            }
            subscriptions.append(subscription)
            handled.append(recorder)
        }
        return (subscriptions, handled)
    }

    static let groupsEachGetEverythingAndSplitWork = Check(
        "groupsEachGetEverythingAndSplitWork",
        requires: .consumerGroups,
        "two groups each get every event; inside a group the members split them and none gets all"
    ) { context in
        let total = context.scaled(short: 150, long: 1500)
        let members = 3
        let ended = Recorder<Bool>()
        try await withThrowingTaskGroup(of: Void.self) { group in
            let pattern = try context.pattern("groups.*")
            let billing = try await startGroupMembers(
                members, group: "billing", pattern: pattern, bus: context.bus, work: .microseconds(200), in: &group, ended: ended
            )
            let shipping = try await startGroupMembers(
                members, group: "shipping", pattern: pattern, bus: try await context.connect(), work: .microseconds(200),
                in: &group, ended: ended
            )
            var ids: Set<String> = []
            for index in 0..<total {
                let event = context.event("groups.\(index % 2 == 0 ? "even" : "odd")", index)
                ids.insert(event.id)
                try await context.bus.publish(event)
            }
            for (name, recorders) in [("billing", billing.handled), ("shipping", shipping.handled)] {
                // 1,500 handlers that each sleep: their pace is the machine's timers under load, so the
                // wait fails when deliveries stop, not after a fixed budget.
                let handledCount = { recorders.map(\.count).reduce(0, +) }
                try await context.expectEventually("group \(name) handled \(handledCount()) of \(total)", progressing: handledCount) {
                    handledCount() >= total
                }
            }
            try await Task.sleep(for: context.timing.quietPeriod)
            for (name, recorders) in [("billing", billing.handled), ("shipping", shipping.handled)] {
                let all = recorders.flatMap(\.all)
                let complete = Set(all) == ids
                #expect(complete, "group \(name): \(describeMissing(ids, from: all))")
                #expect(all.count == total, "group \(name) handled \(all.count) deliveries for \(total) events")
                let counts = recorders.map(\.count)
                let split = counts.allSatisfy { $0 > 0 && $0 < total }
                #expect(split, "group \(name) did not split the work: \(counts)")
            }
            try await context.closeAndAwaitEnd(
                billing.subscriptions + shipping.subscriptions, ended: ended, expected: 2 * members, group: &group
            )
        }
    }

    /// The band every worker's count must fall in: at most three times the fair share, and at least a
    /// quarter of it, or fewer where a quarter is within chance. A server that spreads events at
    /// random (push deliver groups) gives each of 25 workers a binomial count: with 12 each on average
    /// (the short profile), one worker in a hundred runs gets two or fewer, so there the rule is four
    /// standard deviations below the fair share, and at least one event.
    static func loadBalanceBand(fair: Double, workers: Int) -> ClosedRange<Double> {
        let deviation = (fair * (1 - 1 / Double(workers))).squareRoot()
        let lowest = max(1, min(0.25 * fair, fair - 4 * deviation))
        return lowest...(3 * fair)
    }

    static let loadBalanceAcrossWorkers = Check(
        "loadBalanceAcross25Workers",
        requires: .consumerGroups,
        "25 members of one group each handle between a quarter (or what chance allows) and three times their fair share"
    ) { context in
        let workers = 25
        let total = workers * context.scaled(short: 12, long: 100)
        let ended = Recorder<Bool>()
        try await withThrowingTaskGroup(of: Void.self) { group in
            let members = try await startGroupMembers(
                workers, group: "workers", pattern: try context.pattern("balance"), bus: context.bus,
                work: .milliseconds(1), in: &group, ended: ended
            )
            for index in 0..<total {
                try await context.bus.publish(context.event("balance", index))
            }
            try await context.expectEventually("workers handled \(members.handled.map(\.count).reduce(0, +)) of \(total)") {
                members.handled.map(\.count).reduce(0, +) >= total
            }
            let counts = members.handled.map(\.count)
            let fair = Double(total) / Double(workers)
            let band = loadBalanceBand(fair: fair, workers: workers)
            let balanced = counts.allSatisfy { band.contains(Double($0)) }
            #expect(
                balanced,
                "worker counts outside \(band) (fair share \(fair) events): \(counts.sorted())"
            )
            #expect(counts.reduce(0, +) == total)
            try await context.closeAndAwaitEnd(members.subscriptions, ended: ended, expected: workers, group: &group)
        }
    }

    static let resubscribeManyTimesLosesNothing = Check(
        "resubscribeManyTimesLosesNothing",
        requires: .consumerGroups,
        "a group member closed and recreated many times while events flow loses none of them"
    ) { context in
        let total = context.scaled(short: 200, long: 2000)
        let cycles = context.scaled(short: 10, long: 50)
        let handled = Recorder<String>()
        let published = Recorder<String>()
        let pattern = try context.pattern("resubscribe")
        let options = SubscriptionOptions(group: "resubscriber", ackWait: context.timing.ackWait)
        // Create the group before publishing, so it starts at the first event.
        await (try await context.bus.subscribe(pattern, options: options)).close()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask(operation: {
                for index in 0..<total {
                    let event = context.event("resubscribe", index)
                    try await context.bus.publish(event)
                    published.append(event.id)
                    if index % 20 == 0 {
                        try await Task.sleep(for: .milliseconds(1))
                    }
                }
            })
            for cycle in 0..<cycles {
                let client = cycle % 2 == 0 ? context.bus : try await context.connect()
                let subscription = try await client.subscribe(pattern, options: options)
                let take = max(1, total / cycles / 2)
                _ = try await withTimeLimit(context.timing.stepTimeout, "cycle \(cycle)", onTimeout: { await subscription.close() }) {
                    var taken = 0
                    for try await delivery in subscription {
                        handled.append(delivery.event.id)
                        try await delivery.ack()
                        taken += 1
                        if taken == take { break }
                    }
                    return taken
                }
                await subscription.close()
            }
            try await group.waitForAll()
        }
        // One last member drains whatever is left.
        let subscription = try await context.bus.subscribe(pattern, options: options)
        _ = try await withTimeLimit(context.timing.stepTimeout, "draining the rest", onTimeout: { await subscription.close() }) {
            var seen = Set(handled.all)
            if seen.count < total {
                for try await delivery in subscription {
                    handled.append(delivery.event.id)
                    seen.insert(delivery.event.id)
                    try await delivery.ack()
                    if seen.count >= total { break }
                }
            }
            return 0
        }
        await subscription.close()
        let lost = Set(published.all).subtracting(handled.all).count
        #expect(lost == 0, "events lost across \(cycles) resubscriptions: \(describeMissing(published.all, from: handled.all))")
        let strangers = Set(handled.all).subtracting(published.all).count
        #expect(strangers == 0, "\(strangers) events arrived that were never published")
    }
}

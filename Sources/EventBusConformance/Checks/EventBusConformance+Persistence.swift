#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import EventBus
import Testing

extension EventBusConformance {
    static let persistenceChecks: [Check] = [startPositions, survivesRestart, exactlyOncePublish]

    /// Reads up to `count` events from a new subscription and returns their payload indexes, waiting at most
    /// the step timeout, then checks that nothing more arrives within the quiet period.
    static func indexes(
        _ context: CheckContext,
        pattern: SubjectPattern,
        options: SubscriptionOptions,
        expecting count: Int,
        bus: (any EventBus)? = nil
    ) async throws -> [Int] {
        let received = Recorder<Int>()
        let ended = Recorder<Bool>()
        let subscription = try await (bus ?? context.bus).subscribe(pattern, options: options)
        try await withThrowingTaskGroup(of: Void.self) { group in
            iterate(subscription, in: &group, ended: ended) { delivery in
                received.append(Int(payloadText(delivery.event).split(separator: "#").last ?? "") ?? -1)
                try await delivery.ack()
            }
            try await context.expectEventually("\(received.count) of \(count) retained events from \(options.start)") {
                received.count >= count
            }
            try await Task.sleep(for: context.timing.quietPeriod)
            try await context.closeAndAwaitEnd([subscription], ended: ended, expected: 1, group: &group)
        }
        return received.all
    }

    static let startPositions = Check(
        "startPositions",
        requires: .persistent,
        "a new group starts at .new, .all, a sequence or a time as asked"
    ) { context in
        let pattern = try context.pattern("start")
        var receipts: [PublishReceipt] = []
        var middle = Date()
        for index in 0..<10 {
            if index == 5 {
                try await Task.sleep(for: .milliseconds(100))
                middle = Date()
                try await Task.sleep(for: .milliseconds(100))
            }
            receipts.append(try await context.bus.publish(context.event("start", index)))
        }
        let all = try await indexes(context, pattern: pattern, options: .init(group: "from-all", start: .all), expecting: 10)
        #expect(all == Array(0..<10), ".all delivered \(all)")
        let fromSequence = try await indexes(
            context, pattern: pattern, options: .init(group: "from-seq", start: .sequence(receipts[6].sequence)), expecting: 4
        )
        #expect(fromSequence == Array(6..<10), ".sequence(\(receipts[6].sequence)) delivered \(fromSequence)")
        let fromTime = try await indexes(context, pattern: pattern, options: .init(group: "from-time", start: .time(middle)), expecting: 5)
        #expect(fromTime == Array(5..<10), ".time delivered \(fromTime)")

        let newOnly = try await context.bus.subscribe(pattern, options: .init(group: "from-new", start: .new))
        try await context.bus.publish(context.event("start", 10))
        let first = try await withTimeLimit(context.timing.stepTimeout, ".new subscriber's first event", onTimeout: { await newOnly.close() }) {
            for try await delivery in newOnly {
                try await delivery.ack()
                return payloadText(delivery.event)
            }
            return "nothing"
        }
        #expect(first == "start#10", ".new delivered \(first) first")
        await newOnly.close()
        // An existing group keeps its place whatever start a new member asks for.
        let rejoined = try await indexes(context, pattern: pattern, options: .init(group: "from-all", start: .all), expecting: 1)
        #expect(rejoined == [10], "a member rejoining group from-all got \(rejoined), expected only the new event")
    }

    static let survivesRestart = Check(
        "survivesRestart",
        requires: [.persistent, .survivesRestart],
        "retained events and a group's position survive a restart of the backend"
    ) { context in
        let restart = try #require(context.harness.restart, "the backend declares survivesRestart but the harness has no restart hook")
        let pattern = try context.pattern("restart")
        let options = SubscriptionOptions(group: "survivor", start: .all)
        for index in 0..<10 {
            try await context.bus.publish(context.event("restart", index))
        }
        let before = try await indexes(context, pattern: pattern, options: options, expecting: 10)
        #expect(before == Array(0..<10))
        try await context.bus.publish(context.event("restart", 10))
        let restarted = try await restart(context.bus)
        context.extraClients.append(restarted)
        let after = try await indexes(context, pattern: pattern, options: options, expecting: 1, bus: restarted)
        #expect(after == [10], "after the restart the group got \(after), expected only the event it had not seen")
        let everything = try await indexes(
            context, pattern: pattern, options: .init(group: "late", start: .all), expecting: 11, bus: restarted
        )
        #expect(everything == Array(0...10), "after the restart .all delivered \(everything)")
    }

    static let exactlyOncePublish = Check(
        "exactlyOncePublish",
        requires: .exactlyOncePublish,
        "racing publishers of the same ids on two clients store each id once, and exactly one of them is told it was first"
    ) { context in
        let ids = (0..<context.scaled(short: 50, long: 500)).map { "once-\($0)-\(UUID().uuidString)" }
        let other = try await context.connect()
        let receipts = Recorder<(String, PublishReceipt)>()
        let received = Recorder<String>()
        let ended = Recorder<Bool>()
        let subscription = try await context.bus.subscribe(context.pattern("once"), options: .init())
        try await withThrowingTaskGroup(of: Void.self) { group in
            iterate(subscription, in: &group, ended: ended) { delivery in
                received.append(delivery.event.id)
                try await delivery.ack()
            }
            try await withThrowingTaskGroup(of: Void.self) { publishing in
                for lane in 0..<8 {
                    let client = lane % 2 == 0 ? context.bus : other
                    publishing.addTask(operation: {
                        for id in lane % 4 < 2 ? ids : ids.reversed() {
                            receipts.append((id, try await client.publish(context.event("once", id: id))))
                        }
                    })
                }
                try await publishing.waitForAll()
            }
            var byID: [String: [PublishReceipt]] = [:]
            for (id, receipt) in receipts.all {
                byID[id, default: []].append(receipt)
            }
            let notExactlyOneFirst = ids.filter { id in (byID[id] ?? []).filter { !$0.duplicate }.count != 1 }
            #expect(
                notExactlyOneFirst.isEmpty,
                "\(notExactlyOneFirst.count) ids did not have exactly one publish told it was first, e.g. \(notExactlyOneFirst.prefix(3))"
            )
            let splitSequences = ids.filter { id in Set((byID[id] ?? []).map(\.sequence)).count != 1 }
            #expect(splitSequences.isEmpty, "\(splitSequences.count) ids have receipts with different sequences, e.g. \(splitSequences.prefix(3))")
            try await context.expectEventually("received \(received.count) of \(ids.count)") { received.count >= ids.count }
            try await Task.sleep(for: context.timing.quietPeriod)
            #expect(received.count == ids.count, "\(received.count) deliveries for \(ids.count) distinct ids")
            let complete = Set(received.all) == Set(ids)
            #expect(complete, "\(describeMissing(ids, from: received.all))")
            try await context.closeAndAwaitEnd([subscription], ended: ended, expected: 1, group: &group)
        }
    }
}

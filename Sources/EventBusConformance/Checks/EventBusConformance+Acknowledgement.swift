import EventBus
import Testing

/// The error a conformance handler throws on purpose.
struct IntendedFailure: Error, CustomStringConvertible {
    var text: String
    var description: String { text }
}

extension EventBusConformance {
    static let acknowledgementChecks: [Check] = [
        nakRedeliveryAndContinue, noDeliveryWhileAckHeld, ackWaitExpiryRedelivers, nakDelayAndBackoff,
        settlingTwiceThrows,
    ]

    static let nakRedeliveryAndContinue = Check(
        "nakRedeliveryAndContinue",
        "a handler that throws gets the event again with a higher attempt, and events behind it keep flowing"
    ) { context in
        let total = context.scaled(short: 60, long: 600)
        let succeeded = Recorder<String>()
        let attempts = Recorder<(Int, Int)>()
        let consumer = try await context.connect()
        let ended = Recorder<Bool>()
        let probes = Recorder<Bool>()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask(operation: {
                defer { ended.append(true) }
                try await consumer.consume(context.pattern("retry"), options: .init(maxDeliver: 5)) { delivery in
                    if CheckContext.isProbe(delivery.event) {
                        probes.append(true)
                        return
                    }
                    let index = Int(payloadText(delivery.event).split(separator: "#").last ?? "") ?? -1
                    attempts.append((index, delivery.deliveryCount))
                    // Every third event fails twice; every fifth is nak'd explicitly once.
                    if index % 3 == 0 && delivery.deliveryCount <= 2 {
                        throw IntendedFailure(text: "failing \(index) on attempt \(delivery.deliveryCount)")
                    }
                    if index % 5 == 1 && delivery.deliveryCount == 1 {
                        try await delivery.nak(delay: nil)
                        return
                    }
                    succeeded.append(delivery.event.id)
                }
            })
            try await context.awaitConsumerReady("retry", probesSeen: probes)
            var ids: [String] = []
            for index in 0..<total {
                let event = context.event("retry", index)
                ids.append(event.id)
                try await context.bus.publish(event)
            }
            try await context.expectEventually("handled \(succeeded.count) of \(total) events") { succeeded.count >= total }
            try await Task.sleep(for: context.timing.quietPeriod)
            let missing = describeMissing(ids, from: succeeded.all)
            #expect(Set(succeeded.all).count == total, "some events were never handled successfully: \(missing)")
            #expect(succeeded.count == total, "\(succeeded.count - total) events were handled successfully more than once")
            var maxAttempt: [Int: Int] = [:]
            for (index, attempt) in attempts.all {
                maxAttempt[index] = max(maxAttempt[index] ?? 0, attempt)
            }
            let wrongAttempts = (0..<total).filter { index in
                maxAttempt[index] != (index % 3 == 0 ? 3 : (index % 5 == 1 ? 2 : 1))
            }
            #expect(
                wrongAttempts.isEmpty,
                "\(wrongAttempts.count) events reached another last attempt than expected, e.g. \(wrongAttempts.prefix(3).map { ($0, maxAttempt[$0] ?? 0) })"
            )
            await consumer.close()
            if !(try await context.expectEventually("consume() returned after its client closed") { ended.count == 1 }) {
                group.cancelAll()
            }
        }
    }

    static let noDeliveryWhileAckHeld = Check(
        "noDeliveryWhileAckHeld",
        "with maxInFlight 1, nothing more is delivered until the outstanding delivery is settled"
    ) { context in
        let received = Recorder<Delivery>()
        let ended = Recorder<Bool>()
        let subscription = try await context.bus.subscribe(context.pattern("held"), options: .init(maxInFlight: 1))
        try await withThrowingTaskGroup(of: Void.self) { group in
            iterate(subscription, in: &group, ended: ended) { received.append($0) }
            for index in 0..<3 {
                try await context.bus.publish(context.event("held", index))
            }
            for step in 1...3 {
                try #require(await context.expectEventually("delivery \(step) arrived") { received.count >= step })
                try await Task.sleep(for: context.timing.quietPeriod)
                #expect(received.count == step, "\(received.count) deliveries while the ack of delivery \(step) is held")
                let held = received.all[step - 1]
                #expect(payloadText(held.event) == "held#\(step - 1)")
                if step == 2 {
                    // A nak also settles: the same event comes back before anything new.
                    try await held.nak(delay: .zero)
                    try #require(await context.expectEventually("nak'd delivery came back") { received.count >= 3 })
                    let again = received.all[2]
                    #expect(again.event.id == held.event.id && again.deliveryCount == 2)
                    try await again.ack()
                    try #require(await context.expectEventually("delivery after the nak'd one arrived") { received.count >= 4 })
                    try await received.all[3].ack()
                    break
                }
                try await held.ack()
            }
            try await Task.sleep(for: context.timing.quietPeriod)
            #expect(received.count == 4, "expected 4 deliveries in all (3 events, one redelivered), got \(received.count)")
            try await context.closeAndAwaitEnd([subscription], ended: ended, expected: 1, group: &group)
        }
    }

    static let ackWaitExpiryRedelivers = Check(
        "ackWaitExpiryRedelivers",
        "an unacknowledged delivery comes back after the ack wait, not before; inProgress() holds it off"
    ) { context in
        let ackWait = context.timing.ackWait
        let clock = ContinuousClock()
        let received = Recorder<(Delivery, ContinuousClock.Instant)>()
        let ended = Recorder<Bool>()
        let subscription = try await context.bus.subscribe(
            context.pattern("ackwait.*"), options: .init(ackWait: ackWait, maxDeliver: 10)
        )
        try await withThrowingTaskGroup(of: Void.self) { group in
            iterate(subscription, in: &group, ended: ended) { received.append(($0, clock.now)) }
            try await context.bus.publish(context.event("ackwait.expire"))
            try #require(await context.expectEventually("first delivery") { received.count >= 1 })
            try #require(
                await context.expectEventually("redelivery after the ack wait", timeout: ackWait * 3 + context.timing.stepTimeout) {
                    received.count >= 2
                }
            )
            let (first, firstAt) = received.all[0]
            let (second, secondAt) = received.all[1]
            #expect(second.event.id == first.event.id && second.deliveryCount == 2)
            let gap = firstAt.duration(to: secondAt)
            #expect(gap >= ackWait * 0.9, "redelivered after \(gap), before the ack wait of \(ackWait)")
            try await second.ack()
            await expectEventBusError(.alreadyAcknowledged, "acking the expired first delivery") { try await first.ack() }

            try await context.bus.publish(context.event("ackwait.progress"))
            try #require(await context.expectEventually("delivery of the long-running event") { received.count >= 3 })
            let (working, _) = received.all[2]
            let holdUntil = clock.now + ackWait * 2.5
            while clock.now < holdUntil {
                try await working.inProgress()
                try await Task.sleep(for: ackWait / 4)
            }
            #expect(received.count == 3, "redelivered although inProgress() was called every quarter ack wait")
            try await working.ack()
            try await Task.sleep(for: ackWait + context.timing.quietPeriod)
            #expect(received.count == 3, "an acknowledged event was delivered again")
            try await context.closeAndAwaitEnd([subscription], ended: ended, expected: 1, group: &group)
        }
    }

    static let nakDelayAndBackoff = Check(
        "nakDelayAndBackoff",
        "nak(delay:) and the options' backoff hold a redelivery back for at least the delay"
    ) { context in
        let unit = context.timing.ackWait / 4
        let clock = ContinuousClock()
        let received = Recorder<(Delivery, ContinuousClock.Instant)>()
        let ended = Recorder<Bool>()
        let subscription = try await context.bus.subscribe(
            context.pattern("backoff.*"),
            options: .init(ackWait: context.timing.ackWait * 4, maxDeliver: 4, backoff: [unit, unit * 2])
        )
        try await withThrowingTaskGroup(of: Void.self) { group in
            iterate(subscription, in: &group, ended: ended) { received.append(($0, clock.now)) }
            try await context.bus.publish(context.event("backoff.explicit"))
            try #require(await context.expectEventually("first delivery") { received.count >= 1 })
            let nakAt = clock.now
            try await received.all[0].0.nak(delay: unit * 2)
            try #require(await context.expectEventually("redelivery after nak(delay:)") { received.count >= 2 })
            let explicitGap = nakAt.duration(to: received.all[1].1)
            #expect(explicitGap >= unit * 2 * 0.9, "redelivered \(explicitGap) after nak(delay: \(unit * 2))")
            #expect(received.all[1].0.deliveryCount == 2)
            try await received.all[1].0.ack()

            try await context.bus.publish(context.event("backoff.options"))
            var lastNak = clock.now
            for attempt in 1...3 {
                try #require(await context.expectEventually("attempt \(attempt) of the backoff event") { received.count >= 2 + attempt })
                let (delivery, arrivedAt) = received.all[1 + attempt]
                #expect(delivery.deliveryCount == attempt)
                if attempt > 1 {
                    let expected = attempt == 2 ? unit : unit * 2
                    let gap = lastNak.duration(to: arrivedAt)
                    #expect(gap >= expected * 0.9, "attempt \(attempt) came \(gap) after the nak; backoff says \(expected)")
                }
                if attempt < 3 {
                    lastNak = clock.now
                    try await delivery.nak(delay: nil)
                } else {
                    try await delivery.ack()
                }
            }
            try await context.closeAndAwaitEnd([subscription], ended: ended, expected: 1, group: &group)
        }
    }

    static let settlingTwiceThrows = Check(
        "settlingTwiceThrows",
        "acting twice on one delivery throws alreadyAcknowledged; respond on a published event throws notARequest"
    ) { context in
        let subscription = try await context.bus.subscribe(context.pattern("twice"), options: .init())
        for index in 0..<3 {
            try await context.bus.publish(context.event("twice", index))
        }
        let deliveries = try await withTimeLimit(
            context.timing.stepTimeout, "receiving 3 events", onTimeout: { await subscription.close() }
        ) {
            var deliveries: [Delivery] = []
            for try await delivery in subscription {
                deliveries.append(delivery)
                if deliveries.count == 3 { break }
            }
            return deliveries
        }
        try #require(deliveries.count == 3)
        try await deliveries[0].ack()
        await expectEventBusError(.alreadyAcknowledged, "ack after ack") { try await deliveries[0].ack() }
        await expectEventBusError(.alreadyAcknowledged, "nak after ack") { try await deliveries[0].nak(delay: nil) }
        await expectEventBusError(.alreadyAcknowledged, "term after ack") { try await deliveries[0].term(reason: nil) }
        try await deliveries[1].nak(delay: .seconds(60))
        await expectEventBusError(.alreadyAcknowledged, "ack after nak") { try await deliveries[1].ack() }
        await expectEventBusError(.notARequest, "respond to a published event") {
            try await deliveries[2].respond(context.event("twice.reply"))
        }
        try await deliveries[2].ack()
        await subscription.close()
    }
}

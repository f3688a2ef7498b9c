import EventBus
import Testing

extension EventBusConformance {
    static let lifecycleChecks: [Check] = [
        concurrentCloseWhileDelivering, publisherCloseFlushesEverything, cancellationEndsSequence,
        closedClientEndsEverything,
    ]

    static let concurrentCloseWhileDelivering = Check(
        "concurrentCloseWhileDelivering",
        "closing subscriptions and the client while events are being delivered neither crashes nor hangs"
    ) { context in
        let rounds = context.scaled(short: 3, long: 10)
        for round in 0..<rounds {
            let client = try await context.connect()
            let ended = Recorder<Bool>()
            let received = Recorder<Bool>()
            var subscriptions: [EventSubscription] = []
            for member in 0..<4 {
                let options = SubscriptionOptions(group: member < 2 ? nil : "closing")
                subscriptions.append(try await client.subscribe(context.pattern("closing.r\(round)"), options: options))
            }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for subscription in subscriptions {
                    iterate(subscription, in: &group, ended: ended) { delivery in
                        received.append(true)
                        try? await delivery.ack()
                    }
                }
                group.addTask(operation: {
                    for index in 0..<200 {
                        try await context.bus.publish(context.event("closing.r\(round)", index))
                    }
                })
                _ = try await waitUntil(timeout: context.timing.stepTimeout) { received.count > 10 }
                // Close half the subscriptions and the client at once, from other tasks.
                let (grouplessOne, groupedOne) = (subscriptions[0], subscriptions[2])
                group.addTask(operation: { await grouplessOne.close() })
                group.addTask(operation: { await groupedOne.close() })
                group.addTask(operation: { await client.close() })
                try await context.expectEventually("all 4 iterations ended after the client closed (round \(round))") {
                    ended.count == 4
                }
                if ended.count < 4 {
                    group.cancelAll()
                }
                try await group.waitForAll()
            }
            await expectEventBusError(.closed, "publish on a closed client") {
                try await client.publish(context.event("closing.after"))
            }
        }
    }

    static let publisherCloseFlushesEverything = Check(
        "publisherCloseFlushesEverything",
        "a publisher client closing while publishes run: each publish either was stored and arrives, or failed with closed"
    ) { context in
        let total = context.scaled(short: 200, long: 2000)
        let publisher = try await context.connect()
        let subscription = try await context.bus.subscribe(context.pattern("flush"), options: .init())
        let received = Recorder<String>()
        let ended = Recorder<Bool>()
        let stored = Recorder<String>()
        let refused = Recorder<String>()
        try await withThrowingTaskGroup(of: Void.self) { group in
            iterate(subscription, in: &group, ended: ended) { delivery in
                received.append(delivery.event.id)
                try await delivery.ack()
            }
            try await withThrowingTaskGroup(of: Void.self) { publishing in
                for lane in 0..<4 {
                    publishing.addTask(operation: {
                        for index in stride(from: lane, to: total, by: 4) {
                            let event = context.event("flush", index)
                            do {
                                try await publisher.publish(event)
                                stored.append(event.id)
                            } catch let error as EventBusError where error.code == .closed {
                                refused.append(event.id)
                            }
                        }
                    })
                }
                _ = try await waitUntil(timeout: context.timing.stepTimeout) { stored.count >= total / 2 }
                await publisher.close()
                try await publishing.waitForAll()
            }
            #expect(stored.count + refused.count == total, "some publishes neither succeeded nor failed with closed")
            #expect(stored.count >= total / 2)
            try await context.expectEventually("received \(received.count) of \(stored.count) stored events") {
                received.count >= stored.count
            }
            let lost = Set(stored.all).subtracting(received.all).count
            #expect(lost == 0, "stored events were lost when their publisher closed: \(describeMissing(stored.all, from: received.all))")
            await expectEventBusError(.closed, "publish after close") { try await publisher.publish(context.event("flush")) }
            try await context.closeAndAwaitEnd([subscription], ended: ended, expected: 1, group: &group)
        }
    }

    static let cancellationEndsSequence = Check(
        "cancellationEndsSequence",
        "cancelling the task that iterates a subscription or runs consume() ends it promptly"
    ) { context in
        let ended = Recorder<String>()
        let received = Recorder<Bool>()
        try await withThrowingTaskGroup(of: Void.self) { group in
            let idle = try await context.bus.subscribe(context.pattern("cancel.idle"), options: .init())
            let busy = try await context.bus.subscribe(context.pattern("cancel.busy"), options: .init())
            group.addTask(operation: {
                defer { ended.append("idle") }
                for try await delivery in idle {
                    try await delivery.ack()
                }
            })
            group.addTask(operation: {
                defer { ended.append("busy") }
                for try await delivery in busy {
                    received.append(true)
                    try await delivery.ack()
                }
            })
            group.addTask(operation: {
                defer { ended.append("consume") }
                try await context.bus.consume(context.pattern("cancel.consume"), options: .init()) { _ in }
            })
            group.addTask(operation: {
                for index in 0..<100_000 {
                    try await context.bus.publish(context.event("cancel.busy", index))
                    if index % 50 == 0 { try await Task.sleep(for: .milliseconds(1)) }
                }
            })
            _ = try await waitUntil(timeout: context.timing.stepTimeout) { received.count > 20 }
            try await Task.sleep(for: .milliseconds(50))
            group.cancelAll()
            try await context.expectEventually("the idle, busy and consume loops ended after cancellation (ended: \(ended.all))") {
                ended.count == 3
            }
            do {
                try await group.waitForAll()
            } catch is CancellationError {
                // The publisher loop was cancelled mid-sleep, as intended.
            }
        }
    }

    static let closedClientEndsEverything = Check(
        "closedClientEndsEverything",
        "closing a client ends its waiting iterators and consume(), and refuses publish, subscribe and request"
    ) { context in
        let client = try await context.connect()
        let ended = Recorder<Bool>()
        try await withThrowingTaskGroup(of: Void.self) { group in
            let first = try await client.subscribe(context.pattern("closed.a"), options: .init())
            let second = try await client.subscribe(context.pattern("closed.>"), options: .init(maxInFlight: 1))
            iterate(first, in: &group, ended: ended) { try await $0.ack() }
            iterate(second, in: &group, ended: ended) { _ in }
            group.addTask(operation: {
                defer { ended.append(true) }
                try await client.consume(context.pattern("closed.c"), options: .init()) { _ in }
            })
            try await context.bus.publish(context.event("closed.b"))
            try await Task.sleep(for: context.timing.quietPeriod)
            await client.close()
            if !(try await context.expectEventually("2 iterators and consume() ended after close (\(ended.count) did)") { ended.count == 3 }) {
                group.cancelAll()
            }
            try await group.waitForAll()
        }
        await expectEventBusError(.closed, "publish after close") { try await client.publish(context.event("closed.a")) }
        await expectEventBusError(.closed, "subscribe after close") {
            _ = try await client.subscribe(context.pattern("closed.a"), options: .init())
        }
        if context.bus.capabilities.contains(.requestReply) {
            await expectEventBusError(.closed, "request after close") {
                _ = try await client.request(context.event("closed.a"), timeout: .seconds(1))
            }
        }
    }
}

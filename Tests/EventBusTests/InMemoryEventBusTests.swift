import EventBus
import Logging
import Testing

/// Collects warnings logged by the bus under test.
struct CollectingLogHandler: LogHandler {
    let messages: Locked<[String]>
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .info

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        messages.withLock { $0.append("\(event.level): \(event.message)") }
    }
}

@Suite("InMemoryEventBus specifics")
struct InMemoryEventBusTests {
    @Test func retainedLogIsBoundedAndASlowConsumerIsReported() async throws {
        let messages = Locked<[String]>([])
        let logger = Logger(label: "test") { _ in CollectingLogHandler(messages: messages) }
        let bus = try InMemoryEventBus(configuration: .init(maxEvents: 10), logger: logger)
        // A group that exists but never reads: it falls behind the log.
        let lagging = try await bus.subscribe("n", options: .init(group: "lagging"))
        for index in 1...25 {
            try await bus.publish(makeEvent("n", "\(index)"))
        }
        let statistics = bus.statistics()
        #expect(statistics.retainedEvents == 10)
        #expect(statistics.firstSequence == 16 && statistics.lastSequence == 25)
        #expect(statistics.discardedBeforeDelivery == 15)
        #expect(messages.withLock { $0 }.contains { $0.hasPrefix("warning") && $0.contains("group 'lagging'") })
        let replay = try await bus.subscribe("n", options: .init(start: .all))
        let replayed = try await take(10, from: replay).map(\.sequence)
        #expect(replayed == Array(16...25))
        // The lagging group gets what is still retained, from the oldest on.
        #expect(try await take(1, from: lagging)[0].sequence == 16)
        await bus.close()
    }

    @Test func aSubscriptionOffersNoDeliveryExecutorAndIteratesUnderANilPreference() async throws {
        let bus = try InMemoryEventBus()
        let subscription = try await bus.subscribe("n", options: .init(group: "plain"))
        // No delivery thread in one process: the README's loop runs on the global executor.
        #expect(subscription.deliveryExecutor == nil)
        try await bus.publish(makeEvent("n", "1"))
        let loop = Task(executorPreference: subscription.deliveryExecutor) { try await take(1, from: subscription) }
        #expect(try await loop.value.map(\.sequence) == [1])
        await bus.close()
    }

    @Test func payloadBytesAndAgeBoundTheLogToo() async throws {
        let bySize = try InMemoryEventBus(configuration: .init(maxBytes: 100))
        for _ in 0..<10 {
            try await bySize.publish(Event(subject: "b", type: "t", source: "/s", data: Array(repeating: 1, count: 30)))
        }
        #expect(bySize.statistics().retainedEvents == 3)
        let byAge = try InMemoryEventBus(configuration: .init(maxAge: .milliseconds(50)))
        try await byAge.publish(makeEvent("a"))
        try await Task.sleep(for: .milliseconds(80))
        try await byAge.publish(makeEvent("a"))
        #expect(byAge.statistics().retainedEvents == 1)
        await bySize.close()
        await byAge.close()
    }

    @Test func duplicateWindowForgetsAfterItsDuration() async throws {
        let bus = try InMemoryEventBus(configuration: .init(duplicateWindow: .milliseconds(50)))
        let event = makeEvent("d")
        #expect(try await !bus.publish(event).duplicate)
        #expect(try await bus.publish(event).duplicate)
        try await Task.sleep(for: .milliseconds(80))
        let later = try await bus.publish(event)
        #expect(!later.duplicate && later.sequence == 2, "an id outside the window is stored again")
        let off = try InMemoryEventBus(configuration: .init(duplicateWindow: .zero))
        try await off.publish(event)
        #expect(try await !off.publish(event).duplicate, "duplicateWindow .zero turns suppression off")
        #expect(bus.statistics().duplicatesSuppressed == 1)
        await bus.close()
        await off.close()
    }

    @Test func duplicateWindowIsBoundedByCount() async throws {
        let bus = try InMemoryEventBus(configuration: .init(duplicateWindowCapacity: 3))
        let first = makeEvent("d")
        try await bus.publish(first)
        for _ in 0..<3 { try await bus.publish(makeEvent("d")) }
        #expect(try await !bus.publish(first).duplicate, "the oldest id is forgotten past the capacity")
        await bus.close()
    }

    @Test func deliveriesPulledButNeverSeenComeBackWithoutCountingAnAttempt() async throws {
        let bus = try InMemoryEventBus()
        let options = SubscriptionOptions(group: "g")
        await (try await bus.subscribe("q", options: options)).close()
        for index in 0..<10 {
            try await bus.publish(makeEvent("q", "\(index)"))
        }
        // The first member takes one delivery; the rest of its batch was pulled but never returned to it.
        let first = try await take(1, from: try await bus.subscribe("q", options: options))
        #expect(first[0].deliveryCount == 1)
        let rest = try await take(9, from: try await bus.subscribe("q", options: options))
        #expect(rest.allSatisfy { $0.deliveryCount == 1 }, "attempts: \(rest.map(\.deliveryCount))")
        #expect(rest.map(\.sequence) == Array(2...10))
        await bus.close()
    }

    /// (The time limit cancels the test, ending a `next()` that waits for a delivery that never comes.)
    @Test(.timeLimit(.minutes(1)))
    func closingHandsBackUnsettledDeliveriesAtOnceWithoutCountingThem() async throws {
        let bus = try InMemoryEventBus()
        let options = SubscriptionOptions(group: "g", ackWait: .seconds(600))
        let first = try await bus.subscribe("q", options: options)
        for index in 0..<5 {
            try await bus.publish(makeEvent("q", "\(index)"))
        }
        var iterator = first.makeAsyncIterator()
        let held = try #require(try await iterator.next())
        let second = try await bus.newClient().subscribe("q", options: options)
        await first.close()
        let rest = try await take(5, from: second)
        #expect(rest.map(\.sequence) == Array(1...5), "the held one comes back first, then the unseen ones")
        #expect(rest.allSatisfy { $0.deliveryCount == 1 }, "attempts: \(rest.map(\.deliveryCount))")
        // Handed back, so the first member can no longer settle it (the redelivery has the same attempt).
        await #expect { try await held.ack() } throws: { ($0 as? EventBusError)?.code == .alreadyAcknowledged }
        #expect(bus.statistics().pendingDeliveries == 0)
        withExtendedLifetime(iterator) {}
        await second.close()
        await bus.close()
    }

    /// (The time limit cancels the test, ending a `next()` that waits for a delivery that never comes.)
    @Test(.timeLimit(.minutes(1)), arguments: [nil, "g"] as [String?])
    func breakingOutEndsTheLoopButLeavesTheLastDeliveryToTheApplication(group: String?) async throws {
        let bus = try InMemoryEventBus()
        let options = SubscriptionOptions(group: group, ackWait: .seconds(600))
        let subscription = try await bus.subscribe("q", options: options)
        for index in 0..<5 {
            try await bus.publish(makeEvent("q", "\(index)"))
        }
        var last: Delivery?
        for try await delivery in subscription {
            last = delivery
            break
        }
        try await #require(last).ack()
        var again = 0
        for try await _ in subscription { again += 1 }
        #expect(again == 0, "a broken-off subscription delivers nothing more")
        if group != nil {
            let other = try await bus.subscribe("q", options: options)
            #expect(try await take(4, from: other).map(\.sequence) == Array(2...5))
            await other.close()
        }
        await subscription.close()
        await bus.close()
    }

    @Test func membersOfAGroupMustAgreeOnItsSettings() async throws {
        let bus = try InMemoryEventBus()
        let first = try await bus.subscribe("g", options: .init(group: "billing", maxDeliver: 3))
        await #expect {
            _ = try await bus.subscribe("g", options: .init(group: "billing", maxDeliver: 4))
        } throws: { error in
            (error as? EventBusError)?.code == .invalidOption && "\(error)".contains("group 'billing'")
        }
        // A different start is fine: it only matters to a new group.
        _ = try await bus.subscribe("g", options: .init(group: "billing", start: .all, maxDeliver: 3))
        // The same group name on another pattern is another consumer.
        _ = try await bus.subscribe("h", options: .init(group: "billing"))
        await first.close()
        await bus.close()
    }

    @Test(arguments: [
        InMemoryEventBus.Configuration(maxEvents: 0), .init(maxBytes: 0), .init(maxAge: .zero),
        .init(duplicateWindow: .seconds(-1)), .init(duplicateWindowCapacity: -1), .init(requestQueueLimit: 0),
        .init(batchLimit: 0), .init(streamName: ""),
    ])
    func invalidConfigurationIsRejected(_ configuration: InMemoryEventBus.Configuration) {
        #expect(throws: EventBusError.self) { _ = try InMemoryEventBus(configuration: configuration) }
    }

    @Test func typedConsumeDeadLettersUndecodablePayloads() async throws {
        struct Payment: Codable, Sendable { var amount: Int }
        let bus = try InMemoryEventBus()
        let dead = try await bus.subscribe("deadletter.payments")
        let options = SubscriptionOptions(group: "payments")
        await (try await bus.subscribe("payments", options: options)).close()
        let amounts = Locked<[Int]>([])
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask(operation: {
                try await bus.consume("payments", as: Payment.self, options: options) { payment, _ in
                    amounts.withLock { $0.append(payment.amount) }
                }
            })
            try await bus.publish(Event(subject: "payments", type: "p", source: "/s", data: Array("oops".utf8)))
            try await bus.publish(Payment(amount: 5), subject: "payments", type: "p", source: "/s")
            let deadLetter = try await take(1, from: dead)[0].event
            #expect(String(decoding: deadLetter.data, as: UTF8.self) == "oops")
            #expect(deadLetter.extensions[DeadLetter.errorHeader]?.contains("cannot decode") == true)
            #expect(deadLetter.extensions[DeadLetter.attemptsHeader] == "1")
            let clock = ContinuousClock()
            let deadline = clock.now + .seconds(30)
            while amounts.withLock({ $0 }).isEmpty && clock.now < deadline {
                try await Task.sleep(for: .milliseconds(5))
            }
            #expect(amounts.withLock { $0 } == [5])
            await bus.close()
            try await group.waitForAll()
        }
    }

    @Test func eventsAreValuesDespiteTheirSharedStorage() {
        let original = makeEvent("a", "one")
        var copy = original
        copy.data = Array("two".utf8)
        copy.extensions["k"] = "v"
        #expect(String(decoding: original.data, as: UTF8.self) == "one" && original.extensions.isEmpty)
        #expect(copy != original)
        var same = original
        same.subject = "a"
        #expect(same == original)
    }

    @Test func errorDescriptionsNameCodeValueAndPlace() {
        let error = EventBusError(.invalidOption, "maxInFlight 0 must be in 1...1000000")
        #expect(error.description.hasPrefix("EventBusError.invalidOption: maxInFlight 0"))
        #expect(error.description.contains("InMemoryEventBusTests.swift"))
        #expect(!error.isRetriable)
        #expect(EventBusError(.timeout, "t").isRetriable)
        #expect(EventBusError.Code("custom").name == "custom")
    }
}

import EventBus
import Logging
import NATSTestSupport
import Testing

/// Waits until `condition` holds, checking every 10 ms; false after `timeout`.
private func waitFor(timeout: Duration = .seconds(10), _ condition: () -> Bool) async -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return condition()
}

/// The in-memory side of `consume`'s handler options beyond the conformance checks (which hold both
/// backends to the main behaviour): the extension's maximum, turning it off, `.term` on cancellation,
/// validation messages, and group members that run different handler settings.
@Suite("consume: ack extension, cancellation policy, handler concurrency")
struct ConsumeHandlingTests {
    @Test func afterTheMaximumTheEventIsRedeliveredAndAWarningLogged() async throws {
        let messages = Locked<[String]>([])
        let logger = Logger(label: "test") { _ in CollectingLogHandler(messages: messages) }
        let bus = try InMemoryEventBus(logger: logger)
        let ackWait = Duration.milliseconds(200)
        // Two handlers, so the redelivery can reach the second while the first still runs.
        let options = SubscriptionOptions(
            maxInFlight: 2, ackWait: ackWait, maxDeliver: 5, handlerConcurrency: 2,
            ackExtension: .init(fraction: 0.5, maximum: .milliseconds(400)))
        let attempts = Locked<[Int]>([])
        let firstFinished = Locked(false)
        let subscription = try await bus.subscribe("long", options: options)
        let consumer = Task {
            try await bus.consume(subscription, options: options) { delivery in
                attempts.withLock { $0.append(delivery.deliveryCount) }
                if delivery.deliveryCount == 1 {
                    // Far past the extension's maximum, so that the redelivery comes first however
                    // late a loaded machine runs the broker's timer; the consumer is cancelled below.
                    try await Task.sleep(for: .seconds(30))
                    firstFinished.withLock { $0 = true }
                }
            }
        }
        try await bus.publish(makeEvent("long"))
        #expect(await waitFor { attempts.withLock { $0.contains(2) } }, "never redelivered: \(attempts.withLock { $0 })")
        #expect(!firstFinished.withLock { $0 }, "redelivered only after the first handler returned")
        #expect(
            await waitFor { messages.withLock { $0 }.contains { $0.hasPrefix("warning") && $0.contains("maximum") } },
            "no warning about the maximum: \(messages.withLock { $0 })")
        consumer.cancel()
        try await withDeadline(.seconds(30), "consume() after its task was cancelled", onTimeout: { await bus.close() }) {
            _ = await consumer.result
        }
        await bus.close()
    }

    @Test func withoutExtensionALongHandlersEventComesBack() async throws {
        let bus = try InMemoryEventBus()
        // Two handlers: the loop waits for the next delivery while the long one runs, and the in-memory
        // broker notices an expired ack wait while a subscriber waits.
        let options = SubscriptionOptions(
            maxInFlight: 2, ackWait: .milliseconds(150), maxDeliver: 5, handlerConcurrency: 2, ackExtension: nil)
        let attempts = Locked<[Int]>([])
        let subscription = try await bus.subscribe("plain", options: options)
        let consumer = Task {
            try await bus.consume(subscription, options: options) { delivery in
                attempts.withLock { $0.append(delivery.deliveryCount) }
                // Still running when the ack wait expires, however late the broker notices it; the
                // consumer is cancelled below.
                if delivery.deliveryCount == 1 { try await Task.sleep(for: .seconds(30)) }
            }
        }
        try await bus.publish(makeEvent("plain"))
        #expect(await waitFor { attempts.withLock { $0 }.contains(2) }, "attempts: \(attempts.withLock { $0 })")
        consumer.cancel()
        try await withDeadline(.seconds(30), "consume() after its task was cancelled", onTimeout: { await bus.close() }) {
            _ = await consumer.result
        }
        await bus.close()
    }

    @Test func cancellationWithTermDeadLettersTheEvent() async throws {
        let bus = try InMemoryEventBus()
        let deadLetters = try await bus.subscribe("deadletter.>")
        let options = SubscriptionOptions(group: "workers", maxDeliver: 5, onCancel: .term)
        let subscription = try await bus.subscribe("work", options: options)
        let started = Locked(false)
        let consumer = Task {
            try await bus.consume(subscription, options: options) { _ in
                started.withLock { $0 = true }
                try await Task.sleep(for: .seconds(60))
            }
        }
        try await bus.publish(makeEvent("work"))
        #expect(await waitFor { started.withLock { $0 } })
        consumer.cancel()
        try await withDeadline(.seconds(30), "consume() after its task was cancelled", onTimeout: { await subscription.close() }) {
            _ = await consumer.result
        }
        let dead = try await take(1, from: deadLetters)
        #expect(dead.first?.event.extensions[DeadLetter.errorHeader] == "handler cancelled")
        await bus.close()
    }

    /// The race the concurrent consume is built around: its loop waits for the next delivery (a free
    /// slot) when the task is cancelled, and the iterator's own reaction to cancellation, handing back
    /// every unsettled delivery at once, must not overtake the handler's nak with delay.
    @Test func cancellingAConcurrentConsumeWaitingForDeliveriesKeepsTheNakDelay() async throws {
        let bus = try InMemoryEventBus()
        let delay = Duration.milliseconds(800)
        let options = SubscriptionOptions(
            group: "workers", maxInFlight: 8, maxDeliver: 5, handlerConcurrency: 3, onCancel: .nak(delay: delay))
        let a = try await bus.subscribe("slow", options: options)
        let started = Locked(0)
        let consumer = Task {
            try await bus.consume(a, options: options) { _ in
                started.withLock { $0 += 1 }
                try await Task.sleep(for: .seconds(60))
            }
        }
        try await bus.publish(makeEvent("slow"))
        #expect(await waitFor { started.withLock { $0 } == 1 })
        let b = try await bus.subscribe("slow", options: options)
        let clock = ContinuousClock()
        let cancelledAt = clock.now
        consumer.cancel()
        try await withDeadline(.seconds(30), "consume() after its task was cancelled", onTimeout: { await a.close() }) {
            _ = await consumer.result
        }
        let back = try await take(1, from: b)
        let gap = cancelledAt.duration(to: clock.now)
        #expect(gap >= delay * 0.9, "came back \(gap) after the cancel; onCancel says \(delay)")
        #expect(back.first?.deliveryCount == 2)
        await b.close()
        await bus.close()
    }

    @Test func membersOfOneGroupMayRunDifferentHandlerSettings() async throws {
        let bus = try InMemoryEventBus()
        let first = try await bus.subscribe("g", options: .init(group: "mixed", handlerConcurrency: 1))
        let second = try await bus.subscribe(
            "g", options: .init(group: "mixed", handlerConcurrency: 4, ackExtension: nil, onCancel: .term))
        await first.close()
        await second.close()
        await bus.close()
    }

    @Test func invalidHandlerOptionsNameTheValueAndTheRule() async throws {
        let cases: [(SubscriptionOptions, String)] = [
            (.init(handlerConcurrency: 0), "handlerConcurrency 0 must be at least 1"),
            (.init(maxInFlight: 4, handlerConcurrency: 5), "handlerConcurrency 5 exceeds maxInFlight 4"),
            (.init(ackExtension: .init(fraction: 1.5)), "ackExtension.fraction 1.5 must be in"),
            (.init(ackExtension: .init(maximum: .zero)), "ackExtension.maximum"),
            (.init(onCancel: .nak(delay: .seconds(-1))), "onCancel nak delay"),
        ]
        let bus = try InMemoryEventBus()
        for (options, expected) in cases {
            do {
                try await bus.consume("invalid", options: options) { _ in }
                Issue.record("accepted \(expected)")
            } catch let error as EventBusError {
                #expect(error.code == .invalidOption)
                #expect(error.message.contains(expected), "\(error.message)")
            }
        }
        await bus.close()
    }

    @Test func aHandlerErrorInConcurrentConsumeIsNakedLikeOneAtATime() async throws {
        let bus = try InMemoryEventBus()
        let options = SubscriptionOptions(maxDeliver: 5, handlerConcurrency: 4)
        let attempts = Locked<[Int]>([])
        let subscription = try await bus.subscribe("fails", options: options)
        let consumer = Task {
            try await bus.consume(subscription, options: options) { delivery in
                attempts.withLock { $0.append(delivery.deliveryCount) }
                if delivery.deliveryCount < 3 { throw EventBusError(.invalidEvent, "not yet") }
            }
        }
        try await bus.publish(makeEvent("fails"))
        #expect(await waitFor { attempts.withLock { $0 } == [1, 2, 3] }, "attempts: \(attempts.withLock { $0 })")
        // Closing the bus ends a concurrent consume as it ends a sequential one.
        await bus.close()
        try await withDeadline(.seconds(30), "consume() after the bus closed", onTimeout: { consumer.cancel() }) {
            try await consumer.value
        }
    }
}

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import EventBus
import Synchronization
import Testing

/// A bus whose publishes fail with `failure` a set number of times before reaching an in-memory bus.
final class FlakyBus: EventBus {
    let base: InMemoryEventBus
    private let remainingFailures: Mutex<Int>
    let failure: EventBusError
    let attempts = Mutex(0)

    init(failures: Int, failure: EventBusError) throws {
        base = try InMemoryEventBus()
        remainingFailures = Mutex(failures)
        self.failure = failure
    }

    var capabilities: EventBusCapabilities { base.capabilities }

    func publish(_ event: Event) async throws -> PublishReceipt {
        attempts.withLock { $0 += 1 }
        let fail = remainingFailures.withLock { remaining in
            defer { remaining -= 1 }
            return remaining > 0
        }
        if fail { throw failure }
        return try await base.publish(event)
    }

    func subscribe(_ pattern: SubjectPattern, options: SubscriptionOptions) async throws -> EventSubscription {
        try await base.subscribe(pattern, options: options)
    }

    func request(_ event: Event, timeout: Duration) async throws -> Event {
        try await base.request(event, timeout: timeout)
    }

    func close() async {
        await base.close()
    }
}

/// A value shared between a test and the tasks it starts.
final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>

    init(_ value: Value) {
        mutex = Mutex(value)
    }

    func withLock<Result: Sendable>(_ body: (inout Value) -> Result) -> Result {
        mutex.withLock { body(&$0) }
    }
}

func makeEvent(_ subject: String, _ text: String = "x") -> Event {
    Event(subject: subject, type: "test.\(subject)", source: "/tests", data: Array(text.utf8))
}

/// Takes `count` deliveries from `subscription` (acking them), or fails after 20 seconds: the bound
/// only decides how long a failure takes to show, and the whole suite runs at once on small machines.
func take(_ count: Int, from subscription: EventSubscription) async throws -> [Delivery] {
    try await withThrowingTaskGroup(of: [Delivery]?.self) { group in
        group.addTask(operation: {
            var deliveries: [Delivery] = []
            for try await delivery in subscription {
                try await delivery.ack()
                deliveries.append(delivery)
                if deliveries.count == count { break }
            }
            return deliveries
        })
        group.addTask(operation: {
            try await Task.sleep(for: .seconds(20))
            return nil
        })
        defer { group.cancelAll() }
        let first = try await group.next() ?? nil
        return try #require(first, "did not receive \(count) deliveries within 20 s")
    }
}

@Suite("Retry middleware")
struct RetryTests {
    @Test func delaysGrowExponentiallyAndAreCapped() {
        let policy = RetryPolicy(initialDelay: .milliseconds(100), multiplier: 2, maxDelay: .milliseconds(500), jitter: 0.5)
        #expect(policy.delay(afterAttempt: 1, random: 0) == .milliseconds(100))
        #expect(policy.delay(afterAttempt: 2, random: 0) == .milliseconds(200))
        #expect(policy.delay(afterAttempt: 3, random: 0) == .milliseconds(400))
        #expect(policy.delay(afterAttempt: 4, random: 0) == .milliseconds(500), "capped at maxDelay")
        #expect(policy.delay(afterAttempt: 2, random: 1) == .milliseconds(100), "half jitter halves at most")
        for _ in 0..<100 {
            let jittered = policy.delay(afterAttempt: 3)
            #expect(jittered >= .milliseconds(200) && jittered <= .milliseconds(400))
        }
    }

    @Test func invalidPoliciesAreRejected() throws {
        for policy in [RetryPolicy(maxAttempts: 0), RetryPolicy(multiplier: 0.5), RetryPolicy(jitter: 2),
                       RetryPolicy(initialDelay: .seconds(2), maxDelay: .seconds(1))] {
            #expect(throws: EventBusError.self) { _ = try NoopEventBus().retrying(policy) }
        }
    }

    @Test func retriesRetriableFailuresWithTheSameEventID() async throws {
        let flaky = try FlakyBus(failures: 2, failure: EventBusError(.backendUnavailable, "down"))
        let bus = try flaky.retrying(RetryPolicy(maxAttempts: 3, initialDelay: .milliseconds(1)))
        let event = makeEvent("orders.created")
        let receipt = try await bus.publish(event)
        #expect(receipt.sequence == 1 && !receipt.duplicate)
        #expect(flaky.attempts.withLock { $0 } == 3)
    }

    @Test func givesUpAfterMaxAttemptsWithTheLastError() async throws {
        let flaky = try FlakyBus(failures: 10, failure: EventBusError(.backendUnavailable, "still down"))
        let bus = try flaky.retrying(RetryPolicy(maxAttempts: 4, initialDelay: .milliseconds(1)))
        await #expect(throws: EventBusError.self) { try await bus.publish(makeEvent("a")) }
        #expect(flaky.attempts.withLock { $0 } == 4)
    }

    @Test func doesNotRetryPermanentFailures() async throws {
        let flaky = try FlakyBus(failures: 10, failure: EventBusError(.invalidEvent, "bad", isRetriable: false))
        let bus = try flaky.retrying(RetryPolicy(maxAttempts: 5, initialDelay: .milliseconds(1)))
        await #expect(throws: EventBusError.self) { try await bus.publish(makeEvent("a")) }
        #expect(flaky.attempts.withLock { $0 } == 1)
    }
}

@Suite("Correlation middleware")
struct CorrelationTests {
    @Test func publishedEventsInheritTheHandledEventsCorrelation() async throws {
        let recording = RecordingEventBus()
        let bus = recording.correlating()
        let done = Locked(false)
        let watcher = try await recording.subscribe("payment.settled")
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask(operation: {
                try await bus.consume("order.created") { delivery in
                    try await bus.publish(makeEvent("payment.settled"))
                    done.withLock { $0 = true }
                }
            })
            var order = makeEvent("order.created")
            order.correlationID = "checkout-42"
            order.traceParent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
            // Publish until the consumer (started in another task) has seen one.
            let deadline = ContinuousClock.now + .seconds(30)
            while !done.withLock({ $0 }) {
                try #require(ContinuousClock.now < deadline, "the consumer of 'order.created' handled nothing within 30 s")
                try await recording.publish(order)
                order.id = Event.makeID()
                try await Task.sleep(for: .milliseconds(5))
            }
            let settled = try await take(1, from: watcher)[0].event
            #expect(settled.correlationID == "checkout-42")
            #expect(recording.published(subject: "order.created").contains { $0.id == settled.causationID })
            #expect(settled.traceParent == order.traceParent)
            await recording.close()
            try await group.waitForAll()
        }
    }

    @Test func anEventWithoutCorrelationStartsOneWithItsOwnID() async throws {
        let handled = makeEvent("a")
        let context = EventContext(handling: handled)
        #expect(context.correlationID == handled.id && context.causationID == handled.id)
        var explicit = makeEvent("b")
        explicit.correlationID = "mine"
        let applied = context.applied(to: explicit)
        #expect(applied.correlationID == "mine", "an explicit correlation id wins")
        #expect(applied.causationID == handled.id)
    }

    @Test func outsideAHandlerNothingChanges() async throws {
        let recording = RecordingEventBus()
        try await recording.correlating().publish(makeEvent("a"))
        #expect(recording.published[0].correlationID == nil && recording.published[0].causationID == nil)
        await recording.close()
    }

    @Test func repliesCarryTheRequestsCorrelation() async throws {
        let memory = try InMemoryEventBus()
        let bus = memory.correlating()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask(operation: {
                try await bus.consume("rpc.lookup") { delivery in
                    try await delivery.respond(makeEvent("rpc.lookup.reply"))
                }
            })
            var request = makeEvent("rpc.lookup")
            request.correlationID = "flow-7"
            var reply: Event?
            let deadline = ContinuousClock.now + .seconds(30)
            while reply == nil {
                try #require(ContinuousClock.now < deadline, "nobody answered on 'rpc.lookup' within 30 s")
                do {
                    reply = try await memory.request(request, timeout: .seconds(2))
                } catch let error as EventBusError where error.code == .noResponders {
                    try await Task.sleep(for: .milliseconds(5))
                }
            }
            #expect(reply?.correlationID == "flow-7")
            #expect(reply?.causationID == request.id)
            await memory.close()
            try await group.waitForAll()
        }
    }
}

@Suite("Handler timeout middleware")
struct HandlerTimeoutTests {
    @Test func aSlowHandlerIsCancelledAndItsEventRedelivered() async throws {
        let memory = try InMemoryEventBus()
        let bus = try memory.handlerTimeout(.milliseconds(50))
        let attempts = Locked<[Int]>([])
        let cancelled = Locked(0)
        try await withThrowingTaskGroup(of: Void.self) { group in
            let subscription = try await memory.subscribe("deadletter.slow")
            // Create the group first: consume then joins it at its position, whenever its task starts.
            let options = SubscriptionOptions(group: "slow", maxDeliver: 2)
            await (try await memory.subscribe("slow", options: options)).close()
            group.addTask(operation: {
                try await bus.consume("slow", options: options) { delivery in
                    attempts.withLock { $0.append(delivery.deliveryCount) }
                    do {
                        try await Task.sleep(for: .seconds(30))
                    } catch {
                        cancelled.withLock { $0 += 1 }
                        throw error
                    }
                }
            })
            try await memory.publish(makeEvent("slow"))
            let dead = try await take(1, from: subscription)[0].event
            #expect(attempts.withLock { $0 } == [1, 2])
            #expect(cancelled.withLock { $0 } == 2, "the slow handler was not cancelled")
            #expect(dead.extensions[DeadLetter.errorHeader]?.contains("ran longer than") == true)
            await memory.close()
            try await group.waitForAll()
        }
    }

    @Test func aQuickHandlerIsUnaffected() async throws {
        let memory = try InMemoryEventBus()
        let bus = try memory.handlerTimeout(.seconds(5))
        let handled = Locked(0)
        try await withThrowingTaskGroup(of: Void.self) { group in
            let options = SubscriptionOptions(group: "quick")
            await (try await memory.subscribe("quick", options: options)).close()
            group.addTask(operation: {
                try await bus.consume("quick", options: options) { _ in handled.withLock { $0 += 1 } }
            })
            for _ in 0..<10 { try await memory.publish(makeEvent("quick")) }
            let clock = ContinuousClock()
            let deadline = clock.now + .seconds(30)
            // The ack follows the handler's return, so wait for both.
            while (handled.withLock({ $0 }) < 10 || memory.statistics().pendingDeliveries > 0) && clock.now < deadline {
                try await Task.sleep(for: .milliseconds(5))
            }
            #expect(handled.withLock { $0 } == 10)
            #expect(memory.statistics().pendingDeliveries == 0, "every quick delivery was acked")
            await memory.close()
            try await group.waitForAll()
        }
    }

    @Test func nonPositiveTimeoutIsRejected() {
        #expect(throws: EventBusError.self) { _ = try NoopEventBus().handlerTimeout(.zero) }
    }
}

@Suite("Schema validation middleware")
struct ValidationTests {
    struct Order: Codable, Sendable {
        var number: Int
        var amount: Int
    }

    var validator: EventValidator {
        var validator = EventValidator(unknownTypes: .reject)
        validator.register(type: "order.created", as: Order.self) { order in
            if order.amount <= 0 {
                throw EventBusError(.validationFailed, "amount \(order.amount) must be positive")
            }
        }
        validator.register(type: "ping") { event in
            if !event.data.isEmpty { throw EventBusError(.validationFailed, "ping carries no payload") }
        }
        return validator
    }

    @Test func validEventsPass() async throws {
        let recording = RecordingEventBus()
        let bus = recording.validating(validator)
        try await bus.publish(Order(number: 1, amount: 10), subject: "orders.created", type: "order.created", source: "/t")
        try await bus.publish(Event(subject: "ping", type: "ping", source: "/t"))
        #expect(recording.published.count == 2)
    }

    @Test func invalidEventsAreRejectedWithAClearError() async throws {
        let recording = RecordingEventBus()
        let bus = recording.validating(validator)
        let cases: [(Event, String)] = [
            (try Event(subject: "orders.created", type: "order.created", source: "/t", encoding: Order(number: 2, amount: 0)),
             "amount 0 must be positive"),
            (Event(subject: "orders.created", type: "order.created", source: "/t", data: Array("{}".utf8)), "cannot decode"),
            (Event(subject: "ping", type: "ping", source: "/t", data: [1]), "ping carries no payload"),
            (Event(subject: "other", type: "unknown.type", source: "/t"), "no registered schema"),
        ]
        for (event, reason) in cases {
            await #expect {
                try await bus.publish(event)
            } throws: { error in
                guard let error = error as? EventBusError else { return false }
                return error.code == .validationFailed && error.message.contains(reason)
                    && error.message.contains(event.type) && !error.isRetriable
            }
        }
        #expect(recording.published.isEmpty, "an invalid event reached the bus")
    }

    @Test func unknownTypesPassWhenAllowed() async throws {
        let recording = RecordingEventBus()
        try await recording.validating(EventValidator(unknownTypes: .allow)).publish(makeEvent("anything"))
        #expect(recording.published.count == 1)
    }
}

/// `consume(subscription, ...)` is the one requirement middleware overrides; the pattern form goes through it.
@Suite("Middleware and consume(subscription)")
struct ConsumeSubscriptionThroughMiddlewareTests {
    /// Stacks with correlation at the bottom and a forwarding middleware on top: the handler only runs in
    /// the handling context if the top forwards `consume(subscription)` to the bus it wraps.
    static let stacks: [(String, @Sendable (InMemoryEventBus) throws -> any EventBus)] = [
        ("correlating", { $0.correlating() }),
        ("validating over correlating", { $0.correlating().validating(EventValidator()) }),
        ("retrying over correlating", { try $0.correlating().retrying() }),
        ("handlerTimeout over correlating", { try $0.correlating().handlerTimeout(.seconds(30)) }),
        ("recording over correlating", { RecordingEventBus(wrapping: $0.correlating()) }),
    ]

    @Test(arguments: 0..<stacks.count, [false, true])
    func theHandlerRunsInsideEveryMiddleware(_ stack: Int, patternForm: Bool) async throws {
        let (name, build) = Self.stacks[stack]
        let memory = try InMemoryEventBus()
        let bus = try build(memory)
        let options = SubscriptionOptions(group: "g")
        let contexts = Locked<[Bool]>([])
        let order = makeEvent("order.created")
        try await withThrowingTaskGroup(of: Void.self) { group in
            let record: @Sendable (Delivery) async throws -> Void = { delivery in
                contexts.withLock { $0.append(EventContext.current?.causationID == delivery.event.id) }
            }
            if patternForm {
                // The group exists before the task starts, so the event below is surely its.
                await (try await bus.subscribe("order.created", options: options)).close()
                group.addTask(operation: { try await bus.consume("order.created", options: options, handler: record) })
            } else {
                let subscription = try await bus.subscribe("order.created", options: options)
                group.addTask(operation: { try await bus.consume(subscription, options: options, handler: record) })
            }
            try await memory.publish(order)
            let clock = ContinuousClock()
            let deadline = clock.now + .seconds(10)
            while contexts.withLock({ $0.isEmpty }) && clock.now < deadline {
                try await Task.sleep(for: .milliseconds(5))
            }
            #expect(contexts.withLock { $0 } == [true], "\(name): the handler ran outside the correlation middleware")
            await memory.close()
            try await group.waitForAll()
        }
    }

    @Test func handlerTimeoutBoundsTheSubscriptionForm() async throws {
        let memory = try InMemoryEventBus()
        let bus = try memory.handlerTimeout(.milliseconds(50))
        let options = SubscriptionOptions(group: "slow", maxDeliver: 1)
        let dead = try await memory.subscribe("deadletter.slow")
        try await withThrowingTaskGroup(of: Void.self) { group in
            let subscription = try await bus.subscribe("slow", options: options)
            group.addTask(operation: {
                try await bus.consume(subscription, options: options) { _ in try await Task.sleep(for: .seconds(30)) }
            })
            try await memory.publish(makeEvent("slow"))
            let letter = try await take(1, from: dead)[0].event
            #expect(letter.extensions[DeadLetter.errorHeader]?.contains("ran longer than") == true)
            await memory.close()
            try await group.waitForAll()
        }
    }
}

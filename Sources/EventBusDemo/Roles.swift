import EventBus
import Foundation
import Synchronization

/// Counters the roles update and the summary prints.
final class DemoCounters: Sendable {
    struct Values {
        var published = 0
        var inventoryChecks = 0
        var inStock = 0
        var billedByWorker: [String: Int] = [:]
        var retried = 0
        var failedAttempts = 0
        var deadLettered = 0
        var notified = 0
        var billedOrders: [String: Int] = [:]
    }

    let values = Mutex(Values())

    func update(_ body: (inout Values) -> Void) {
        values.withLock { body(&$0) }
    }

    var snapshot: Values { values.withLock { $0 } }
}

/// Writes one machine-readable line per event, for people and for the multi-process test. The
/// line quotes events' fields, which any publisher chose: escaped, it stays one line and carries no
/// terminal controls.
func report(_ line: String) {
    print(TerminalText.escaped(line))
    fflush(nil)  // every line at once, also when stdout is a pipe
}

/// A role whose subscriptions exist: running it handles their events until the bus closes or its
/// task is cancelled.
typealias RoleLoop = @Sendable () async throws -> Void

/// The demo's services. Each takes the bus it runs on, so the same code runs in one process or
/// one role per process, on the in-memory bus or on JetStream.
///
/// Each subscribes first and returns its loop: once a role function returned, its groups exist
/// and no event published afterwards can be missed (groups start at new events), so the caller
/// can place orders at once, without a pause to let consumers appear.
enum Roles {
    /// Answers inventory checks (request/reply) until the bus closes.
    static func inventory(bus: any EventBus, counters: DemoCounters) async throws -> RoleLoop {
        let options = SubscriptionOptions(group: "inventory")
        let subscription = try await bus.subscribe(Demo.inventorySubject, options: options)
        return { try await answerInventoryChecks(bus: bus, subscription: subscription, options: options) }
    }

    private static func answerInventoryChecks(bus: any EventBus, subscription: EventSubscription, options: SubscriptionOptions) async throws {
        try await bus.consume(subscription, options: options) { delivery in
            let check = try delivery.event.decode(InventoryCheck.self)
            let answer = try Event(
                subject: "inventory.answer", type: "com.example.inventory.answer", source: Demo.source,
                encoding: InventoryAnswer(sku: check.sku, inStock: true))
            try await delivery.respond(answer)
        }
    }

    /// Charges orders in the `billing` group; a `flaky` worker fails some first attempts.
    static func billing(
        bus: any EventBus, store: any EventStore, worker: String, flaky: Bool, counters: DemoCounters, activity: Activity
    ) async throws -> RoleLoop {
        let subscription = try await bus.subscribe(Demo.ordersSubject, options: Demo.billingOptions)
        return {
            try await charge(
                bus: bus, store: store, subscription: subscription, worker: worker, flaky: flaky, counters: counters, activity: activity)
        }
    }

    private static func charge(
        bus: any EventBus, store: any EventStore, subscription: EventSubscription, worker: String, flaky: Bool, counters: DemoCounters,
        activity: Activity
    ) async throws {
        try await bus.consume(subscription, options: Demo.billingOptions) { delivery in
            activity.touch()
            let order = try delivery.event.decode(OrderCreated.self)
            let attempt = delivery.deliveryCount
            if attempt > 1 { counters.update { $0.retried += 1 } }
            if Demo.isPoison(order.number) {
                counters.update { $0.failedAttempts += 1 }
                report("DECLINED \(order.orderID) worker=\(worker) attempt=\(attempt)")
                throw PaymentDeclined(description: "card declined for \(order.orderID)")
            }
            if flaky && attempt == 1 && Demo.failsFirstAttempt(order.number) {
                counters.update { $0.failedAttempts += 1 }
                report("RETRY \(order.orderID) worker=\(worker) attempt=\(attempt)")
                throw PaymentDeclined(description: "payment provider timed out for \(order.orderID)")
            }
            var settled = try Event(
                subject: Demo.paymentsSubject, type: "com.example.payment.settled", source: Demo.source,
                encoding: PaymentSettled(orderID: order.orderID, amountCents: order.amountCents, worker: worker, attempt: attempt))
            settled.correlationID = delivery.event.correlationID ?? order.orderID
            settled.causationID = delivery.event.id
            try await bus.publish(settled)
            // The order's history: after whatever is there (a redelivered order is billed again, and
            // the history shows it).
            try await store.append([settled], to: Demo.history(of: order), expectedVersion: .any)
            counters.update {
                $0.billedByWorker[worker, default: 0] += 1
                $0.billedOrders[order.orderID, default: 0] += 1
            }
            report("BILLED \(order.orderID) worker=\(worker) attempt=\(attempt)")
        }
    }

    /// Tells customers about payments, and operations about dead letters.
    static func notifications(bus: any EventBus, store: any EventStore, counters: DemoCounters, activity: Activity) async throws -> RoleLoop {
        let paymentOptions = SubscriptionOptions(group: "notifications", start: .new)
        let deadLetterOptions = SubscriptionOptions(group: "operations", start: .new)
        let payments = try await bus.subscribe(Demo.paymentsSubject, options: paymentOptions)
        let deadLetters = try await bus.subscribe(Demo.deadLetterSubject, options: deadLetterOptions)
        return {
            try await notify(
                bus: bus, store: store, payments: (payments, paymentOptions), deadLetters: (deadLetters, deadLetterOptions), counters: counters,
                activity: activity)
        }
    }

    private static func notify(
        bus: any EventBus, store: any EventStore, payments: (EventSubscription, SubscriptionOptions), deadLetters: (EventSubscription, SubscriptionOptions),
        counters: DemoCounters, activity: Activity
    ) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await bus.consume(payments.0, options: payments.1) { delivery in
                    activity.touch()
                    let payment = try delivery.event.decode(PaymentSettled.self)
                    counters.update { $0.notified += 1 }
                    report("NOTIFIED \(payment.orderID) worker=\(payment.worker)")
                }
            }
            group.addTask {
                try await bus.consume(deadLetters.0, options: deadLetters.1) { delivery in
                    activity.touch()
                    let order = try? delivery.event.decode(OrderCreated.self)
                    let attempts = delivery.event.extensions[DeadLetter.attemptsHeader] ?? "?"
                    let error = delivery.event.extensions[DeadLetter.errorHeader] ?? "?"
                    if let order {
                        var entry = Event(
                            id: "\(delivery.event.id)-dead-lettered", subject: Demo.deadLetterSubject, type: "com.example.order.dead-lettered",
                            source: Demo.source, data: Array("attempts=\(attempts) error=\(error)".utf8))
                        entry.correlationID = order.orderID
                        entry.causationID = delivery.event.id
                        // The same id on a redelivered dead letter: recognised, not stored twice.
                        try await store.append([entry], to: Demo.history(of: order), expectedVersion: .any)
                    }
                    counters.update { $0.deadLettered += 1 }
                    report("DEAD-LETTERED \(order?.orderID ?? delivery.event.id) attempts=\(attempts) error=\(error)")
                }
            }
            try await group.waitForAll()
        }
    }

    /// Places `count` orders: an inventory check (request/reply), then the `orders.created` event.
    static func orders(bus: any EventBus, store: any EventStore, count: Int, first: Int, runID: String, counters: DemoCounters) async throws {
        for number in first..<(first + count) {
            let sku = "sku-\(number % 5)"
            let check = try Event(
                subject: Demo.inventorySubject, type: "com.example.inventory.check", source: Demo.source,
                encoding: InventoryCheck(sku: sku, quantity: 1))
            let answer = try await bus.request(check, timeout: .seconds(5)).decode(InventoryAnswer.self)
            counters.update {
                $0.inventoryChecks += 1
                if answer.inStock { $0.inStock += 1 }
            }
            guard answer.inStock else { continue }
            let orderID = Demo.orderID(number)
            let order = OrderCreated(
                orderID: orderID, number: number, customer: "customer-\(number % 7)", sku: sku, amountCents: 1_000 + number, runID: runID)
            var event = try Event(subject: Demo.ordersSubject, type: "com.example.order.created", source: Demo.source, encoding: order)
            // One id per order and run: publishing it twice (a retry) stores it once.
            event.id = "\(orderID)-created-\(runID)"
            event.correlationID = orderID
            // The history first: an order billed before its history began would be refused by
            // .noEvents. A retry of this append with the same event is recognised.
            try await store.append([event], to: Demo.history(of: order), expectedVersion: .noEvents)
            try await publishRetrying(event, on: bus)
            counters.update { $0.published += 1 }
            report("PUBLISHED \(orderID) history=\(try Demo.history(of: order).id)")
        }
    }
}

/// Publishes `event`, retrying what the bus calls retriable (no stream answered while a stream
/// leader is elected, say, just after a cluster started) a few times with a growing pause. The
/// event keeps its id, so a retry of a publish that was stored after all is stored once.
private func publishRetrying(_ event: Event, on bus: any EventBus) async throws {
    var pause = Duration.milliseconds(250)
    for _ in 0..<4 {
        do {
            try await bus.publish(event)
            return
        } catch let error as EventBusError where error.isRetriable {
            try await Task.sleep(for: pause)
            pause *= 2
        }
    }
    try await bus.publish(event)
}

/// When a role last did something, so that a role process can stop once the work is done.
final class Activity: Sendable {
    private let last = Mutex(ContinuousClock.now)
    private let started = Mutex(false)

    func touch() {
        last.withLock { $0 = .now }
        started.withLock { $0 = true }
    }

    /// Waits until nothing happened for `idle` after the first event (or `limit` passed).
    func waitUntilIdle(_ idle: Duration, limit: Duration) async {
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline {
            let quietFor = ContinuousClock.now - last.withLock { $0 }
            if started.withLock({ $0 }) && quietFor >= idle { return }
            try? await Task.sleep(for: .milliseconds(100))
        }
    }
}

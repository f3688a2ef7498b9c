import EventBus

/// The demo's events and the rules its services follow.
enum Demo {
    static let source = "/eventbus-demo"
    static let ordersSubject = "orders.created"
    static let paymentsSubject = "payments.settled"
    static let inventorySubject = "inventory.check"
    static let deadLetterSubject = "deadletter.orders.created"

    /// Billing's subscription: three attempts with backoff, then the dead-letter subject.
    static let billingOptions = SubscriptionOptions(
        group: "billing", start: .new, maxInFlight: 16, ackWait: .seconds(10), maxDeliver: 3,
        backoff: [.milliseconds(100), .milliseconds(300)], deadLetterSubject: deadLetterSubject)

    /// Every tenth order (number ending in 7) has a card that is always declined: it ends in the
    /// dead-letter subject after three attempts.
    static func isPoison(_ number: Int) -> Bool { number % 10 == 7 }

    /// A flaky payment provider (worker started with `--flaky`) fails the first attempt of every
    /// fourth order; the retry (on whichever worker gets it) succeeds.
    static func failsFirstAttempt(_ number: Int) -> Bool { number % 4 == 1 }

    static func newRunID() -> String { String(UInt32.random(in: 0...UInt32.max), radix: 36) }

    static func orderID(_ number: Int) -> String { "order-\(String(repeating: "0", count: max(0, 4 - String(number).count)))\(number)" }

    /// An order's history in the event store: aggregate `order/<order id>-<run id>`, so that each run's
    /// orders have histories of their own.
    static func history(of order: OrderCreated) throws -> AggregateID {
        try AggregateID(category: "order", id: order.runID.map { "\(order.orderID)-\($0)" } ?? order.orderID)
    }
}

/// Published by `orders` for each order.
struct OrderCreated: Codable, Sendable {
    var orderID: String
    var number: Int
    var customer: String
    var sku: String
    var amountCents: Int
    /// The run that placed it (absent in orders from older publishers).
    var runID: String?
}

/// Published by `billing` when an order is paid.
struct PaymentSettled: Codable, Sendable {
    var orderID: String
    var amountCents: Int
    var worker: String
    var attempt: Int
}

/// Asked of `inventory` before an order is placed.
struct InventoryCheck: Codable, Sendable {
    var sku: String
    var quantity: Int
}

/// `inventory`'s answer.
struct InventoryAnswer: Codable, Sendable {
    var sku: String
    var inStock: Bool
}

/// Something a billing worker could not charge.
struct PaymentDeclined: Error, CustomStringConvertible {
    var description: String
}

import EventBus

public struct OrderCreated: Codable, Sendable {
    public var orderID: String
    public var amount: Int
}

public struct PaymentSettled: Codable, Sendable {
    public var orderID: String
    public var amount: Int
}

import EventBus

/// The backend's side of an `EventSubscription`: `subscribe(_:options:)` returns
/// `EventSubscription(MySubscription(...))` once the consumer exists on the backend.
final class MySubscription: DeliverySource {
    func makeDeliveryIterator() -> any DeliveryIterator {
        MyDeliveryIterator(subscription: self)
    }

    /// Ends the subscription and hands back at once what it received and did not return
    /// from next(), and what it returned that is not settled yet.
    func close() async {
        handBack(includingUnsettled: true)
    }

    /// The loop ended early (break, a dropped iterator). Called from a deinit: start the
    /// hand-back of what was received and not returned, and return without blocking.
    func stopIterating() {
        handBack(includingUnsettled: false)
    }

    private func handBack(includingUnsettled: Bool) {
        // Return the deliveries to the backend so that the group's other members get them now.
    }
}

struct MyDeliveryIterator: DeliveryIterator {
    let subscription: MySubscription

    /// The next delivery: a `Delivery(event:deliveryCount:sequence:subject:acknowledger:)`
    /// whose acknowledger settles it on the backend; `nil` once the subscription ended.
    mutating func next() async throws -> Delivery? {
        nil
    }
}

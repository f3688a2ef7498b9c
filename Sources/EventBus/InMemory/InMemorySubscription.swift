import Synchronization

/// One `subscribe` call's registration with the broker. Closing it, or dropping the last reference to it,
/// ends the subscriber; a group keeps its consumer for the other members.
///
/// What goes back to the group when a member stops, at once and without counting an attempt:
/// - what its iterator pulled and did not return (the cursor gives it back when the iteration ends);
/// - on ``close()`` or cancellation, also what it returned and is not settled yet (``HeldDeliveries``).
///   Breaking out of the loop (``stopIterating()``) or releasing the subscription leaves those to the
///   application, which may still settle them.
final class InMemorySubscription: DeliverySource {
    let broker: InMemoryBroker
    let subscriber: SubscriberID
    let consumer: ConsumerID
    /// A group member's unsettled deliveries; `nil` without a group.
    let held: HeldDeliveries?
    /// Read on every `next()` without the broker's lock, so a close from another task ends iteration at once.
    let isClosed = Atomic<Bool>(false)
    /// The consumer's metrics (``ConsumerTelemetry/buffered(_:)``); `nil` while the bus is not instrumented.
    let telemetry: ConsumerTelemetry?

    init(
        broker: InMemoryBroker, subscriber: SubscriberID, consumer: ConsumerID, held: HeldDeliveries?,
        telemetry: ConsumerTelemetry?
    ) {
        self.broker = broker
        self.subscriber = subscriber
        self.consumer = consumer
        self.held = held
        self.telemetry = telemetry
    }

    deinit {
        broker.closeSubscriber(subscriber, consumer: consumer, handingBack: nil)
    }

    func makeDeliveryIterator() -> any DeliveryIterator {
        InMemoryDeliveryIterator(cursor: InMemoryDeliveryCursor(subscription: self))
    }

    func close() async {
        closeNow(handingBack: true)
    }

    /// Ends iterating: the iterator's own cursor gives back what it did not return (it is being released
    /// with the iterator), and what it returned stays the application's to settle. A group member leaves
    /// the group's consumer, which lives on, so the others get the rest; a subscriber without a group keeps
    /// its consumer until ``close()`` or release, or its deliveries could no longer be settled.
    func stopIterating() {
        isClosed.store(true, ordering: .releasing)
        if held != nil {
            broker.closeSubscriber(subscriber, consumer: consumer, handingBack: nil)
        }
    }

    /// Ends the subscriber; synchronous and short (one pass under the broker's lock), so a `deinit` may
    /// call it.
    func closeNow(handingBack: Bool) {
        isClosed.store(true, ordering: .releasing)
        broker.closeSubscriber(subscriber, consumer: consumer, handingBack: handingBack ? held : nil)
    }
}

/// The iterator handed to ``EventSubscription``; all state is in its cursor.
struct InMemoryDeliveryIterator: DeliveryIterator {
    let cursor: InMemoryDeliveryCursor

    nonisolated(nonsending) mutating func next() async throws -> Delivery? {
        // Most calls are answered from the batch already pulled: without a suspension point, and without
        // the cost of another async call's frame.
        if let buffered = cursor.nextBuffered() {
            return buffered
        }
        return await cursor.next()
    }
}

/// One iterator's local batch: a pull hands over many deliveries under one lock, and `next()` returns them
/// one by one without touching the broker. Deliveries still in the batch when the iterator ends go back to
/// the consumer uncounted, so nothing pulled is lost.
///
/// Owned by the single task that iterates; never shared. So its fields are `@exclusivity(unchecked)`: no
/// two accesses can overlap, and the run-time check cost ~10 ns on each `next()`.
final class InMemoryDeliveryCursor {
    private let subscription: InMemorySubscription
    @exclusivity(unchecked) private var batch: [Delivery] = []
    @exclusivity(unchecked) private var position = 0
    @exclusivity(unchecked) private var finished = false

    init(subscription: InMemorySubscription) {
        self.subscription = subscription
    }

    deinit {
        giveBackUnseen()
    }

    /// The next delivery of the batch already pulled, if the subscription is open and one is left.
    @inline(__always)
    func nextBuffered() -> Delivery? {
        guard position < batch.count, !subscription.isClosed.load(ordering: .acquiring) else { return nil }
        subscription.telemetry?.buffered(-1)
        position += 1
        return batch[position - 1]
    }

    nonisolated(nonsending) func next() async -> Delivery? {
        if subscription.isClosed.load(ordering: .acquiring) {
            finish(closing: false)
            return nil
        }
        if position < batch.count {
            subscription.telemetry?.buffered(-1)
            position += 1
            return batch[position - 1]
        }
        if finished {
            return nil
        }
        let broker = subscription.broker
        // The batch was handed out in full: reuse its storage for the next one.
        batch.removeAll(keepingCapacity: true)
        position = 0
        while true {
            let subscriber = subscription.subscriber
            let outcome = broker.withState { state, now, effects in
                state.pull(subscriber, now: now, broker: broker, into: &batch, effects: &effects)
            }
            switch outcome {
            case .delivered:
                // The first goes out now; the rest wait here.
                subscription.telemetry?.buffered(batch.count - 1)
                position = 1
                return batch[0]
            case .ended:
                finish(closing: false)
                return nil
            case .wait(let timer):
                if Task.isCancelled {
                    finish(closing: true)
                    return nil
                }
                switch await broker.park(subscription.subscriber, timer: timer) {
                case .retry:
                    continue
                case .ended:
                    finish(closing: false)
                    return nil
                case .cancelled:
                    finish(closing: true)
                    return nil
                }
            }
        }
    }

    /// Ends this iterator for good; cancellation of the iterating task also closes the subscription, handing
    /// back what the application holds unsettled.
    private func finish(closing: Bool) {
        finished = true
        giveBackUnseen()
        if closing {
            subscription.closeNow(handingBack: true)
        }
    }

    private func giveBackUnseen() {
        guard position < batch.count else { return }
        subscription.telemetry?.buffered(position - batch.count)
        var events: [(sequence: UInt64, attempt: UInt32)] = []
        var requests: [QueuedRequest] = []
        for delivery in batch[position...] {
            if let acknowledger = delivery.acknowledger as? InMemoryAcknowledger {
                events.append((acknowledger.sequence, acknowledger.attempt))
            } else if let acknowledger = delivery.acknowledger as? RequestAcknowledger<QueuedRequest> {
                requests.append(acknowledger.replier)
            }
        }
        batch = []
        position = 0
        let consumer = subscription.consumer
        subscription.broker.withState { state, now, effects in
            state.giveBack(to: consumer, events: events, requests: requests, now: now, effects: &effects)
        }
    }
}

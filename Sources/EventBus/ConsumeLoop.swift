import Logging

/// The default `consume(_ subscription:options:handler:)`: one handler after the other, or up to
/// ``SubscriptionOptions/handlerConcurrency`` at once, with the ack wait extended for long handlers.
enum ConsumeLoop {
    static func run(
        _ subscription: EventSubscription,
        options: SubscriptionOptions,
        handler: @escaping @Sendable (Delivery) async throws -> Void
    ) async throws {
        // What the backend applied beats what was passed: JetStream puts its configured ack wait and max
        // ack pending in place of the library's defaults.
        let consumer = subscription.consumer
        let ackWait = consumer?.ackWait ?? options.ackWait
        let extender: AckExtender?
        do {
            try options.validate()
            try options.validateConcurrency(
                maxInFlight: consumer?.maxInFlight ?? options.maxInFlight,
                limitName: consumer?.maxInFlightName ?? "maxInFlight")
            extender = options.ackExtension.map {
                AckExtender(
                    policy: $0, ackWait: ackWait, slots: options.handlerConcurrency,
                    logger: consumer?.logger ?? Logger(label: "eventbus.consume"))
            }
        } catch {
            await subscription.close()
            throw error
        }
        if options.handlerConcurrency == 1 {
            try await sequential(subscription, options: options, extender: extender, handler: handler)
        } else {
            try await concurrent(subscription, options: options, extender: extender, handler: handler)
        }
    }

    // MARK: One at a time

    private static func sequential(
        _ subscription: EventSubscription,
        options: SubscriptionOptions,
        extender: AckExtender?,
        handler: @escaping @Sendable (Delivery) async throws -> Void
    ) async throws {
        guard let extender else {
            try await loop(subscription, options: options, extender: nil, handler: handler)
            return
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await extender.run() }
            defer { group.cancelAll() }
            try await loop(subscription, options: options, extender: extender, handler: handler)
        }
    }

    private static func loop(
        _ subscription: EventSubscription,
        options: SubscriptionOptions,
        extender: AckExtender?,
        handler: @escaping @Sendable (Delivery) async throws -> Void
    ) async throws {
        var iterator = subscription.makeAsyncIterator()
        do {
            var ended = false
            if let deliveryThread = subscription.consumer?.deliveryThread {
                ended = try await withTaskExecutorPreference(deliveryThread.executor) {
                    try await handleAll(
                        from: &iterator, options: options, extender: extender, handler: handler, leavingAfterHopsOf: deliveryThread)
                }
            }
            if !ended {
                _ = try await handleAll(from: &iterator, options: options, extender: extender, handler: handler, leavingAfterHopsOf: nil)
            }
        } catch {
            await subscription.close()
            throw error
        }
        await subscription.close()
    }

    /// Handles deliveries until the subscription ends (returns true). With `deliveryThread`, the
    /// loop runs where the backend's thread hands it a delivery, as a callback would, and returns
    /// false once ``DeliveryThreadLoop/handlersLeavingBeforeTheLoopDoes`` handlers made its executor
    /// pass work on to the pool: a handler that calls actors or waits on other work pays a queued
    /// job for every hop back under the preference (the runtime switches in place only on the
    /// global executor), where on the pool it pays none.
    nonisolated(nonsending) private static func handleAll(
        from iterator: inout EventSubscription.Iterator,
        options: SubscriptionOptions,
        extender: AckExtender?,
        handler: @escaping @Sendable (Delivery) async throws -> Void,
        leavingAfterHopsOf deliveryThread: DeliveryThreadLoop?
    ) async throws -> Bool {
        var handlersThatLeft = 0
        while let delivery = try await iterator.next() {
            let forwardedBefore = deliveryThread?.forwardedJobCount()
            if let extender {
                extender.begin(delivery, slot: 0)
                try await DeliverySettlement.run(
                    { delivery in
                        defer { extender.end(slot: 0) }
                        try await handler(delivery)
                    }, on: delivery, options: options)
            } else {
                try await DeliverySettlement.run(handler, on: delivery, options: options)
            }
            if let deliveryThread, deliveryThread.forwardedJobCount() != forwardedBefore {
                handlersThatLeft += 1
                if handlersThatLeft >= DeliveryThreadLoop.handlersLeavingBeforeTheLoopDoes { return false }
            }
        }
        return true
    }

    // MARK: Several at once

    /// Iterates in a task of its own, which cancelling `consume` does not cancel: the iterator reacts to
    /// cancellation by closing the subscription and handing back every unsettled delivery at once, which
    /// would take the running handlers' deliveries away before they settle as ``SubscriptionOptions/onCancel``
    /// says. So cancelling `consume` cancels the handlers' tasks first, and the iterating task only once
    /// they have all settled.
    private static func concurrent(
        _ subscription: EventSubscription,
        options: SubscriptionOptions,
        extender: AckExtender?,
        handler: @escaping @Sendable (Delivery) async throws -> Void
    ) async throws {
        let pool = HandlerPool(limit: options.handlerConcurrency)
        let runner = Task {
            guard let extender else {
                try await pool.drive(subscription, options: options, extender: nil, handler: handler)
                return
            }
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { await extender.run() }
                defer { group.cancelAll() }
                try await pool.drive(subscription, options: options, extender: extender, handler: handler)
            }
        }
        pool.setRunner(runner)
        try await withTaskCancellationHandler {
            try await runner.value
        } onCancel: {
            pool.cancel()
        }
    }
}

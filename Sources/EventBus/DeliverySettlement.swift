/// How a handler's outcome settles its delivery; shared by every `consume`.
public enum DeliverySettlement {
    /// Runs `handler` on `delivery`, then settles it: ack on return; on a throw, nak with backoff, or
    /// `term` with the error's text on the last attempt `options.maxDeliver` allows; on `CancellationError`
    /// while the task is cancelled, what `options.onCancel` says.
    ///
    /// A delivery the handler settled itself is left alone. Settling errors that only say the delivery or
    /// bus is gone, or that are retriable (the event comes back anyway), are not rethrown.
    nonisolated(nonsending) public static func run(
        _ handler: @Sendable (Delivery) async throws -> Void,
        on delivery: Delivery,
        options: SubscriptionOptions
    ) async throws {
        if let telemetry = delivery.telemetry {
            // Instrumented: the handler and the settling run in the delivery's consumer span.
            try await telemetry.process(delivery, handler: handler) { failure in
                if let failure {
                    try await settleFailure(failure, of: delivery, options: options)
                } else {
                    try await settle { try await delivery.ack() }
                }
            }
            return
        }
        do {
            try await handler(delivery)
        } catch {
            try await settleFailure(error, of: delivery, options: options)
            return
        }
        try await settle { try await delivery.ack() }
    }

    nonisolated(nonsending) private static func settleFailure(_ error: any Error, of delivery: Delivery, options: SubscriptionOptions) async throws {
        let cancelled = error is CancellationError && Task.isCancelled
        if cancelled {
            // The consumer is going away, not failing: by default hand the event back at once, but never
            // dead-letter it for that; on the last attempt the ack wait brings it back instead.
            switch options.onCancel {
            case .nak(let delay):
                if !options.isFinalAttempt(delivery.deliveryCount) {
                    try await settle { try await delivery.nak(delay: delay) }
                }
            case .term:
                try await settle { try await delivery.term(reason: "handler cancelled") }
            }
        } else if options.isFinalAttempt(delivery.deliveryCount) {
            try await settle { try await delivery.term(reason: String(describing: error)) }
        } else {
            try await settle { try await delivery.nak(delay: nil) }
        }
    }

    /// Runs a settling `action`, ignoring the errors that only say the delivery is settled or gone.
    nonisolated(nonsending) static func settle(_ action: nonisolated(nonsending) () async throws -> Void) async throws {
        do {
            try await action()
        } catch let error as EventBusError where error.code == .alreadyAcknowledged || error.code == .closed || error.isRetriable {
            // Settled by the handler, or the bus is closing, or the event will be redelivered anyway.
        }
    }
}

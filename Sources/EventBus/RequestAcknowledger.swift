import Synchronization

/// Settles a delivered request, for every backend. Requests are delivered at most once and never stored, so
/// ack, nak and term only mark the delivery settled (once); `respond` answers the requester (once) through
/// the backend's ``RequestReplier``. One implementation, so that both backends reject the same misuse with
/// the same errors.
package final class RequestAcknowledger<Replier: RequestReplier>: DeliveryAcknowledger {
    /// The backend's side of the request (the in-memory bus takes unseen requests back through it).
    package let replier: Replier
    private let flags = Mutex<(settled: Bool, responded: Bool)>((false, false))

    /// An unsettled, unanswered request that `replier` answers.
    package init(_ replier: Replier) {
        self.replier = replier
    }

    /// Marks the request settled.
    nonisolated(nonsending) package func ack() async throws {
        try markSettled("ack")
    }

    /// Marks the request settled; a request is never redelivered, so there is nothing to delay.
    nonisolated(nonsending) package func nak(delay: Duration?) async throws {
        try markSettled("nak")
    }

    /// Marks the request settled; requests are not dead-lettered.
    nonisolated(nonsending) package func term(reason: String?) async throws {
        try markSettled("term")
    }

    /// Nothing to extend (a request has no ack wait); fails only once the request was settled.
    nonisolated(nonsending) package func inProgress() async throws {
        let settled = flags.withLock { $0.settled }
        if settled {
            throw EventBusError(.alreadyAcknowledged, "request '\(replier.requestID)' was already settled")
        }
    }

    /// Validates `reply` and sends it, the first time only.
    nonisolated(nonsending) package func respond(_ reply: Event) async throws {
        try reply.validateForPublish()
        let first = flags.withLock { flags in
            defer { flags.responded = true }
            return !flags.responded
        }
        guard first else {
            throw EventBusError(.alreadyAcknowledged, "request '\(replier.requestID)' was already answered")
        }
        try await replier.send(reply)
    }

    private func markSettled(_ action: String) throws(EventBusError) {
        let first = flags.withLock { flags in
            defer { flags.settled = true }
            return !flags.settled
        }
        guard first else {
            throw EventBusError(
                .alreadyAcknowledged,
                "request '\(replier.requestID)' was already settled; cannot \(action) it again"
            )
        }
    }
}

import Synchronization

/// Settles a delivered request: it carries the requester's reply box. Requests are delivered at most once,
/// so ack, nak and term only mark the delivery settled; `respond` answers the requester.
final class RequestAcknowledger: DeliveryAcknowledger {
    let request: QueuedRequest
    private let flags = Mutex<(settled: Bool, responded: Bool)>((false, false))

    init(_ request: QueuedRequest) {
        self.request = request
    }

    func ack() async throws {
        try markSettled("ack")
    }

    func nak(delay: Duration?) async throws {
        try markSettled("nak")
    }

    func term(reason: String?) async throws {
        try markSettled("term")
    }

    func inProgress() async throws {
        let settled = flags.withLock { $0.settled }
        if settled {
            throw EventBusError(.alreadyAcknowledged, "request '\(request.event.id)' was already settled")
        }
    }

    func respond(_ reply: Event) async throws {
        try reply.validateForPublish()
        let first = flags.withLock { flags in
            defer { flags.responded = true }
            return !flags.responded
        }
        guard first else {
            throw EventBusError(.alreadyAcknowledged, "request '\(request.event.id)' was already answered")
        }
        // A requester that gave up (timeout) or got another responder's reply first ignores this one, as a
        // NATS inbox does.
        request.replies.resolve(reply)
    }

    private func markSettled(_ action: String) throws(EventBusError) {
        let first = flags.withLock { flags in
            defer { flags.settled = true }
            return !flags.settled
        }
        guard first else {
            throw EventBusError(
                .alreadyAcknowledged,
                "request '\(request.event.id)' was already settled; cannot \(action) it again"
            )
        }
    }
}

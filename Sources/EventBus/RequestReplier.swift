/// How a backend answers one request: the in-memory bus resolves the requester's reply box, a NATS backend
/// publishes to the request's reply subject. ``RequestAcknowledger`` does the bookkeeping around it.
package protocol RequestReplier: Sendable {
    /// The request event's id, named in the errors for settling or answering twice.
    var requestID: String { get }

    /// Sends `reply` to the requester; called at most once, with a reply that passed validation.
    func send(_ reply: Event) async throws
}

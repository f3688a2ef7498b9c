/// The control messages JetStream sends to consumers: empty payload, a `Status` header.
enum JetStreamStatus {
    case heartbeat(stalledFlowControlReply: String?)
    case flowControl(reply: String)
    case noMessages
    case requestTimeout(pendingMessages: Int?)
    case conflict(description: String, pendingMessages: Int?)
    case other(code: String, description: String)

    /// Classifies a message; `nil` for an ordinary message.
    init?(_ message: NATSMessage) {
        self.init(message, replyTo: { message.replyTo })
    }

    /// Classifies a consumer's delivery; `nil` for an ordinary message. The reply subject becomes
    /// a string only for a flow-control request.
    /// Borrows the delivery: an ordinary message (a payload) is answered without copying it.
    init?(_ delivery: borrowing ConsumerDelivery) {
        guard delivery.message.payload.isEmpty else { return nil }
        let reply = delivery.replyTo
        self.init(delivery.message, replyTo: { reply })
    }

    private init?(_ message: NATSMessage, replyTo: () -> String?) {
        guard message.payload.isEmpty, let code = message.headers["Status"] else { return nil }
        let description = message.headers["Description"] ?? ""
        let pending = message.headers["Nats-Pending-Messages"].flatMap { Int($0) }
        switch code {
        case "100":
            if let reply = replyTo(), !reply.isEmpty {
                self = .flowControl(reply: reply)
            } else {
                self = .heartbeat(stalledFlowControlReply: message.headers["Nats-Consumer-Stalled"])
            }
        case "404":
            self = .noMessages
        case "408":
            self = .requestTimeout(pendingMessages: pending)
        case "409":
            self = .conflict(description: description, pendingMessages: pending)
        default:
            self = .other(code: code, description: description)
        }
    }

    /// Answers a flow-control request, or the one a heartbeat says the server is stalled on (its
    /// earlier answer was lost), so that a push consumer's server resumes sending. Does nothing
    /// for other statuses. A failed publish is ignored: the server asks again in its next
    /// heartbeat.
    func answerFlowControl(on connection: NATSConnection) {
        let reply: String
        switch self {
        case .flowControl(let subject): reply = subject
        case .heartbeat(let stalled?): reply = stalled
        default: return
        }
        // The subject came from the server: sent as is, with an empty body.
        try? connection.publishToServerSubject(reply, body: "")
    }
}

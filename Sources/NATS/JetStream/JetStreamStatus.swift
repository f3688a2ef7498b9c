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
        guard message.payload.isEmpty, let code = message.headers["Status"] else { return nil }
        let description = message.headers["Description"] ?? ""
        let pending = message.headers["Nats-Pending-Messages"].flatMap { Int($0) }
        switch code {
        case "100":
            if let reply = message.replyTo, !reply.isEmpty {
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
}

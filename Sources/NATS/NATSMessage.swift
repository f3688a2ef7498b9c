/// A message received on a core NATS subscription or as a reply to a request.
public struct NATSMessage: Sendable, Hashable {
    /// The subject the message was published to.
    public var subject: String
    /// The subject a reply should be sent to, if the publisher asked for one.
    public var replyTo: String?
    /// The headers (empty when the message had none).
    public var headers: NATSHeaders
    /// The payload bytes.
    public var payload: NATSPayload

    /// Creates a message.
    public init(subject: String, replyTo: String? = nil, headers: NATSHeaders = NATSHeaders(), payload: NATSPayload) {
        self.subject = subject
        self.replyTo = replyTo
        self.headers = headers
        self.payload = payload
    }

    /// The size this message counts for in buffer limits: payload plus encoded headers.
    var bufferedSize: Int { payload.count + headers.bufferedSize }
}

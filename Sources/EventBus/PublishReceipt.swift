/// The backend's answer to a publish: the event is stored.
public struct PublishReceipt: Hashable, Sendable {
    /// The event's position in the backend's log (JetStream: the stream sequence). Starts at 1.
    public var sequence: UInt64
    /// `true` when an event with the same id was already stored inside the duplicate window; `sequence` is then
    /// the sequence of that earlier event and nothing new was stored.
    public var duplicate: Bool
    /// The name of the log that stored the event (JetStream: the stream name).
    public var stream: String

    /// Creates a receipt.
    public init(sequence: UInt64, duplicate: Bool, stream: String) {
        self.sequence = sequence
        self.duplicate = duplicate
        self.stream = stream
    }
}

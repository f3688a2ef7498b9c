/// What a backend can do beyond the basic contract. The conformance suite skips only the checks whose
/// capability a backend does not declare, and says so.
public struct EventBusCapabilities: OptionSet, Hashable, Sendable, CustomStringConvertible {
    /// The raw bits.
    public let rawValue: UInt32

    /// Creates capabilities from raw bits.
    public init(rawValue: UInt32) {
        self.rawValue = rawValue
    }

    /// Published events are retained after delivery, so a new group can start from `.all`, a sequence or a time.
    public static let persistent = EventBusCapabilities(rawValue: 1 << 0)
    /// Retained events and group positions survive a restart of the backend.
    public static let survivesRestart = EventBusCapabilities(rawValue: 1 << 1)
    /// Subscribers sharing a group split the events between them.
    public static let consumerGroups = EventBusCapabilities(rawValue: 1 << 2)
    /// Racing publishers of the same event id store it exactly once, and exactly one of them is told it was first.
    public static let exactlyOncePublish = EventBusCapabilities(rawValue: 1 << 3)
    /// `request(_:timeout:)` and `Delivery.respond(_:)` work.
    public static let requestReply = EventBusCapabilities(rawValue: 1 << 4)
    /// Events that exhaust `maxDeliver` or are terminated move to a dead-letter subject.
    public static let deadLetter = EventBusCapabilities(rawValue: 1 << 5)
    /// ``EventBus/deadLetterQueue()`` lists, inspects, requeues and purges the dead letters.
    public static let deadLetterQueue = EventBusCapabilities(rawValue: 1 << 6)

    /// Every capability this module knows of.
    public static let all: EventBusCapabilities = [
        .persistent, .survivesRestart, .consumerGroups, .exactlyOncePublish, .requestReply, .deadLetter,
        .deadLetterQueue,
    ]

    private static let names: [(EventBusCapabilities, String)] = [
        (.persistent, "persistent"), (.survivesRestart, "survivesRestart"), (.consumerGroups, "consumerGroups"),
        (.exactlyOncePublish, "exactlyOncePublish"), (.requestReply, "requestReply"), (.deadLetter, "deadLetter"),
        (.deadLetterQueue, "deadLetterQueue"),
    ]

    /// The names of the capabilities in the set, e.g. `[persistent, deadLetter]`.
    public var description: String {
        "[" + Self.names.filter { contains($0.0) }.map(\.1).joined(separator: ", ") + "]"
    }
}

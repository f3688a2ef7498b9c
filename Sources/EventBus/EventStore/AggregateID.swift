/// Names one aggregate's history: a category (`order`) and an id within it (`o-1042`).
///
/// On JetStream the pair becomes one subject, `<prefix>.<category>.<id>`, and its snapshot key
/// `<category>.<id>`; so both parts are restricted to characters that are safe in a subject token
/// and a key-value key alike: ASCII letters, digits, `-`, `_` and `=`, 1 to 128 of them. A UUID, a
/// number or a slug fits; a value with dots, spaces or wildcards is refused before anything is
/// stored, with ``EventStoreError/Code/invalidAggregate``.
public struct AggregateID: Hashable, Sendable, CustomStringConvertible {
    /// The most characters a category or an id may have.
    public static let maxLength = 128

    /// The kind of aggregate, e.g. `order`.
    public let category: String
    /// The aggregate's id within its category, e.g. `o-1042`.
    public let id: String

    /// Creates an aggregate id after checking both parts.
    ///
    /// - Throws: ``EventStoreError/Code/invalidAggregate`` naming the part, its value and the rule.
    public init(category: String, id: String) throws(EventStoreError) {
        try Self.check(category, part: "category")
        try Self.check(id, part: "id")
        self.category = category
        self.id = id
    }

    /// `category/id`.
    public var description: String { "\(category)/\(id)" }

    static func check(_ value: String, part: String) throws(EventStoreError) {
        guard !value.isEmpty, value.utf8.count <= maxLength else {
            throw EventStoreError(
                .invalidAggregate,
                "aggregate \(part) '\(TerminalText.escaped(String(value.prefix(maxLength))))' must have 1 to \(maxLength) characters, has \(value.utf8.count)")
        }
        for byte in value.utf8 where !isAllowed(byte) {
            throw EventStoreError(
                .invalidAggregate,
                "aggregate \(part) '\(TerminalText.escaped(value))' has '\(TerminalText.escaped(String(decoding: [byte], as: UTF8.self)))'; only ASCII letters, digits, '-', '_' and '=' are allowed (it becomes a subject token and a key)")
        }
    }

    private static func isAllowed(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
            UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "="):
            return true
        default:
            return false
        }
    }
}

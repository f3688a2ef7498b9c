/// Message headers: an ordered list of name/value pairs where a name may repeat.
///
/// Names are case-sensitive, as in cnats 3.x and the NATS server. The order of values for one
/// name is kept on the wire.
public struct NATSHeaders: Sendable, Hashable, Sequence, ExpressibleByDictionaryLiteral {
    /// A header field.
    public typealias Element = (name: String, value: String)

    @usableFromInline
    var fields: [Field]

    @usableFromInline
    struct Field: Hashable, Sendable {
        @usableFromInline var name: String
        @usableFromInline var value: String
        @usableFromInline init(name: String, value: String) {
            self.name = name
            self.value = value
        }
    }

    /// Creates empty headers.
    public init() { fields = [] }

    /// Creates headers from name/value pairs, keeping their order (a name may repeat).
    public init(_ pairs: some Sequence<(String, String)>) {
        fields = pairs.map { Field(name: $0.0, value: $0.1) }
    }

    /// Creates headers from a dictionary literal; a name may repeat.
    public init(dictionaryLiteral elements: (String, String)...) {
        self.init(elements)
    }

    /// Whether there are no headers.
    public var isEmpty: Bool { fields.isEmpty }

    /// The number of name/value pairs.
    public var count: Int { fields.count }

    /// All distinct names, in first-seen order.
    public var names: [String] {
        var seen = Set<String>()
        return fields.compactMap { seen.insert($0.name).inserted ? $0.name : nil }
    }

    /// The first value of a header, or `nil`. Setting replaces every value of that name;
    /// setting `nil` removes the name.
    public subscript(name: String) -> String? {
        get { fields.first { $0.name == name }?.value }
        set {
            if let newValue {
                set(newValue, for: name)
            } else {
                removeAll(name)
            }
        }
    }

    /// Every value of a header, in order.
    public func values(for name: String) -> [String] {
        fields.filter { $0.name == name }.map(\.value)
    }

    /// Appends a value, keeping existing values of the same name.
    public mutating func add(_ value: String, for name: String) {
        fields.append(Field(name: name, value: value))
    }

    /// Replaces every value of a name with one value.
    public mutating func set(_ value: String, for name: String) {
        if let index = fields.firstIndex(where: { $0.name == name }) {
            fields[index].value = value
            var next = index + 1
            while next < fields.count {
                if fields[next].name == name { fields.remove(at: next) } else { next += 1 }
            }
        } else {
            fields.append(Field(name: name, value: value))
        }
    }

    /// Removes every value of a name.
    public mutating func removeAll(_ name: String) {
        fields.removeAll { $0.name == name }
    }

    /// Iterates over name/value pairs in order.
    @inlinable
    public func makeIterator() -> some IteratorProtocol<Element> {
        fields.lazy.map { (name: $0.name, value: $0.value) }.makeIterator()
    }

    /// The size of these headers on the wire (`NATS/1.0\r\n`, one `name: value\r\n` line per value,
    /// and the closing `\r\n`), used to check a message against the server's `max_payload`.
    public var encodedSize: Int {
        if fields.isEmpty { return 0 }
        var size = 12  // "NATS/1.0\r\n" + final "\r\n"
        for field in fields { size += field.name.utf8.count + 2 + field.value.utf8.count + 2 }
        return size
    }
}

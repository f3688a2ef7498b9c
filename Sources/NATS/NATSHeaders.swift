/// Message headers: an ordered list of name/value pairs where a name may repeat.
///
/// Names are case-sensitive, as in cnats 3.x and the NATS server. The order of values for one
/// name is kept on the wire.
///
/// Headers of a received message stay in their wire form (the block, copied into the message's
/// payload slabs) until they are read: looking up one name scans the block without building the
/// list, and iterating or changing the headers builds it (each time, for iteration). A consumer
/// that never reads a message's headers, or reads one or two of them, pays no string per field.
public struct NATSHeaders: Sendable, Hashable, Sequence, ExpressibleByDictionaryLiteral {
    /// A header field.
    public typealias Element = (name: String, value: String)

    /// The fields, when the headers were built or changed in Swift (empty while `block` is set).
    @usableFromInline
    var parsed: [Field]

    /// A received block in its simple form (see ``SimpleBlock``), not parsed yet; `nil` once the
    /// headers are changed.
    var block: NATSPayload?

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
    public init() {
        parsed = []
        block = nil
    }

    /// Creates headers from name/value pairs, keeping their order (a name may repeat).
    public init(_ pairs: some Sequence<(String, String)>) {
        parsed = pairs.map { Field(name: $0.0, value: $0.1) }
        block = nil
    }

    /// Creates headers from a dictionary literal; a name may repeat.
    public init(dictionaryLiteral elements: (String, String)...) {
        self.init(elements)
    }

    /// Headers read lazily from a received block that ``SimpleBlock/isSimple(_:)`` accepted.
    init(simpleBlock: NATSPayload) {
        parsed = []
        block = simpleBlock
    }

    /// Every field in order (built from the block when the headers are still in wire form).
    var fields: [Field] {
        guard let block else { return parsed }
        return block.withUnsafeBytes { bytes in
            var fields: [Field] = []
            fields.reserveCapacity(SimpleBlock.lineCount(bytes))
            SimpleBlock.forEachField(bytes) { name, value in
                fields.append(Field(name: SimpleBlock.text(name), value: SimpleBlock.text(value)))
                return true
            }
            return fields
        }
    }

    /// Turns wire-form headers into the field list, before a change.
    private mutating func materialize() {
        guard block != nil else { return }
        parsed = fields
        block = nil
    }

    /// Whether there are no headers.
    public var isEmpty: Bool { block == nil && parsed.isEmpty }

    /// The number of name/value pairs.
    public var count: Int {
        guard let block else { return parsed.count }
        return block.withUnsafeBytes { SimpleBlock.lineCount($0) }
    }

    /// All distinct names, in first-seen order.
    public var names: [String] {
        var seen = Set<String>()
        return fields.compactMap { seen.insert($0.name).inserted ? $0.name : nil }
    }

    /// The first value of a header, or `nil`. Setting replaces every value of that name;
    /// setting `nil` removes the name.
    public subscript(name: String) -> String? {
        get {
            guard let block else { return parsed.first { $0.name == name }?.value }
            var found: String?
            forEachValue(of: name, in: block) { value in
                found = value
                return false
            }
            return found
        }
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
        guard let block else { return parsed.filter { $0.name == name }.map(\.value) }
        var values: [String] = []
        forEachValue(of: name, in: block) { value in
            values.append(value)
            return true
        }
        return values
    }

    /// Calls `body` with each value of `name` in a wire-form block until it returns `false`.
    private func forEachValue(of name: String, in block: NATSPayload, _ body: (String) -> Bool) {
        // A received name that is not UTF-8 reads (in `names`, in iteration) with U+FFFD where
        // the bad bytes were: such a name is compared as that text, not byte for byte.
        let text = name
        let repaired = text.unicodeScalars.contains("\u{FFFD}")
        var name = name
        name.withUTF8 { wanted in
            block.withUnsafeBytes { bytes in
                SimpleBlock.forEachField(bytes) { fieldName, value in
                    guard fieldName.elementsEqual(UnsafeRawBufferPointer(wanted))
                        || (repaired && SimpleBlock.text(fieldName) == text)
                    else { return true }
                    return body(SimpleBlock.text(value))
                }
            }
        }
    }

    /// Makes room for at least `minimumCapacity` fields, so that adding that many allocates once
    /// instead of growing the list a field at a time (four allocations for eight fields).
    public mutating func reserveCapacity(_ minimumCapacity: Int) {
        materialize()
        parsed.reserveCapacity(minimumCapacity)
    }

    /// Appends a value, keeping existing values of the same name.
    public mutating func add(_ value: String, for name: String) {
        materialize()
        parsed.append(Field(name: name, value: value))
    }

    /// Replaces every value of a name with one value.
    public mutating func set(_ value: String, for name: String) {
        // Already so (the usual case when a message id is set twice): no write, so headers
        // shared with the caller are not copied.
        if block == nil, let index = parsed.firstIndex(where: { $0.name == name }), parsed[index].value == value,
            !parsed[(index + 1)...].contains(where: { $0.name == name })
        {
            return
        }
        materialize()
        if let index = parsed.firstIndex(where: { $0.name == name }) {
            parsed[index].value = value
            var next = index + 1
            while next < parsed.count {
                if parsed[next].name == name { parsed.remove(at: next) } else { next += 1 }
            }
        } else {
            parsed.append(Field(name: name, value: value))
        }
    }

    /// Removes every value of a name.
    public mutating func removeAll(_ name: String) {
        materialize()
        parsed.removeAll { $0.name == name }
    }

    /// Iterates over name/value pairs in order.
    public func makeIterator() -> some IteratorProtocol<Element> {
        fields.lazy.map { (name: $0.name, value: $0.value) }.makeIterator()
    }

    /// Calls `body` with the UTF-8 bytes of each name and value in order, until it returns
    /// `false`; the buffers are valid only inside `body`. Reads wire-form headers in place, so
    /// a reader that wants a few of many fields (the CloudEvents binding) makes strings only for
    /// those.
    package func forEachFieldBytes(
        _ body: (_ name: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) -> Bool
    ) {
        if let block {
            block.withUnsafeBytes { SimpleBlock.forEachField($0, body) }
            return
        }
        for field in parsed {
            var name = field.name
            var value = field.value
            let goOn = name.withUTF8 { nameBytes in
                value.withUTF8 { body(UnsafeRawBufferPointer(nameBytes), UnsafeRawBufferPointer($0)) }
            }
            if !goOn { return }
        }
    }

    /// The size of these headers on the wire (`NATS/1.0\r\n`, one `name: value\r\n` line per value,
    /// and the closing `\r\n`), used to check a message against the server's `max_payload`.
    public var encodedSize: Int {
        if isEmpty { return 0 }
        var size = 12  // "NATS/1.0\r\n" + final "\r\n"
        if let block {
            block.withUnsafeBytes { bytes in
                SimpleBlock.forEachField(bytes) { name, value in
                    size += name.count + 2 + value.count + 2
                    return true
                }
            }
            return size
        }
        for field in parsed { size += field.name.utf8.count + 2 + field.value.utf8.count + 2 }
        return size
    }

    /// The bytes these headers take in a buffer: the received block's size, or ``encodedSize``.
    var bufferedSize: Int { block?.count ?? encodedSize }

    /// Equal when the same names have the same values in the same order, whichever form either
    /// side is in.
    public static func == (lhs: NATSHeaders, rhs: NATSHeaders) -> Bool {
        if lhs.block == nil && rhs.block == nil { return lhs.parsed == rhs.parsed }
        return lhs.fields == rhs.fields
    }

    /// Hashes the fields in order, whichever form the headers are in.
    public func hash(into hasher: inout Hasher) {
        hasher.combine(fields)
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The NATS header block on the wire (`NATS/1.0[ status[ description]]\r\n`, then one
/// `name: value\r\n` line per value, then `\r\n`), written and read in Swift.
///
/// cnats 3.4 keeps headers in a hash map per message: building one costs an allocation per name
/// and value, and reading one back lifts the whole block into a map with the same cost again (and
/// loses the order of names). Messages that carry many headers (CloudEvents, message ids,
/// expectations) spent most of their client time there. The module now hands cnats a ready block
/// when it sends and reads the block itself when it receives (see `NativeMessage`); these two
/// functions are that block's only writer and reader.
extension NATSHeaders {
    /// Writes the header block into `buffer`, which holds at least ``encodedSize`` bytes; returns
    /// the number of bytes written (``encodedSize``). The fields must have passed
    /// `NATSValidation.validateHeaders` (no CR, LF or NUL in a value, printable names).
    func encode(into buffer: UnsafeMutableRawBufferPointer) -> Int {
        // No headers: no block at all (a PUB, not an HPUB), as `encodedSize` says.
        if isEmpty { return 0 }
        // The offset is the closure's only capture, and the writing is in a static function:
        // local functions capturing it, called from the closure, made every access to it a
        // run-time exclusivity check (24 calls to `swift_beginAccess` in the specialized loop,
        // 1.4% of a publisher's CPU).
        var offset = Self.versionLine.withUTF8Buffer { Self.write(UnsafeRawBufferPointer($0), into: buffer, at: 0) }
        forEachFieldBytes { name, value in
            offset = Self.writeField(name, value, into: buffer, at: offset)
            return true
        }
        buffer[offset] = 0x0D
        buffer[offset + 1] = 0x0A
        return offset + 2
    }

    /// Writes `name: value\r\n` at `offset`; returns the offset after it.
    private static func writeField(
        _ name: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer, into buffer: UnsafeMutableRawBufferPointer, at offset: Int
    ) -> Int {
        var offset = write(name, into: buffer, at: offset)
        buffer[offset] = UInt8(ascii: ":")
        buffer[offset + 1] = UInt8(ascii: " ")
        offset = write(value, into: buffer, at: offset + 2)
        buffer[offset] = 0x0D
        buffer[offset + 1] = 0x0A
        return offset + 2
    }

    /// Copies `bytes` to `offset`; returns the offset after them.
    private static func write(_ bytes: UnsafeRawBufferPointer, into buffer: UnsafeMutableRawBufferPointer, at offset: Int) -> Int {
        guard let source = bytes.baseAddress, !bytes.isEmpty else { return offset }
        (buffer.baseAddress! + offset).copyMemory(from: source, byteCount: bytes.count)
        return offset + bytes.count
    }

    /// Parses a received header block. Returns `nil` when the block is not a NATS header block
    /// (missing `NATS/1.0`, a line without `:` or CRLF), so that the caller can fall back to cnats.
    ///
    /// Reads the way cnats and the server do: an inline status (`NATS/1.0 503`,
    /// `NATS/1.0 100 Idle Heartbeat`) becomes the `Status` field (three characters) and the
    /// `Description` field (the rest, trimmed); names are kept as sent; values lose leading and
    /// trailing white space; a line starting with white space continues the previous value. Unlike
    /// cnats, names keep their order and an empty value stays empty.
    init?(wireBlock block: UnsafeRawBufferPointer) {
        let bytes = block.bindMemory(to: UInt8.self)
        let count = bytes.count
        guard count >= Self.versionLine.utf8CodeUnitCount + 2 else { return nil }
        let prefixMatches = Self.versionLine.withUTF8Buffer { line in
            (0..<8).allSatisfy { bytes[$0] == line[$0] }
        }
        guard prefixMatches else { return nil }

        /// The index of the next LF at or after `start`, or `count`.
        func lineFeed(from start: Int) -> Int {
            var index = start
            while index < count && bytes[index] != 0x0A { index += 1 }
            return index
        }
        func isSpace(_ byte: UInt8) -> Bool { byte == 0x20 || byte == 0x09 || byte == 0x0D || byte == 0x0A }
        func text(_ range: Range<Int>) -> String {
            String(decoding: UnsafeBufferPointer(rebasing: bytes[range]), as: UTF8.self)
        }
        func trimmed(_ start: Int, _ end: Int) -> Range<Int> {
            var lower = start
            var upper = end
            while lower < upper && isSpace(bytes[lower]) { lower += 1 }
            while upper > lower && isSpace(bytes[upper - 1]) { upper -= 1 }
            return lower..<upper
        }

        // The status line: "NATS/1.0", optionally a status and a description.
        let statusEnd = lineFeed(from: 8)
        guard statusEnd < count else { return nil }
        let status = trimmed(8, statusEnd)
        var fields: [Field] = []
        // One field per line at most (plus the two a status adds): one allocation for the list.
        var lines = 2
        for index in statusEnd..<count where bytes[index] == 0x0A { lines += 1 }
        fields.reserveCapacity(lines)
        var line = statusEnd + 1
        while line < count {
            let end = lineFeed(from: line)
            guard end < count else { return nil }
            let content = trimmed(line, end)
            if content.isEmpty {
                // The empty line that ends the block (or a stray blank line): nothing to read.
                line = end + 1
                continue
            }
            if bytes[line] == 0x20 || bytes[line] == 0x09 {
                // A folded line (starting with a space or tab) continues the previous value.
                guard !fields.isEmpty else { return nil }
                // Joined with one space; onto an empty value without one (values have no blanks at
                // their ends, and a leading one would be lost when the headers are sent again).
                let previous = fields[fields.count - 1].value
                fields[fields.count - 1].value = previous.isEmpty ? text(content) : previous + " " + text(content)
            } else {
                var colon = line
                while colon < end && bytes[colon] != UInt8(ascii: ":") { colon += 1 }
                guard colon < end, colon > line else { return nil }
                fields.append(Field(name: text(line..<colon), value: text(trimmed(colon + 1, end))))
            }
            line = end + 1
        }
        if !status.isEmpty {
            // As in cnats: the inline status replaces header lines of the same names.
            fields.removeAll { $0.name == "Status" || $0.name == "Description" }
            let codeEnd = Swift.min(status.upperBound, status.lowerBound + 3)
            // Trimmed like every value (a code shorter than three characters is followed by a blank).
            var inline = [Field(name: "Status", value: text(trimmed(status.lowerBound, codeEnd)))]
            let description = trimmed(codeEnd, status.upperBound)
            if !description.isEmpty { inline.append(Field(name: "Description", value: text(description))) }
            fields.insert(contentsOf: inline, at: 0)
        }
        self.init()
        self.parsed = fields
    }

    /// The first line of a block without a status; its first 8 bytes start every block.
    fileprivate static let versionLine: StaticString = "NATS/1.0\r\n"
}

/// The common shape of a received header block, which ``NATSHeaders`` keeps unparsed: no status
/// (`NATS/1.0\r\n` alone on the first line), then lines `name:value\r\n` that each start with
/// a non-blank byte and have a `:` after a non-empty name, then the closing `\r\n` that ends the
/// block. Everything a stream message, a core message with headers and a request carry looks so;
/// status messages (heartbeats, flow control, 503) and folded lines take ``NATSHeaders/init(wireBlock:)``.
///
/// Read the same way as that parser: names as sent, values without leading and trailing blanks.
enum SimpleBlock {
    /// Whether `bytes` is a block of the simple shape with at least one field.
    static func isSimple(_ bytes: UnsafeRawBufferPointer) -> Bool {
        let count = bytes.count
        let start = NATSHeaders.versionLine.utf8CodeUnitCount
        guard count > start + 2 else { return false }
        let versionMatches = NATSHeaders.versionLine.withUTF8Buffer { line in
            (0..<start).allSatisfy { bytes[$0] == line[$0] }
        }
        guard versionMatches else { return false }
        var line = start
        var fields = 0
        while line < count {
            guard let lineFeed = lineFeed(in: bytes, from: line), lineFeed > line,
                bytes[lineFeed - 1] == 0x0D
            else { return false }
            if lineFeed == line + 1 {
                // The empty line: it must end the block.
                return lineFeed == count - 1 && fields > 0
            }
            let first = bytes[line]
            guard first != 0x20 && first != 0x09 && first != UInt8(ascii: ":"),
                colon(in: bytes, from: line, to: lineFeed - 1) != nil
            else { return false }
            fields += 1
            line = lineFeed + 1
        }
        return false
    }

    /// Calls `body` with each field's name and value of a block that ``isSimple(_:)`` accepted,
    /// until it returns `false`.
    @inline(__always)
    static func forEachField(
        _ bytes: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) -> Bool
    ) {
        let count = bytes.count
        var line = NATSHeaders.versionLine.utf8CodeUnitCount
        while line < count, let lineFeed = lineFeed(in: bytes, from: line), lineFeed > line + 1 {
            guard let colon = colon(in: bytes, from: line, to: lineFeed - 1) else { return }
            var lower = colon + 1
            var upper = lineFeed - 1
            while lower < upper && isBlank(bytes[lower]) { lower += 1 }
            while upper > lower && isBlank(bytes[upper - 1]) { upper -= 1 }
            let name = UnsafeRawBufferPointer(rebasing: bytes[line..<colon])
            let value = UnsafeRawBufferPointer(rebasing: bytes[lower..<upper])
            if !body(name, value) { return }
            line = lineFeed + 1
        }
    }

    /// The number of fields in a block that ``isSimple(_:)`` accepted.
    static func lineCount(_ bytes: UnsafeRawBufferPointer) -> Int {
        var count = 0
        forEachField(bytes) { _, _ in
            count += 1
            return true
        }
        return count
    }

    /// A string of the bytes (invalid UTF-8 repaired, as everywhere a received header is read).
    static func text(_ bytes: UnsafeRawBufferPointer) -> String {
        String(decoding: bytes, as: UTF8.self)
    }

    /// What the full parser trims from values, too.
    private static func isBlank(_ byte: UInt8) -> Bool { byte == 0x20 || byte == 0x09 || byte == 0x0D || byte == 0x0A }

    /// The index of the first LF at or after `start`.
    @inline(__always)
    private static func lineFeed(in bytes: UnsafeRawBufferPointer, from start: Int) -> Int? {
        guard start < bytes.count, let base = bytes.baseAddress,
            let found = memchr(base + start, 0x0A, bytes.count - start)
        else { return nil }
        return base.distance(to: UnsafeRawPointer(found))
    }

    /// The index of the first `:` in `start..<end`.
    @inline(__always)
    private static func colon(in bytes: UnsafeRawBufferPointer, from start: Int, to end: Int) -> Int? {
        guard start < end, let base = bytes.baseAddress,
            let found = memchr(base + start, Int32(UInt8(ascii: ":")), end - start)
        else { return nil }
        return base.distance(to: UnsafeRawPointer(found))
    }
}

import EventBus
import Foundation
import NATS

/// A value of `--json` output. Written as ASCII only: every character outside printable ASCII
/// is a `\u` escape, so a JSON line is as safe on a terminal as the escaped text (a C1 control
/// or a bidi override from the wire reaches the screen as six visible characters).
enum JSONValue: Sendable, ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral,
    ExpressibleByArrayLiteral, ExpressibleByNilLiteral
{
    case string(String)
    case integer(Int64)
    case unsigned(UInt64)
    case number(Double)
    case bool(Bool)
    case null
    case array([JSONValue])
    case object(JSONObject)

    init(stringLiteral value: String) { self = .string(value) }
    init(integerLiteral value: Int64) { self = .integer(value) }
    init(booleanLiteral value: Bool) { self = .bool(value) }
    init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
    init(nilLiteral: ()) { self = .null }

    static func int(_ value: some BinaryInteger) -> JSONValue {
        if let signed = Int64(exactly: value) { return .integer(signed) }
        return .unsigned(UInt64(clamping: value))
    }

    static func optional(_ value: String?) -> JSONValue { value.map(JSONValue.string) ?? .null }

    static func strings(_ values: [String]) -> JSONValue { .array(values.map(JSONValue.string)) }

    /// A duration as whole nanoseconds (the unit of the JetStream API).
    static func nanoseconds(_ duration: Duration) -> JSONValue {
        let (seconds, attoseconds) = duration.components
        return .integer(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }

    func write(into text: inout String) {
        switch self {
        case .string(let value): JSONValue.writeString(value, into: &text)
        case .integer(let value): text += String(value)
        case .unsigned(let value): text += String(value)
        case .number(let value): text += value.isFinite ? String(value) : "null"
        case .bool(let value): text += value ? "true" : "false"
        case .null: text += "null"
        case .array(let values):
            text += "["
            for (index, value) in values.enumerated() {
                if index > 0 { text += "," }
                value.write(into: &text)
            }
            text += "]"
        case .object(let object): object.write(into: &text)
        }
    }

    /// Writes `value` as a JSON string of printable ASCII: `"`, `\`, newline, return and tab as
    /// their short escapes, every other scalar outside printable ASCII as `\u` escapes of its
    /// UTF-16 code units (a surrogate pair beyond the BMP).
    ///
    /// Runs of plain characters are appended whole: one by one, `subscribe --json` spent half its
    /// CPU in this function.
    static func writeString(_ value: String, into text: inout String) {
        text += "\""
        let scalars = value.unicodeScalars
        var runStart = scalars.startIndex
        var index = runStart
        while index != scalars.endIndex {
            let scalar = scalars[index]
            if scalar.isASCII && isPlainJSONByte(UInt8(scalar.value)) {
                scalars.formIndex(after: &index)
                continue
            }
            text += value[runStart..<index]
            switch scalar {
            case "\"": text += "\\\""
            case "\\": text += "\\\\"
            case "\n": text += "\\n"
            case "\r": text += "\\r"
            case "\t": text += "\\t"
            // UTF-16 code units: a scalar beyond the BMP becomes a surrogate pair.
            default: for unit in scalar.utf16 { writeEscape(unit, into: &text) }
            }
            scalars.formIndex(after: &index)
            runStart = index
        }
        text += value[runStart...]
        text += "\""
    }

    /// `\u` and four lowercase hex digits.
    private static func writeEscape(_ unit: UInt16, into text: inout String) {
        let hex = String(unit, radix: 16)
        text += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
    }

    /// A byte that stands for itself inside a JSON string here: printable ASCII other than `"`
    /// and `\` (the escaping above writes everything else as an escape).
    private static func isPlainJSONByte(_ byte: UInt8) -> Bool {
        byte >= 0x20 && byte <= 0x7E && byte != UInt8(ascii: "\"") && byte != UInt8(ascii: "\\")
    }
}

/// A JSON object whose keys keep the order they were written in.
struct JSONObject: Sendable, ExpressibleByDictionaryLiteral {
    var fields: [(String, JSONValue)]

    init(dictionaryLiteral elements: (String, JSONValue)...) { fields = elements }
    init(_ fields: [(String, JSONValue)]) { self.fields = fields }

    subscript(key: String) -> JSONValue? {
        get { fields.first { $0.0 == key }?.1 }
        set {
            fields.removeAll { $0.0 == key }
            if let newValue { fields.append((key, newValue)) }
        }
    }

    func write(into text: inout String) {
        text += "{"
        for (index, (key, value)) in fields.enumerated() {
            if index > 0 { text += "," }
            JSONValue.writeString(key, into: &text)
            text += ":"
            value.write(into: &text)
        }
        text += "}"
    }

    /// The object on one line.
    var line: String {
        var text = ""
        write(into: &text)
        return text
    }
}

/// Where a command's results go: lines for a person, or with `--json` one JSON object per line.
/// Each record is written and flushed at once, so a pipe gets it when it happens.
struct Output: Sendable {
    var json: Bool

    /// Writes one record: `text` (already escaped where it quotes the wire) or `object`.
    func emit(_ text: @autoclosure () -> String, _ object: @autoclosure () -> JSONObject) {
        write(json ? object().line : text())
    }

    /// A line only a person reads (a heading, a hint); nothing in JSON mode.
    func note(_ text: @autoclosure () -> String) {
        if !json { write(text()) }
    }

    private func write(_ line: String) {
        print(line)
        fflush(nil)
    }
}

/// Human-readable figures: `532 µs`, `1.2 MiB`, `10,000`.
enum Human {
    /// A duration with three significant digits in the largest unit that keeps it at least 1:
    /// `532 ns`, `41.2 µs`, `1.5 ms`, `2.31 s`, `5 min`, `7 d`.
    static func duration(_ duration: Duration) -> String {
        let (seconds, attoseconds) = duration.components
        return self.duration(nanoseconds: Double(seconds) * 1e9 + Double(attoseconds) / 1e9)
    }

    static func duration(nanoseconds: Double) -> String {
        let magnitude = abs(nanoseconds)
        if magnitude < 1_000 { return "\(Int64(nanoseconds.rounded())) ns" }
        if magnitude < 1e6 { return significant(nanoseconds / 1e3) + " µs" }
        if magnitude < 1e9 { return significant(nanoseconds / 1e6) + " ms" }
        if magnitude < 120e9 { return significant(nanoseconds / 1e9) + " s" }
        if magnitude < 7_200e9 { return significant(nanoseconds / 60e9) + " min" }
        if magnitude < 172_800e9 { return significant(nanoseconds / 3_600e9) + " h" }
        return significant(nanoseconds / 86_400e9) + " d"
    }

    /// Bytes in binary units: `128 B`, `1.5 KiB`, `3.2 GiB`.
    static func bytes(_ bytes: some BinaryInteger) -> String {
        let value = Double(bytes)
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var scaled = value
        var unit = 0
        while abs(scaled) >= 1024 && unit < units.count - 1 {
            scaled /= 1024
            unit += 1
        }
        return unit == 0 ? "\(bytes) B" : significant(scaled) + " " + units[unit]
    }

    /// A count with thousands separators: `10,000`.
    static func count(_ value: some BinaryInteger) -> String {
        let digits = String(value.magnitude)
        var grouped = ""
        for (index, digit) in digits.enumerated() {
            if index > 0 && (digits.count - index) % 3 == 0 { grouped += "," }
            grouped.append(digit)
        }
        return (value < 0 ? "-" : "") + grouped
    }

    /// A rate or size with three significant digits and no trailing zeros (`1,234`, `56.7`, `0.891`, `7`).
    static func significant(_ value: Double) -> String {
        let magnitude = abs(value)
        if magnitude >= 1_000 { return count(Int64(value.rounded())) }
        let decimals = magnitude >= 100 ? 0 : magnitude >= 10 ? 1 : magnitude >= 1 ? 2 : 3
        var text = String(format: "%.\(decimals)f", value)
        if text.contains(".") {
            while text.hasSuffix("0") { text.removeLast() }
            if text.hasSuffix(".") { text.removeLast() }
        }
        return text
    }

    /// Rows as columns padded to their widest cell, two spaces apart.
    static func table(_ header: [String], _ rows: [[String]]) -> [String] {
        let all = [header] + rows
        var widths = [Int](repeating: 0, count: header.count)
        for row in all {
            for (column, cell) in row.enumerated() where column < widths.count { widths[column] = max(widths[column], cell.count) }
        }
        return all.map { row in
            var line = ""
            for (column, cell) in row.enumerated() {
                line += column == row.count - 1 ? cell : cell + String(repeating: " ", count: widths[column] - cell.count + 2)
            }
            return line
        }
    }

    /// A limit where -1 (or less) means none.
    static func limit(_ value: Int64, _ format: (Int64) -> String) -> String {
        value < 0 ? "unlimited" : format(value)
    }
}

/// Text from the wire or a server, ready for the terminal (see `TerminalText`).
func shown(_ value: some CustomStringConvertible) -> String {
    TerminalText.escaped(value.description)
}

/// Whether a person is watching this stream (a terminal, not a pipe or a file).
func isTerminal(_ descriptor: Int32) -> Bool {
    isatty(descriptor) == 1
}

/// Whether `error` is the JetStream API error with this `err_code` (stream not found, ...).
func isJetStreamError(_ error: any Error, _ code: Int) -> Bool {
    (error as? NATSError)?.jetStreamErrorCode == code
}

/// What `read` returns, or `nil` when the server says it does not exist (stream, consumer).
func found<Value>(_ read: @autoclosure () async throws -> Value) async throws -> Value? {
    do {
        return try await read()
    } catch let error as NATSError
        where error.jetStreamErrorCode == NATSJetStreamErrorCode.streamNotFound || error.jetStreamErrorCode == NATSJetStreamErrorCode.consumerNotFound
    {
        return nil
    }
}

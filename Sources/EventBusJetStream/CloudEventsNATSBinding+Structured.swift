public import EventBus
public import NATS

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The binding's structured content mode, read: the whole event as a JSON object (the CloudEvents
/// JSON event format) in the payload.
///
/// The bus itself always sends binary mode, but the binding lets each sender choose, and
/// CloudEvents SDKs in other languages send structured mode: some mark it with `content-type:
/// application/cloudevents+json` as the binding says, others send the JSON object with no headers
/// at all (the CloudEvents Go SDK's NATS protocols when told to, the Rust SDK's NATS binding always).
/// Read as binary mode, such an event would arrive without its type and source, its data the whole
/// JSON envelope.
extension CloudEventsNATSBinding {
    /// Whether a media type names the CloudEvents format of a single event (`application/cloudevents`
    /// or `application/cloudevents+<format>`, in any case, parameters ignored): in `content-type`,
    /// it marks a message in structured mode. The batch format (`application/cloudevents-batch+json`)
    /// is not one: the binding has no batch mode.
    public static func isStructuredMediaType(_ mediaType: String) -> Bool {
        isStructuredMediaType(mediaType.utf8)
    }

    /// ``isStructuredMediaType(_:)`` on a header value's bytes.
    static func isStructuredMediaType(_ mediaType: some Collection<UInt8>) -> Bool {
        let prefix = "application/cloudevents".utf8
        var rest = mediaType.drop { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") }
        for expected in prefix {
            guard let byte = rest.first, asciiLowercased(byte) == expected else { return false }
            rest = rest.dropFirst()
        }
        guard let next = rest.first else { return true }
        return next == UInt8(ascii: "+") || next == UInt8(ascii: ";") || next == UInt8(ascii: " ") || next == UInt8(ascii: "\t")
    }

    /// Reads an event in structured mode: `payload` is a JSON object with at least a string
    /// `specversion`. `nil` when it is not one (not JSON, not an object, no `specversion`, a
    /// `data_base64` that is not base64), so that the caller can read the message as binary mode and
    /// keep the payload as the data.
    ///
    /// Members map to the event as the headers of binary mode do: `id` (`Nats-Msg-Id`, then a new
    /// id, when missing), `source`, `type`, `time`, `datacontenttype`, `correlationid`,
    /// `causationid`, `traceparent`, `tracestate`; `subject` is the bus subject, as in binary mode;
    /// `dataschema` is not kept; every other member whose value is a string, a number or a boolean
    /// is an extension (its canonical string form; a member whose name holds anything but
    /// lower-case letters, digits and `-` is not an attribute and is left out). The data is
    /// `data_base64` decoded, or `data`: the UTF-8 of a string when `datacontenttype` is not JSON,
    /// otherwise the JSON value exactly as it was written (a missing `datacontenttype` means JSON in
    /// this format).
    public static func structuredEvent(subject: String, headers: NATSHeaders, payload: [UInt8]) -> Event? {
        // Cheap checks first: any headerless payload comes here.
        guard payload.first(where: { !isJSONWhitespace($0) }) == UInt8(ascii: "{"), payload.contains(specVersionKey),
            let members = try? JSONDecoder().decode([String: NATSJSONValue].self, from: Data(payload)),
            members["specversion"]?.stringValue != nil
        else { return nil }
        let dataContentType = members["datacontenttype"]?.stringValue
        var data: [UInt8] = []
        if let encoded = members["data_base64"]?.stringValue {
            guard let decoded = Data(base64Encoded: encoded) else { return nil }
            data = Array(decoded)
        } else if let value = members["data"] {
            switch value {
            case .null: break
            case .string(let text) where !isJSONMediaType(dataContentType): data = Array(text.utf8)
            default: data = rawMemberValue(named: "data", in: payload).map(Array.init) ?? []
            }
        }
        var extensions: [String: String] = [:]
        for (name, value) in members where !structuredAttributeMembers.contains(name) {
            // An attribute name is lower-case letters and digits (the bus also allows `-`). JSON
            // names are case-sensitive, so `Time` is no attribute at all (not `time` again); any
            // such member is left out, as it could not travel as a `ce-<name>` header either.
            guard !name.isEmpty, name.utf8.allSatisfy(isExtensionNameByte) else { continue }
            let text: String
            switch value {
            case .string(let string): text = string
            case .integer(let integer): text = String(integer)
            case .bool(let bool): text = bool ? "true" : "false"
            case .double(let double): text = String(double)
            case .null, .array, .object: continue
            }
            extensions[name] = text
        }
        return Event(
            id: members["id"]?.stringValue ?? headers[Header.messageID] ?? Event.makeID(),
            subject: subject,
            type: members["type"]?.stringValue ?? "",
            source: members["source"]?.stringValue ?? "",
            time: members["time"]?.stringValue.flatMap(parseTime),
            dataContentType: dataContentType,
            data: data,
            extensions: extensions,
            correlationID: members["correlationid"]?.stringValue,
            causationID: members["causationid"]?.stringValue,
            traceParent: members["traceparent"]?.stringValue,
            traceState: members["tracestate"]?.stringValue)
    }

    /// Members of a structured event that are attributes (or data) rather than extensions.
    private static let structuredAttributeMembers: Set<String> = [
        "specversion", "id", "source", "type", "subject", "time", "datacontenttype", "dataschema", "data", "data_base64",
        "correlationid", "causationid", "traceparent", "tracestate",
    ]

    private static let specVersionKey = Array(#""specversion""#.utf8)

    /// Whether the JSON event format holds `data` as a JSON value for this media type:
    /// `application/json`, `text/json`, any `+json` subtype, or none (the format's default).
    static func isJSONMediaType(_ mediaType: String?) -> Bool {
        guard let mediaType else { return true }
        let essence = mediaType.split(separator: ";", maxSplits: 1).first.map { $0.lowercased() } ?? ""
        let trimmed = essence.utf8.filter { $0 != UInt8(ascii: " ") && $0 != UInt8(ascii: "\t") }
        let text = String(decoding: trimmed, as: UTF8.self)
        return text == "application/json" || text == "text/json" || text.hasSuffix("+json")
    }

    /// The bytes of the value of the top-level member `name` in a JSON object that is known to be
    /// valid, exactly as written (a nested object keeps its spacing and member order).
    static func rawMemberValue(named name: String, in json: [UInt8]) -> ArraySlice<UInt8>? {
        var scanner = JSONScanner(bytes: json)
        scanner.skipWhitespace()
        guard scanner.take(UInt8(ascii: "{")) else { return nil }
        while true {
            scanner.skipWhitespace()
            guard scanner.peek == UInt8(ascii: "\"") else { return nil }
            let key = scanner.skipString()
            scanner.skipWhitespace()
            guard scanner.take(UInt8(ascii: ":")) else { return nil }
            scanner.skipWhitespace()
            let value = scanner.skipValue()
            if memberName(json[key]) == name { return json[value] }
            scanner.skipWhitespace()
            guard scanner.take(UInt8(ascii: ",")) else { return nil }
        }
    }

    /// A member name's text from its quoted JSON form (escapes decoded only when there are any).
    private static func memberName(_ quoted: ArraySlice<UInt8>) -> String? {
        let inner = quoted.dropFirst().dropLast()
        if !inner.contains(UInt8(ascii: "\\")) { return String(decoding: inner, as: UTF8.self) }
        return try? JSONDecoder().decode(String.self, from: Data(quoted))
    }

    private static func isExtensionNameByte(_ byte: UInt8) -> Bool {
        (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"))
            || byte == UInt8(ascii: "-")
    }

    private static func isJSONWhitespace(_ byte: UInt8) -> Bool {
        byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D
    }

    private static func asciiLowercased(_ byte: UInt8) -> UInt8 {
        byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") ? byte | 0x20 : byte
    }

    /// Walks valid JSON by bytes, returning where each string or value lies.
    private struct JSONScanner {
        let bytes: [UInt8]
        var index = 0

        var peek: UInt8? { index < bytes.count ? bytes[index] : nil }

        mutating func skipWhitespace() {
            while let byte = peek, isJSONWhitespace(byte) { index += 1 }
        }

        mutating func take(_ byte: UInt8) -> Bool {
            guard peek == byte else { return false }
            index += 1
            return true
        }

        /// From an opening quote to just past the closing one.
        mutating func skipString() -> Range<Int> {
            let start = index
            index += 1
            while let byte = peek, byte != UInt8(ascii: "\"") {
                index += byte == UInt8(ascii: "\\") ? 2 : 1
            }
            index = min(index + 1, bytes.count)
            return start..<index
        }

        /// One value of any kind: a string, an object or array (brackets inside strings ignored),
        /// or a number or literal (up to the next delimiter).
        mutating func skipValue() -> Range<Int> {
            let start = index
            switch peek {
            case UInt8(ascii: "\""):
                _ = skipString()
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                var depth = 0
                while let byte = peek {
                    if byte == UInt8(ascii: "\"") {
                        _ = skipString()
                        continue
                    }
                    index += 1
                    if byte == UInt8(ascii: "{") || byte == UInt8(ascii: "[") {
                        depth += 1
                    } else if byte == UInt8(ascii: "}") || byte == UInt8(ascii: "]") {
                        depth -= 1
                        if depth == 0 { break }
                    }
                }
            default:
                while let byte = peek, byte != UInt8(ascii: ","), byte != UInt8(ascii: "}"), byte != UInt8(ascii: "]"),
                    !isJSONWhitespace(byte)
                {
                    index += 1
                }
            }
            return start..<index
        }
    }
}

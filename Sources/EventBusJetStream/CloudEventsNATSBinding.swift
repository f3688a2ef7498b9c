public import EventBus
public import NATS

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// How an `Event` travels as a NATS message, following the CloudEvents NATS protocol binding
/// (binary content mode): the payload is the event's data, every attribute is a header.
/// Events in the binding's structured content mode (the whole event as a JSON object in the
/// payload, as other languages' CloudEvents SDKs may send them) are read too; see
/// ``event(subject:headers:payload:)``.
///
/// | attribute | header |
/// | --- | --- |
/// | `id` | `ce-id` (also `Nats-Msg-Id`, for JetStream's duplicate detection) |
/// | `source` | `ce-source` |
/// | `type` | `ce-type` |
/// | spec version | `ce-specversion` (`1.0`) |
/// | `time` | `ce-time` (RFC 3339) |
/// | `dataContentType` | `ce-datacontenttype`, and `content-type` (verbatim, see below) |
/// | extensions | `ce-<name>` (lower-case names) |
/// | `correlationID` / `causationID` | `ce-correlationid` / `ce-causationid` |
/// | `traceParent` / `traceState` | `traceparent` / `tracestate` (W3C trace context) |
///
/// The event's `subject` is the NATS subject (under the bus's subject prefix), so that any NATS
/// client can route on it; it also travels as `ce-subject` (an extension named `subject` is never
/// written: the name is reserved).
///
/// Header values follow section 3.1.3.2 of the binding ("NATS Header Values"): every `ce-*` header
/// (attributes, extensions, and the dead-letter extensions `ce-deadletter-*`) is percent-encoded
/// when written (space, `"`, `%`, and every byte outside printable ASCII become `%XY`) and decoded
/// when read; see ``percentEncoded(_:)`` and ``percentDecoded(_:)``. A received value that cannot
/// be decoded (`%zz`, a truncated `%4`, bytes that are not UTF-8 once decoded) is kept as received.
/// The other headers have formats of their own and travel verbatim, both ways:
/// - `content-type` is a media type (RFC 2046), whose parameters may be quoted strings with
///   spaces (`text/plain; charset="utf-8"`); any reader of a media type expects it as it is. The
///   binding maps `dataContentType` to `ce-datacontenttype` like every attribute and keeps
///   `content-type` to mark structured mode; the bus writes both (earlier versions of this
///   library, the CloudEvents Go SDK and plain NATS tools read `content-type`), except for a
///   CloudEvents media type (`application/cloudevents...`), which in `content-type` would tell
///   other readers that the payload is a structured event. On receipt `ce-datacontenttype` wins
///   over `content-type`.
/// - `traceparent` and `tracestate` are W3C trace context, read by tracing libraries that know
///   nothing of CloudEvents; their grammar is printable ASCII already.
/// - `Nats-Msg-Id` is never encoded: JetStream compares it byte for byte for duplicate detection,
///   and it must be the event id exactly as the application set it (it also stands in for a
///   missing `ce-id` when reading, taken verbatim).
public enum CloudEventsNATSBinding {
    /// The header names.
    public enum Header {
        /// `ce-id`.
        public static let id = "ce-id"
        /// `ce-source`.
        public static let source = "ce-source"
        /// `ce-type`.
        public static let type = "ce-type"
        /// `ce-specversion`.
        public static let specVersion = "ce-specversion"
        /// `ce-subject`.
        public static let subject = "ce-subject"
        /// `ce-time`.
        public static let time = "ce-time"
        /// `content-type`: the data's media type, verbatim (see the type's notes); in the
        /// binding's structured content mode, a CloudEvents media type.
        public static let contentType = "content-type"
        /// `ce-datacontenttype`: the binding's header for the data's media type.
        public static let dataContentType = "ce-datacontenttype"
        /// `ce-correlationid`.
        public static let correlationID = "ce-correlationid"
        /// `ce-causationid`.
        public static let causationID = "ce-causationid"
        /// `traceparent`.
        public static let traceParent = "traceparent"
        /// `tracestate`.
        public static let traceState = "tracestate"
        /// The prefix of extension attributes.
        public static let extensionPrefix = "ce-"
        /// `Nats-Msg-Id`.
        public static let messageID = "Nats-Msg-Id"
    }

    private static let reservedAttributes: Set<String> = [
        "id", "source", "type", "specversion", "subject", "time", "datacontenttype", "dataschema", "data",
        "correlationid", "causationid",
    ]

    /// The headers for an event: `ce-*` values percent-encoded, `content-type`, trace context and
    /// `Nats-Msg-Id` verbatim (see the type's notes). A value with nothing to encode is added as it is.
    public static func headers(for event: Event) -> NATSHeaders {
        var headers = NATSHeaders()
        // Room for every field below: the list grown one field at a time cost 4 allocations.
        headers.reserveCapacity(13 + event.extensions.count)
        headers.add(percentEncoded(event.id), for: Header.id)
        headers.add(percentEncoded(event.source), for: Header.source)
        headers.add(percentEncoded(event.type), for: Header.type)
        headers.add(Event.specVersion, for: Header.specVersion)
        headers.add(percentEncoded(event.subject), for: Header.subject)
        if let time = event.time {
            // RFC 3339 digits and `-:.TZ`: nothing to encode.
            headers.add(formatTime(time), for: Header.time)
        }
        if let contentType = event.dataContentType {
            headers.add(percentEncoded(contentType), for: Header.dataContentType)
            if !isStructuredMediaType(contentType) { headers.add(contentType, for: Header.contentType) }
        }
        if let correlationID = event.correlationID { headers.add(percentEncoded(correlationID), for: Header.correlationID) }
        if let causationID = event.causationID { headers.add(percentEncoded(causationID), for: Header.causationID) }
        if let traceParent = event.traceParent { headers.add(traceParent, for: Header.traceParent) }
        if let traceState = event.traceState { headers.add(traceState, for: Header.traceState) }
        for name in event.extensions.keys.sorted() where !reservedAttributes.contains(name) {
            headers.add(percentEncoded(event.extensions[name]!), for: Header.extensionPrefix + name)
        }
        headers.add(event.id, for: Header.messageID)
        return headers
    }

    /// The `subject` attribute a message's sender wrote in `ce-subject`, decoded; `nil` when absent.
    /// ``event(subject:headers:payload:)`` takes the subject from the NATS subject instead; this is for
    /// a message whose NATS subject says nothing (a reply to an inbox).
    public static func subjectAttribute(in headers: NATSHeaders) -> String? {
        headers[Header.subject].map(percentDecoded)
    }

    /// Reads an event from a NATS message. `subject` is the bus subject (the NATS subject without
    /// the bus prefix). Missing attributes get defaults: a message from a plain NATS client without
    /// CloudEvents headers still becomes an event (its id from `Nats-Msg-Id` when present).
    ///
    /// Attribute headers are matched by exact name first, then ignoring ASCII case (other clients
    /// may capitalise them). One pass over the header bytes, in place: a string is made only for
    /// a value the event keeps (`ce-specversion` and `ce-subject` are checked by name and skipped,
    /// `ce-time` is read straight into a `Date`). `ce-*` values are percent-decoded, the string made
    /// straight from the bytes when they hold no `%` or `"`; a value that does not decode is kept as
    /// received.
    ///
    /// A message without `ce-specversion` may be in the binding's structured content mode and is
    /// then read from its payload instead (see ``structuredEvent(subject:headers:payload:)``): one
    /// whose `content-type` is a CloudEvents media type (`application/cloudevents+json`), as the
    /// binding marks it, or one without `content-type` whose payload is a JSON object with a
    /// `specversion`, as CloudEvents SDKs in other languages send it. A payload that is not such an
    /// event is read as above, so nothing a sender put in it is lost.
    public static func event(subject: String, headers: NATSHeaders, payload: [UInt8]) -> Event {
        var found = FoundAttributes()
        var extensions: [String: String] = [:]
        headers.forEachFieldBytes { name, value in
            if let header = KnownHeader.match(name, exact: true) {
                found.record(header, value: value)
            } else if let header = KnownHeader.match(name, exact: false) {
                found.recordFolded(header, value: value)
            } else if hasExtensionPrefix(name) {
                // An extension: `ce-<name>` (any case), not one of the reserved attributes.
                // The prefix is dropped as bytes: dropped as characters, a combining mark after
                // `ce-` would take the name's first letter with it (and an empty name be kept).
                let attribute = String(
                    decoding: UnsafeRawBufferPointer(rebasing: name[Header.extensionPrefix.utf8.count...]), as: UTF8.self
                ).lowercased()
                if !reservedAttributes.contains(attribute) {
                    extensions[attribute] = percentDecodedText(value)
                }
            }
            return true
        }
        if found.mayBeStructured, let event = structuredEvent(subject: subject, headers: headers, payload: payload) {
            return event
        }
        // The strings move from `found` into the event: read as copies, each of the longer ones
        // cost a retain here and a release when `found` went away, on every event received.
        return Event(
            id: found.take(.id) ?? headers[Header.messageID] ?? Event.makeID(),
            subject: subject,
            type: found.take(.type) ?? "",
            source: found.take(.source) ?? "",
            time: found.time,
            dataContentType: found.take(.dataContentType) ?? found.take(.contentType),
            data: payload,
            extensions: extensions,
            correlationID: found.take(.correlationID),
            causationID: found.take(.causationID),
            traceParent: found.take(.traceParent),
            traceState: found.take(.traceState))
    }

    /// The attribute headers ``event(subject:headers:payload:)`` looks for.
    private enum KnownHeader: Int, CaseIterable {
        case id, source, type, specVersion, subject, time, contentType, correlationID, causationID, traceParent, traceState
        case messageID, dataContentType

        /// Whether the value is percent-encoded on the wire: every `ce-*` header. `content-type`,
        /// trace context and `Nats-Msg-Id` have formats of their own and are read verbatim.
        var isPercentEncoded: Bool {
            switch self {
            case .contentType, .traceParent, .traceState, .messageID: false
            default: true
            }
        }

        var name: StaticString {
            switch self {
            case .id: "ce-id"
            case .source: "ce-source"
            case .type: "ce-type"
            case .specVersion: "ce-specversion"
            case .subject: "ce-subject"
            case .time: "ce-time"
            case .contentType: "content-type"
            case .dataContentType: "ce-datacontenttype"
            case .correlationID: "ce-correlationid"
            case .causationID: "ce-causationid"
            case .traceParent: "traceparent"
            case .traceState: "tracestate"
            case .messageID: "Nats-Msg-Id"
            }
        }

        /// The header `bytes` names, exactly or ignoring ASCII case. `Nats-Msg-Id` only matches
        /// exactly (as JetStream reads it). Candidates are chosen by length, so a name is compared
        /// with at most two of them.
        static func match(_ bytes: UnsafeRawBufferPointer, exact: Bool) -> KnownHeader? {
            switch bytes.count {
            case 5: return matching(.id, bytes, exact)
            case 7: return matching(.type, bytes, exact) ?? matching(.time, bytes, exact)
            case 9: return matching(.source, bytes, exact)
            case 10: return matching(.subject, bytes, exact) ?? matching(.traceState, bytes, exact)
            case 11: return matching(.traceParent, bytes, exact) ?? (exact ? matching(.messageID, bytes, true) : nil)
            case 12: return matching(.contentType, bytes, exact)
            case 14: return matching(.specVersion, bytes, exact) ?? matching(.causationID, bytes, exact)
            case 16: return matching(.correlationID, bytes, exact)
            case 18: return matching(.dataContentType, bytes, exact)
            default: return nil
            }
        }

        private static func matching(_ known: KnownHeader, _ bytes: UnsafeRawBufferPointer, _ exact: Bool) -> KnownHeader? {
            let name = known.name
            let candidate = UnsafeRawBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount)
            for index in 0..<bytes.count {
                let byte = bytes[index]
                if byte == candidate[index] { continue }
                if exact { return nil }
                let folded = byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") ? byte | 0x20 : byte
                if folded != candidate[index] { return nil }
            }
            return known
        }
    }

    /// The first value of each attribute header by exact name, and by name ignoring case; a
    /// string is made only for the first value of an attribute the event keeps.
    private struct FoundAttributes {
        var id: String?
        var source: String?
        var type: String?
        var contentType: String?
        var dataContentType: String?
        var correlationID: String?
        var causationID: String?
        var traceParent: String?
        var traceState: String?
        /// The first exact `ce-time`, parsed (`nil` inside when it is not a valid time).
        var exactTime: Date??
        /// Made only when a header matched ignoring case (other clients' capitalisation): the
        /// bus's own messages never need it.
        var folded: [String?]?
        /// Whether a `ce-specversion` header (any case) was there: without one, a payload may
        /// hold a structured-mode event.
        var sawSpecVersion = false
        /// Whether a `content-type` header (any case) was there, and whether the first one named a
        /// CloudEvents media type (structured mode).
        var sawContentType = false
        var contentTypeMarksStructured = false

        /// Whether the payload may hold a structured-mode event: never with a `ce-specversion`
        /// (binary mode; earlier versions of this library wrote any media type to `content-type`,
        /// a CloudEvents one included); otherwise when `content-type` says so, or when there is none.
        var mayBeStructured: Bool { !sawSpecVersion && (!sawContentType || contentTypeMarksStructured) }

        /// Notes the first `content-type`; its string is needed only while no `ce-datacontenttype`
        /// was read (the bus writes that first, so its own events skip the second string).
        private mutating func noteContentType(_ value: UnsafeRawBufferPointer) -> Bool {
            if !sawContentType {
                sawContentType = true
                contentTypeMarksStructured = CloudEventsNATSBinding.isStructuredMediaType(value)
            }
            return dataContentType == nil && (folded?[KnownHeader.dataContentType.rawValue] ?? nil) == nil
        }

        var time: Date? { exactTime ?? nil }

        mutating func record(_ header: KnownHeader, value: UnsafeRawBufferPointer) {
            func keep(_ slot: inout String?) {
                if slot == nil { slot = CloudEventsNATSBinding.text(of: header, value) }
            }
            switch header {
            case .id: keep(&id)
            case .source: keep(&source)
            case .type: keep(&type)
            case .contentType: if noteContentType(value) { keep(&contentType) }
            case .dataContentType: keep(&dataContentType)
            case .correlationID: keep(&correlationID)
            case .causationID: keep(&causationID)
            case .traceParent: keep(&traceParent)
            case .traceState: keep(&traceState)
            // Only a fallback for a missing `ce-id`: looked up after the pass if needed (headers
            // sent through cnats's map come in any order, so it may precede `ce-id`).
            case .messageID: break
            case .time:
                if exactTime == nil {
                    // Only a sender that needlessly encoded (`%3A`) makes the decoding step run.
                    exactTime = CloudEventsNATSBinding.needsPercentDecoding(value)
                        ? .some(CloudEventsNATSBinding.parseTime(CloudEventsNATSBinding.percentDecodedText(value)))
                        : .some(CloudEventsNATSBinding.parseTime(value))
                }
            case .specVersion: sawSpecVersion = true
            case .subject: break
            }
        }

        /// `ce-time`, `ce-specversion` and `ce-subject` are read by their exact names only.
        mutating func recordFolded(_ header: KnownHeader, value: UnsafeRawBufferPointer) {
            switch header {
            case .specVersion:
                sawSpecVersion = true
                return
            case .time, .subject, .messageID: return
            case .contentType: if !noteContentType(value) { return }
            default: break
            }
            if folded == nil { folded = [String?](repeating: nil, count: KnownHeader.allCases.count) }
            if folded![header.rawValue] == nil { folded![header.rawValue] = CloudEventsNATSBinding.text(of: header, value) }
        }

        /// The value found for `header`, moved out (a second take gives nil).
        mutating func take(_ header: KnownHeader) -> String? {
            let exact: String? =
                switch header {
                case .id: id.take()
                case .source: source.take()
                case .type: type.take()
                case .contentType: contentType.take()
                case .dataContentType: dataContentType.take()
                case .correlationID: correlationID.take()
                case .causationID: causationID.take()
                case .traceParent: traceParent.take()
                case .traceState: traceState.take()
                case .time, .specVersion, .subject, .messageID: nil
                }
            if let exact { return exact }
            guard folded != nil else { return nil }
            return folded![header.rawValue].take()
        }
    }

    /// A known header's value as the event keeps it: decoded when the header is percent-encoded.
    private static func text(of header: KnownHeader, _ value: UnsafeRawBufferPointer) -> String {
        header.isPercentEncoded ? percentDecodedText(value) : String(decoding: value, as: UTF8.self)
    }

    private static func hasExtensionPrefix(_ bytes: UnsafeRawBufferPointer) -> Bool {
        bytes.count > 3 && bytes[0] | 0x20 == UInt8(ascii: "c") && bytes[1] | 0x20 == UInt8(ascii: "e")
            && bytes[2] == UInt8(ascii: "-")
    }

    /// RFC 3339 in UTC with nanoseconds, so that a `Date` survives the round trip exactly (its
    /// resolution today is about 0.2 µs). Formatted by hand for years 1583-9999 (Foundation's
    /// formatter costs microseconds per event); the same text as
    /// ``formatTimeWithFoundation(_:)``, which handles the rest.
    static func formatTime(_ date: Date) -> String {
        var seconds = date.timeIntervalSince1970.rounded(.down)
        var nanoseconds = Int(((date.timeIntervalSince1970 - seconds) * 1_000_000_000).rounded())
        if nanoseconds >= 1_000_000_000 {
            seconds += 1
            nanoseconds -= 1_000_000_000
        }
        guard seconds.isFinite, abs(seconds) < 9e15 else { return formatTimeWithFoundation(date) }
        let whole = Int64(seconds)
        let days = whole >= 0 ? whole / 86_400 : (whole - 86_399) / 86_400
        let secondOfDay = Int(whole - days * 86_400)
        let (year, month, day) = civil(fromDays: days)
        // Foundation counts dates before the Gregorian reform in the Julian calendar: leave
        // those (and years beyond four digits) to it.
        guard (1583...9999).contains(year) else { return formatTimeWithFoundation(date) }
        // Written straight into the string's storage: one allocation, where an array and a
        // string made from it took two.
        return String(unsafeUninitializedCapacity: timeTextLength) { text in
            var written = 0
            func append(_ value: Int, digits: Int) {
                var divisor = 1
                for _ in 1..<digits { divisor *= 10 }
                var rest = value
                while divisor > 0 {
                    text[written] = UInt8(ascii: "0") + UInt8(rest / divisor)
                    written += 1
                    rest %= divisor
                    divisor /= 10
                }
            }
            func append(_ character: Unicode.Scalar) {
                text[written] = UInt8(ascii: character)
                written += 1
            }
            append(year, digits: 4)
            append("-")
            append(month, digits: 2)
            append("-")
            append(day, digits: 2)
            append("T")
            append(secondOfDay / 3600, digits: 2)
            append(":")
            append(secondOfDay / 60 % 60, digits: 2)
            append(":")
            append(secondOfDay % 60, digits: 2)
            append(".")
            append(nanoseconds, digits: 9)
            append("Z")
            return written
        }
    }

    /// `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`, what ``formatTime(_:)`` writes for years 1583-9999.
    private static let timeTextLength = 30

    /// ``formatTime(_:)`` with Foundation's ISO 8601 formatter.
    static func formatTimeWithFoundation(_ date: Date) -> String {
        var seconds = date.timeIntervalSince1970.rounded(.down)
        var nanoseconds = Int(((date.timeIntervalSince1970 - seconds) * 1_000_000_000).rounded())
        if nanoseconds >= 1_000_000_000 {
            seconds += 1
            nanoseconds -= 1_000_000_000
        }
        let whole = Date(timeIntervalSince1970: seconds).formatted(Date.ISO8601FormatStyle())
        let digits = String(nanoseconds)
        let fraction = String(repeating: "0", count: 9 - digits.count) + digits
        return String(whole.dropLast()) + "." + fraction + "Z"
    }

    /// Parses RFC 3339 with any number of fractional digits and any offset. The common form
    /// (`YYYY-MM-DDTHH:MM:SS`, years from 1583 on, up to 9 fractional digits, `Z` or `±HH:MM`) is parsed by hand
    /// to the same value ``parseTimeWithFoundation(_:)`` gives; anything else goes to it.
    static func parseTime(_ text: String) -> Date? {
        var text = text
        return text.withUTF8 { parseTime(UnsafeRawBufferPointer($0)) }
    }

    /// ``parseTime(_:)`` on the text's UTF-8 bytes (a header value read in place).
    static func parseTime(_ text: UnsafeRawBufferPointer) -> Date? {
        let bytes = text.assumingMemoryBound(to: UInt8.self)
        let fast = { () -> Date? in
            func number(_ start: Int, _ count: Int) -> Int? {
                guard start + count <= bytes.count else { return nil }
                var value = 0
                for index in start..<(start + count) {
                    let digit = bytes[index] &- UInt8(ascii: "0")
                    guard digit < 10 else { return nil }
                    value = value * 10 + Int(digit)
                }
                return value
            }
            guard bytes.count >= 20, bytes[4] == UInt8(ascii: "-"), bytes[7] == UInt8(ascii: "-"),
                bytes[10] == UInt8(ascii: "T"), bytes[13] == UInt8(ascii: ":"), bytes[16] == UInt8(ascii: ":"),
                let year = number(0, 4), let month = number(5, 2), let day = number(8, 2),
                let hour = number(11, 2), let minute = number(14, 2), let second = number(17, 2),
                year >= 1583, (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second < 60
            else { return nil }
            var index = 19
            var fraction = 0.0
            if bytes[index] == UInt8(ascii: ".") {
                var digits = 0
                var value = 0
                index += 1
                while index < bytes.count, bytes[index] &- UInt8(ascii: "0") < 10 {
                    // Only counted past nine digits (Foundation reads those): accumulating them
                    // all overflowed, and a `ce-time` with 19 fractional digits crashed the reader.
                    if digits < 9 { value = value * 10 + Int(bytes[index] &- UInt8(ascii: "0")) }
                    digits += 1
                    index += 1
                }
                guard (1...9).contains(digits) else { return nil }
                var scale = 1.0
                for _ in 0..<digits { scale *= 10 }
                fraction = Double(value) / scale
            }
            guard index < bytes.count else { return nil }
            var offset = 0
            if bytes[index] == UInt8(ascii: "Z") {
                index += 1
            } else if bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") {
                guard index + 6 == bytes.count, bytes[index + 3] == UInt8(ascii: ":"),
                    let hours = number(index + 1, 2), let minutes = number(index + 4, 2), hours < 24, minutes < 60
                else { return nil }
                offset = (hours * 60 + minutes) * 60 * (bytes[index] == UInt8(ascii: "-") ? -1 : 1)
                index += 6
            }
            guard index == bytes.count, day <= daysIn(month: month, year: year) else { return nil }
            let days = Self.days(fromCivil: year, month, day)
            let whole = days * 86_400 + Int64(hour * 3600 + minute * 60 + second - offset)
            return Date(timeIntervalSince1970: Double(whole) + fraction)
        }()
        return fast ?? parseTimeWithFoundation(String(decoding: bytes, as: UTF8.self))
    }

    /// ``parseTime(_:)`` with Foundation's ISO 8601 parser.
    static func parseTimeWithFoundation(_ text: String) -> Date? {
        guard let dot = text.firstIndex(of: ".") else { return try? Date.ISO8601FormatStyle().parse(text) }
        let afterDot = text[text.index(after: dot)...]
        let digits = afterDot.prefix { $0.isASCII && $0.isNumber }
        guard !digits.isEmpty, let fraction = Double("0." + digits) else { return nil }
        let zone = afterDot.dropFirst(digits.count)
        guard let whole = try? Date.ISO8601FormatStyle().parse(String(text[..<dot]) + zone) else { return nil }
        return Date(timeIntervalSince1970: whole.timeIntervalSince1970 + fraction)
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
    static func days(fromCivil year: Int, _ month: Int, _ day: Int) -> Int64 {
        let y = Int64(month <= 2 ? year - 1 : year)
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let m = Int64(month)
        let dayOfYear = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + Int64(day) - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    /// The proleptic Gregorian date of a day count since 1970-01-01.
    static func civil(fromDays days: Int64) -> (year: Int, month: Int, day: Int) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let mp = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        return (Int(year), Int(month), Int(day))
    }

    private static func daysIn(month: Int, year: Int) -> Int {
        switch month {
        case 2: (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }
}

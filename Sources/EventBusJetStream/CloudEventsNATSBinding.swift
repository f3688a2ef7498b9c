public import EventBus
public import NATS

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// How an ``Event`` travels as a NATS message, following the CloudEvents NATS protocol binding
/// (binary content mode): the payload is the event's data, every attribute is a header.
///
/// | attribute | header |
/// | --- | --- |
/// | `id` | `ce-id` (also `Nats-Msg-Id`, for JetStream's duplicate detection) |
/// | `source` | `ce-source` |
/// | `type` | `ce-type` |
/// | spec version | `ce-specversion` (`1.0`) |
/// | `time` | `ce-time` (RFC 3339) |
/// | `dataContentType` | `content-type` |
/// | extensions | `ce-<name>` (lower-case names) |
/// | `correlationID` / `causationID` | `ce-correlationid` / `ce-causationid` |
/// | `traceParent` / `traceState` | `traceparent` / `tracestate` (W3C trace context) |
///
/// The event's `subject` is the NATS subject (under the bus's subject prefix), so that any NATS
/// client can route on it; it also travels as `ce-subject` unless the event set a CloudEvents
/// `subject` extension of its own.
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
        /// `content-type`.
        public static let contentType = "content-type"
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

    /// The headers for an event.
    public static func headers(for event: Event) -> NATSHeaders {
        var headers = NATSHeaders()
        headers.add(event.id, for: Header.id)
        headers.add(event.source, for: Header.source)
        headers.add(event.type, for: Header.type)
        headers.add(Event.specVersion, for: Header.specVersion)
        headers.add(event.subject, for: Header.subject)
        if let time = event.time {
            headers.add(formatTime(time), for: Header.time)
        }
        if let contentType = event.dataContentType { headers.add(contentType, for: Header.contentType) }
        if let correlationID = event.correlationID { headers.add(correlationID, for: Header.correlationID) }
        if let causationID = event.causationID { headers.add(causationID, for: Header.causationID) }
        if let traceParent = event.traceParent { headers.add(traceParent, for: Header.traceParent) }
        if let traceState = event.traceState { headers.add(traceState, for: Header.traceState) }
        for name in event.extensions.keys.sorted() where !reservedAttributes.contains(name) {
            headers.add(event.extensions[name]!, for: Header.extensionPrefix + name)
        }
        headers.add(event.id, for: Header.messageID)
        return headers
    }

    /// Reads an event from a NATS message. `subject` is the bus subject (the NATS subject without
    /// the bus prefix). Missing attributes get defaults: a message from a plain NATS client without
    /// CloudEvents headers still becomes an event (its id from `Nats-Msg-Id` when present).
    ///
    /// Attribute headers are matched by exact name first, then ignoring ASCII case (other clients
    /// may capitalise them), in one pass over the headers that allocates only for extensions.
    public static func event(subject: String, headers: NATSHeaders, payload: [UInt8]) -> Event {
        var found = FoundAttributes()
        var extensions: [String: String] = [:]
        for (name, value) in headers {
            var name = name
            let known = name.withUTF8 { bytes -> (KnownHeader, exact: Bool)? in
                if let known = KnownHeader.match(bytes, exact: true) { return (known, true) }
                return KnownHeader.match(bytes, exact: false).map { ($0, false) }
            }
            if let (header, exact) = known {
                found.record(header, value: value, exact: exact)
                continue
            }
            // An extension: `ce-<name>` (any case), not one of the reserved attributes.
            guard name.withUTF8({ hasExtensionPrefix($0) }) else { continue }
            let attribute = String(name.lowercased().dropFirst(Header.extensionPrefix.count))
            if reservedAttributes.contains(attribute) { continue }
            extensions[attribute] = value
        }
        return Event(
            id: found.value(.id) ?? found.messageID ?? Event.makeID(),
            subject: subject,
            type: found.value(.type) ?? "",
            source: found.value(.source) ?? "",
            time: found.exactTime.flatMap(parseTime),
            dataContentType: found.value(.contentType),
            data: payload,
            extensions: extensions,
            correlationID: found.value(.correlationID),
            causationID: found.value(.causationID),
            traceParent: found.value(.traceParent),
            traceState: found.value(.traceState))
    }

    /// The attribute headers ``event(subject:headers:payload:)`` looks for.
    private enum KnownHeader: Int, CaseIterable {
        case id, source, type, specVersion, subject, time, contentType, correlationID, causationID, traceParent, traceState
        case messageID

        var name: String {
            switch self {
            case .id: Header.id
            case .source: Header.source
            case .type: Header.type
            case .specVersion: Header.specVersion
            case .subject: Header.subject
            case .time: Header.time
            case .contentType: Header.contentType
            case .correlationID: Header.correlationID
            case .causationID: Header.causationID
            case .traceParent: Header.traceParent
            case .traceState: Header.traceState
            case .messageID: Header.messageID
            }
        }

        /// The names as bytes, once.
        static let names: [[UInt8]] = allCases.map { Array($0.name.utf8) }

        /// The header `bytes` names, exactly or ignoring ASCII case. `Nats-Msg-Id` only matches
        /// exactly (as JetStream reads it).
        static func match(_ bytes: UnsafeBufferPointer<UInt8>, exact: Bool) -> KnownHeader? {
            for known in allCases where names[known.rawValue].count == bytes.count {
                if !exact && known == .messageID { continue }
                let matches = names[known.rawValue].withUnsafeBufferPointer { candidate in
                    for index in 0..<bytes.count {
                        let byte = bytes[index]
                        if byte == candidate[index] { continue }
                        if exact { return false }
                        let folded = byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") ? byte | 0x20 : byte
                        if folded != candidate[index] { return false }
                    }
                    return true
                }
                if matches { return known }
            }
            return nil
        }
    }

    /// The first value of each attribute header by exact name, and by name ignoring case.
    private struct FoundAttributes {
        var exact = [String?](repeating: nil, count: KnownHeader.allCases.count)
        /// Made only when a header matched ignoring case (other clients' capitalisation): the
        /// bus's own messages never need it.
        var folded: [String?]?

        mutating func record(_ header: KnownHeader, value: String, exact isExact: Bool) {
            if isExact {
                if exact[header.rawValue] == nil { exact[header.rawValue] = value }
            } else {
                if folded == nil { folded = [String?](repeating: nil, count: KnownHeader.allCases.count) }
                if folded![header.rawValue] == nil { folded![header.rawValue] = value }
            }
        }

        func value(_ header: KnownHeader) -> String? { exact[header.rawValue] ?? folded?[header.rawValue] ?? nil }
        var messageID: String? { exact[KnownHeader.messageID.rawValue] }
        /// `ce-time` is read by its exact name only.
        var exactTime: String? { exact[KnownHeader.time.rawValue] }
    }

    private static func hasExtensionPrefix(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
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
        var text = [UInt8]()
        text.reserveCapacity(30)
        func append(_ value: Int, digits: Int) {
            var divisor = 1
            for _ in 1..<digits { divisor *= 10 }
            var rest = value
            while divisor > 0 {
                text.append(UInt8(ascii: "0") + UInt8(rest / divisor))
                rest %= divisor
                divisor /= 10
            }
        }
        append(year, digits: 4)
        text.append(UInt8(ascii: "-"))
        append(month, digits: 2)
        text.append(UInt8(ascii: "-"))
        append(day, digits: 2)
        text.append(UInt8(ascii: "T"))
        append(secondOfDay / 3600, digits: 2)
        text.append(UInt8(ascii: ":"))
        append(secondOfDay / 60 % 60, digits: 2)
        text.append(UInt8(ascii: ":"))
        append(secondOfDay % 60, digits: 2)
        text.append(UInt8(ascii: "."))
        append(nanoseconds, digits: 9)
        text.append(UInt8(ascii: "Z"))
        return String(decoding: text, as: UTF8.self)
    }

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
        let fast = text.withUTF8 { bytes -> Date? in
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
                    value = value * 10 + Int(bytes[index] &- UInt8(ascii: "0"))
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
        }
        return fast ?? parseTimeWithFoundation(text)
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

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
    public static func event(subject: String, headers: NATSHeaders, payload: [UInt8]) -> Event {
        let time = headers[Header.time].flatMap(parseTime)
        var extensions: [String: String] = [:]
        for (name, value) in headers {
            let lowered = name.lowercased()
            guard lowered.hasPrefix(Header.extensionPrefix) else { continue }
            let attribute = String(lowered.dropFirst(Header.extensionPrefix.count))
            if reservedAttributes.contains(attribute) { continue }
            extensions[attribute] = value
        }
        return Event(
            id: header(headers, Header.id) ?? headers[Header.messageID] ?? Event.makeID(),
            subject: subject,
            type: header(headers, Header.type) ?? "",
            source: header(headers, Header.source) ?? "",
            time: time,
            dataContentType: header(headers, Header.contentType) ?? header(headers, "Content-Type"),
            data: payload,
            extensions: extensions,
            correlationID: header(headers, Header.correlationID),
            causationID: header(headers, Header.causationID),
            traceParent: header(headers, Header.traceParent),
            traceState: header(headers, Header.traceState))
    }

    /// A header by its name, also accepting other capitalisations (NATS header names are
    /// case-sensitive, but other clients may capitalise them).
    private static func header(_ headers: NATSHeaders, _ name: String) -> String? {
        if let value = headers[name] { return value }
        return headers.first { $0.name.lowercased() == name }?.value
    }

    /// RFC 3339 in UTC with nanoseconds, so that a `Date` survives the round trip exactly (its
    /// resolution today is about 0.2 µs).
    static func formatTime(_ date: Date) -> String {
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

    /// Parses RFC 3339 with any number of fractional digits and any offset.
    static func parseTime(_ text: String) -> Date? {
        guard let dot = text.firstIndex(of: ".") else { return try? Date.ISO8601FormatStyle().parse(text) }
        let afterDot = text[text.index(after: dot)...]
        let digits = afterDot.prefix { $0.isASCII && $0.isNumber }
        guard !digits.isEmpty, let fraction = Double("0." + digits) else { return nil }
        let zone = afterDot.dropFirst(digits.count)
        guard let whole = try? Date.ISO8601FormatStyle().parse(String(text[..<dot]) + zone) else { return nil }
        return Date(timeIntervalSince1970: whole.timeIntervalSince1970 + fraction)
    }
}

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Synchronization

/// A domain event: CloudEvents attributes, a payload, extension attributes and trace context.
///
/// On NATS the attributes travel as headers following the CloudEvents NATS protocol binding (`ce-id`,
/// `ce-source`, `ce-type`, `ce-subject`, `ce-time`, `ce-specversion`, `content-type`, `ce-<extension>`,
/// `traceparent`, `tracestate`), so every field here maps to one header.
///
/// `Event` is a value type whose fields live in one shared, copy-on-write box: handing an event from the
/// log to a delivery costs one reference count, not one per field.
public struct Event: Sendable, Equatable, CustomStringConvertible {
    /// The CloudEvents `specversion` this library writes.
    public static let specVersion = "1.0"

    private var storage: Storage

    /// Creates an event. `id` defaults to a new UUID; `time` defaults to now.
    public init(
        id: String = Event.makeID(),
        subject: String,
        type: String,
        source: String,
        time: Date? = Date(),
        dataContentType: String? = nil,
        data: [UInt8] = [],
        extensions: [String: String] = [:],
        correlationID: String? = nil,
        causationID: String? = nil,
        traceParent: String? = nil,
        traceState: String? = nil
    ) {
        storage = Storage(
            id: id, source: source, type: type, subject: subject, time: time, dataContentType: dataContentType,
            data: data, extensions: extensions, correlationID: correlationID, causationID: causationID,
            traceParent: traceParent, traceState: traceState
        )
    }

    /// A new unique, unpredictable event id: a random (version 4) UUID in its usual upper-case
    /// text form.
    ///
    /// The id keys duplicate suppression, so it must not be guessable: someone who could compute
    /// the next ids could publish them first and have the real events dropped as duplicates. Each
    /// id is 122 bits of the operating system's secure random generator, read 4 KiB at a time
    /// (see `EventIDGenerator`): `UUID().uuidString` costs a `getrandom` system call and a
    /// `snprintf` per id, which a bus publishing hundreds of thousands of events a second would pay
    /// on every event.
    public static func makeID() -> String {
        EventIDGenerator.shared.withLock { $0.next() }
    }

    /// CloudEvents `id`: with `source`, identifies the event; also the key for duplicate suppression.
    public var id: String {
        get { storage.id }
        set { mutableStorage().id = newValue }
    }

    /// CloudEvents `source`: the context that produced the event, a URI reference such as `/billing`.
    public var source: String {
        get { storage.source }
        set { mutableStorage().source = newValue }
    }

    /// CloudEvents `type`, e.g. `com.example.order.created`.
    public var type: String {
        get { storage.type }
        set { mutableStorage().type = newValue }
    }

    /// The bus subject in NATS token syntax (`order.created`); travels as CloudEvents `subject`.
    public var subject: String {
        get { storage.subject }
        set { mutableStorage().subject = newValue }
    }

    /// CloudEvents `time`: when the occurrence happened.
    public var time: Date? {
        get { storage.time }
        set { mutableStorage().time = newValue }
    }

    /// CloudEvents `datacontenttype`, e.g. `application/json`.
    public var dataContentType: String? {
        get { storage.dataContentType }
        set { mutableStorage().dataContentType = newValue }
    }

    /// The payload bytes.
    public var data: [UInt8] {
        get { storage.data }
        set { mutableStorage().data = newValue }
    }

    /// CloudEvents extension attributes; names are lower-case letters, digits and `-`.
    public var extensions: [String: String] {
        get { storage.extensions }
        set { mutableStorage().extensions = newValue }
    }

    /// The id shared by every event of one business transaction (extension `correlationid`).
    public var correlationID: String? {
        get { storage.correlationID }
        set { mutableStorage().correlationID = newValue }
    }

    /// The id of the event that caused this one (extension `causationid`).
    public var causationID: String? {
        get { storage.causationID }
        set { mutableStorage().causationID = newValue }
    }

    /// W3C trace context `traceparent`.
    public var traceParent: String? {
        get { storage.traceParent }
        set { mutableStorage().traceParent = newValue }
    }

    /// W3C trace context `tracestate`.
    public var traceState: String? {
        get { storage.traceState }
        set { mutableStorage().traceState = newValue }
    }

    /// Two events are equal when every attribute, extension and payload byte is equal.
    public static func == (lhs: Event, rhs: Event) -> Bool {
        lhs.storage === rhs.storage || lhs.storage.hasSameContent(as: rhs.storage)
    }

    /// A one-line summary: type, subject, id and payload size (never the payload itself).
    public var description: String {
        "Event(type: \(type), subject: \(subject), id: \(id), \(data.count) bytes)"
    }

    private mutating func mutableStorage() -> Storage {
        if !isKnownUniquelyReferenced(&storage) {
            storage = storage.copy()
        } else {
            // Every caller is a setter about to change an attribute: what was checked no longer holds.
            storage.isValidForPublish.store(false, ordering: .relaxed)
        }
        return storage
    }

    /// The payload's size, without copying the payload array out of the box.
    var dataCount: Int { storage.data.count }

    /// Whether ``validateForPublish()`` already passed for these exact attributes.
    var isKnownValidForPublish: Bool {
        storage.isValidForPublish.load(ordering: .relaxed)
    }

    /// The rules of ``validateForPublish()`` for an event without extensions, as one yes/no answer; an event
    /// with extensions answers `false` and takes the detailed path. Evaluated inside the box, with the byte
    /// checks inlined: attribute by attribute through the getters, each string was retained and released
    /// around an opaque call (~half of the ~100 ns this took).
    var passesPublishChecks: Bool {
        storage.passesPublishChecks()
    }

    /// Records that ``validateForPublish()`` passed. Relaxed is enough: a shared box is never written
    /// (``mutableStorage()`` copies it first), so whoever sees the flag sees the attributes it was set for.
    func markValidForPublish() {
        storage.isValidForPublish.store(true, ordering: .relaxed)
    }
}

extension Event {
    /// The copy-on-write box behind ``Event``.
    ///
    /// `@unchecked Sendable` is sound because a box is only mutated through `mutableStorage()`, which first
    /// makes it unique; a box reachable from more than one value is never written.
    fileprivate final class Storage: @unchecked Sendable {
        var id: String
        var source: String
        var type: String
        var subject: String
        var time: Date?
        var dataContentType: String?
        var data: [UInt8]
        var extensions: [String: String]
        var correlationID: String?
        var causationID: String?
        var traceParent: String?
        var traceState: String?
        /// Set once ``Event/validateForPublish()`` passed; cleared by every setter (a copy starts unset).
        let isValidForPublish = Atomic<Bool>(false)

        init(
            id: String, source: String, type: String, subject: String, time: Date?, dataContentType: String?,
            data: [UInt8], extensions: [String: String], correlationID: String?, causationID: String?,
            traceParent: String?, traceState: String?
        ) {
            self.id = id
            self.source = source
            self.type = type
            self.subject = subject
            self.time = time
            self.dataContentType = dataContentType
            self.data = data
            self.extensions = extensions
            self.correlationID = correlationID
            self.causationID = causationID
            self.traceParent = traceParent
            self.traceState = traceState
        }

        func copy() -> Storage {
            Storage(
                id: id, source: source, type: type, subject: subject, time: time,
                dataContentType: dataContentType, data: data, extensions: extensions, correlationID: correlationID,
                causationID: causationID, traceParent: traceParent, traceState: traceState
            )
        }

        @inline(__always)
        func passesPublishChecks() -> Bool {
            !id.isEmpty && !source.isEmpty && !type.isEmpty && extensions.isEmpty
                && ByteScan.isHeaderSafe(id) && ByteScan.isHeaderSafe(source) && ByteScan.isHeaderSafe(type)
                && ByteScan.isLiteralSubject(subject) && ByteScan.isHeaderSafe(dataContentType)
                && ByteScan.isHeaderSafe(correlationID) && ByteScan.isHeaderSafe(causationID)
                && ByteScan.isHeaderSafe(traceParent) && ByteScan.isHeaderSafe(traceState)
        }

        func hasSameContent(as other: Storage) -> Bool {
            id == other.id && source == other.source && type == other.type && subject == other.subject
                && time == other.time && dataContentType == other.dataContentType && data == other.data
                && extensions == other.extensions && correlationID == other.correlationID
                && causationID == other.causationID && traceParent == other.traceParent
                && traceState == other.traceState
        }
    }
}

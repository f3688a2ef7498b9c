import CNATS

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads received `natsMsg` values into Swift values. The caller keeps ownership of the message.
enum NativeMessage {
    /// Copies everything out of a message. Headers are read here, once, on the thread that owns
    /// the message, because cnats headers are not thread-safe.
    static func copy(
        _ message: OpaquePointer,
        payloads: inout PayloadSlabWriter,
        subjects: inout SubjectCache
    ) -> NATSMessage {
        let headers = headers(of: message, payloads: &payloads)
        let subject = subjects.string(for: natsMsg_GetSubject(message))
        let reply = natsMsg_GetReply(message).flatMap { $0.pointee == 0 ? nil : String(cString: $0) }
        return NATSMessage(subject: subject, replyTo: reply, headers: headers, payload: payload(of: message, payloads: &payloads))
    }

    /// Copies a message for a JetStream consumer: like ``copy(_:payloads:subjects:)``, but the
    /// reply subject is written into the payload slabs as the message's acknowledgement record
    /// instead of becoming a `String` (an ack subject is too long for a small string, so that
    /// would be an allocation per message).
    static func copyDelivery(
        _ message: OpaquePointer,
        payloads: inout PayloadSlabWriter,
        subjects: inout SubjectCache
    ) -> ConsumerDelivery {
        let headers = headers(of: message, payloads: &payloads)
        let subject = subjects.string(for: natsMsg_GetSubject(message))
        var reply: MessageAcknowledgement?
        if let replyC = natsMsg_GetReply(message), replyC.pointee != 0 {
            reply = MessageAcknowledgement(subject: UnsafeRawBufferPointer(start: replyC, count: strlen(replyC)), slabs: &payloads)
        }
        let copy = NATSMessage(subject: subject, replyTo: nil, headers: headers, payload: payload(of: message, payloads: &payloads))
        return ConsumerDelivery(message: copy, reply: reply)
    }

    /// Copies a message whose subject changes every time (a reply on a request inbox): the
    /// payload goes into the shared slabs, the subject gets a string of its own.
    static func copy(_ message: OpaquePointer, payloads: inout PayloadSlabWriter) -> NATSMessage {
        let subject = natsMsg_GetSubject(message).map { String(cString: $0) } ?? ""
        let reply = natsMsg_GetReply(message).flatMap { $0.pointee == 0 ? nil : String(cString: $0) }
        let payload = payload(of: message, payloads: &payloads)
        return NATSMessage(
            subject: subject, replyTo: reply, headers: headers(of: message, payloads: &payloads), payload: payload)
    }

    /// The message's payload, copied into the slabs (no copy and no slab space when empty).
    private static func payload(of message: OpaquePointer, payloads: inout PayloadSlabWriter) -> NATSPayload {
        let length = Int(natsMsg_GetDataLength(message))
        guard length > 0, let data = natsMsg_GetData(message) else { return NATSPayload() }
        return payloads.copy(UnsafeRawBufferPointer(start: data, count: length))
    }

    /// A one-off copy, for replies to requests: the payload gets an allocation of its own.
    static func copy(_ message: OpaquePointer) -> NATSMessage {
        let subject = natsMsg_GetSubject(message).map { String(cString: $0) } ?? ""
        let reply = natsMsg_GetReply(message).flatMap { $0.pointee == 0 ? nil : String(cString: $0) }
        let length = Int(natsMsg_GetDataLength(message))
        let payload: NATSPayload
        if length > 0, let data = natsMsg_GetData(message) {
            payload = NATSPayload(copying: UnsafeRawBufferPointer(start: data, count: length))
        } else {
            payload = NATSPayload()
        }
        return NATSMessage(subject: subject, replyTo: reply, headers: headers(of: message), payload: payload)
    }

    /// All header fields in order; empty when the message has none. Read from the raw block when
    /// possible (see `NativeInternals`), through cnats's header map otherwise.
    static func headers(of message: OpaquePointer) -> NATSHeaders {
        switch NativeInternals.receivedHeaderBlock(of: message) {
        case .none:
            return NATSHeaders()
        case .raw(let block):
            if let headers = NATSHeaders(wireBlock: block) { return headers }
            return headersThroughCNATS(of: message)
        case .unknown:
            return headersThroughCNATS(of: message)
        }
    }

    /// The headers of a message whose payload goes into the slabs: a block of the common shape
    /// (see `SimpleBlock`) is copied there too and read when (and if) someone looks; any other
    /// block is parsed now, as ``headers(of:)`` does.
    static func headers(of message: OpaquePointer, payloads: inout PayloadSlabWriter) -> NATSHeaders {
        if case .raw(let block) = NativeInternals.receivedHeaderBlock(of: message), SimpleBlock.isSimple(block) {
            return NATSHeaders(simpleBlock: payloads.copy(block))
        }
        return headers(of: message)
    }

    /// All header fields through cnats's public header API (which parses the block into a map).
    static func headersThroughCNATS(of message: OpaquePointer) -> NATSHeaders {
        var keys: UnsafeMutablePointer<UnsafePointer<CChar>?>?
        var keyCount: Int32 = 0
        guard natsMsgHeader_Keys(message, &keys, &keyCount) == NATS_OK, let keys else { return NATSHeaders() }
        // natsMsgHeader_Keys hands us the array (not the strings): we free it.
        defer { free(keys) }
        var headers = NATSHeaders()
        headers.parsed.reserveCapacity(Int(keyCount))
        for index in 0..<Int(keyCount) {
            guard let key = keys[index] else { continue }
            var values: UnsafeMutablePointer<UnsafePointer<CChar>?>?
            var valueCount: Int32 = 0
            guard natsMsgHeader_Values(message, key, &values, &valueCount) == NATS_OK, let values else { continue }
            // Same ownership as the keys: the array is ours, the strings stay cnats's.
            defer { free(values) }
            let name = String(cString: key)
            for valueIndex in 0..<Int(valueCount) {
                headers.add(values[valueIndex].map { String(cString: $0) } ?? "", for: name)
            }
        }
        return headers
    }

    /// Destroys a message that is ours: one this module created, or a received one whose content
    /// was copied out. Freed on this thread when possible (see `NativeInternals`).
    @inline(__always)
    static func destroy(_ message: OpaquePointer) {
        if !NativeInternals.free(message) { natsMsg_Destroy(message) }
    }

    /// Whether the message is the server's "no responders" status (503).
    static func isNoResponders(_ message: OpaquePointer) -> Bool {
        natsMsg_IsNoResponders(message)
    }

    /// Whether a copied message is the server's "no responders" status (503, no payload): the
    /// same test as cnats's `natsMsg_IsNoResponders`, without making cnats parse the headers.
    static func isNoResponders(_ message: NATSMessage) -> Bool {
        message.payload.isEmpty && message.headers["Status"] == "503"
    }

    /// Creates an outgoing message with headers; the caller destroys it. Strings reach cnats
    /// through `withCString` (no allocation for native Swift strings).
    static func makeOutgoing(
        subject: String,
        replyTo: String?,
        headers: NATSHeaders,
        payload: UnsafeRawBufferPointer
    ) throws(NATSError) -> OpaquePointer {
        guard let replyTo else { return try makeOutgoing(subject: subject, replyC: nil, headers: headers, payload: payload) }
        let result: Result<OpaquePointer, NATSError> = replyTo.withCString { reply in
            Result { () throws(NATSError) in try makeOutgoing(subject: subject, replyC: reply, headers: headers, payload: payload) }
        }
        return try result.get()
    }

    /// ``makeOutgoing(subject:replyTo:headers:payload:)`` with the reply subject as a C string.
    static func makeOutgoing(
        subject: String,
        replyC: UnsafePointer<CChar>?,
        headers: NATSHeaders,
        payload: UnsafeRawBufferPointer
    ) throws(NATSError) -> OpaquePointer {
        if NativeInternals.isAvailable {
            return try makeOutgoingWithBlock(subject: subject, replyC: replyC, headers: headers, payload: payload)!
        }
        var message: OpaquePointer?
        let data = payload.baseAddress?.assumingMemoryBound(to: CChar.self)
        let length = Int32(payload.count)
        let status = subject.withCString { natsMsg_Create(&message, $0, replyC, data, length) }
        try NativeStatus.check(status, "creating a message for '\(subject)'")
        for field in headers.fields {
            let added = field.name.withCString { name in
                field.value.withCString { natsMsgHeader_Add(message, name, $0) }
            }
            if added != NATS_OK {
                // The message never left our hands: destroy it before reporting.
                destroy(message!)
                throw NativeStatus.error(added, "adding header '\(field.name)'")
            }
        }
        return message!
    }

    /// Creates an outgoing message whose header block the module encoded itself (one allocation,
    /// cnats's message; no header map). `nil` when the internals are not available.
    static func makeOutgoingWithBlock(
        subject: String,
        replyC: UnsafePointer<CChar>?,
        headers: NATSHeaders,
        payload: UnsafeRawBufferPointer
    ) throws(NATSError) -> OpaquePointer? {
        let headerLength = headers.encodedSize
        let total = headerLength + payload.count
        let result: Result<OpaquePointer?, NATSError> = withUnsafeTemporaryAllocation(byteCount: max(total, 1), alignment: 8) {
            buffer in
            let written = headers.encode(into: buffer)
            assert(written == headerLength)
            if let source = payload.baseAddress, !payload.isEmpty {
                (buffer.baseAddress! + headerLength).copyMemory(from: source, byteCount: payload.count)
            }
            let bytes = UnsafeRawBufferPointer(rebasing: buffer[..<total])
            return subject.withCString { subject in
                Result { () throws(NATSError) in
                    try NativeInternals.makeMessage(
                        subject: subject, reply: replyC, headerBlockAndPayload: bytes, headerLength: headerLength)
                }
            }
        }
        return try result.get()
    }
}

/// Reuses the `String` of the last subject seen, so that a subscription on a literal subject does
/// not allocate a new string for every message. The comparison is a `memcmp` against a copy of
/// the last subject's bytes.
struct SubjectCache {
    private var last = ""
    private var lastBytes: [UInt8] = []

    mutating func string(for subject: UnsafePointer<CChar>?) -> String {
        guard let subject else { return "" }
        let length = strlen(subject)
        let matches = length == lastBytes.count
            && lastBytes.withUnsafeBytes { bytes in bytes.baseAddress.map { memcmp($0, subject, length) == 0 } ?? (length == 0) }
        if !matches {
            last = String(cString: subject)
            lastBytes = Array(UnsafeRawBufferPointer(start: subject, count: length))
        }
        return last
    }
}

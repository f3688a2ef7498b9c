import CNATS

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Three cnats functions that nats.h does not declare, and the layout of a received message, which
/// the module relies on to avoid cnats's per-message header maps, to write a request at once and
/// to free messages without a hand-off to cnats's garbage-collector thread.
///
/// The functions are exported by libnats 3.x (they are what cnats's own public calls use) and
/// have kept their signatures from 3.0 to 3.9:
///
/// - `natsMsg_create(msg, subject, subjectLength, reply, replyLength, buffer, bufferLength,
///   headerLength)` builds a message from a ready header block followed by the payload, as cnats's
///   reader does for every received message. cnats sends such a block as it is (`pub.c`,
///   `natsMsgHeader_encode`: a message whose headers were never "lifted" into a map).
/// - `natsConn_publish(connection, msg, reply, directFlush)` is what `natsConnection_PublishMsg`
///   calls with `directFlush` false and `natsConnection_Request*` with true. With true the bytes are
///   written from the calling thread at once instead of waiting up to a millisecond for the
///   flusher thread, and nothing blocks waiting for a reply.
/// - `natsMsg_free(msg)` is what cnats's garbage-collector thread calls for every message that
///   `natsMsg_Destroy` hands it (a lock, and a wake-up of that thread when it sleeps). The module
///   copies every received message out on the delivery thread and creates its outgoing messages
///   itself, so it frees them in place. (`natsMsg_Destroy` would skip a message cnats marked
///   "no destroy"; cnats marks only messages of its own `js_Subscribe` and fetch, which the
///   module does not use.)
///
/// They are looked up at run time (`dlsym`), not linked, and only for cnats 3.x: with another
/// version, or a build that hides them, `isAvailable` is false and the module uses public calls
/// only (header maps, and cnats's blocking request on the blocking executor), with the same
/// behaviour and the old costs. Tests cover both paths' wire format against cnats's own parser.
enum NativeInternals {
    typealias CreateMessage = @convention(c) (
        UnsafeMutablePointer<OpaquePointer?>?, UnsafePointer<CChar>?, Int32, UnsafePointer<CChar>?, Int32,
        UnsafePointer<CChar>?, Int32, Int32
    ) -> natsStatus
    typealias PublishMessage = @convention(c) (OpaquePointer?, OpaquePointer?, UnsafePointer<CChar>?, Bool) -> natsStatus
    typealias FreeMessage = @convention(c) (UnsafeMutableRawPointer?) -> Void

    private struct Functions: @unchecked Sendable {
        // @unchecked: C function pointers, immutable after lookup.
        let createMessage: CreateMessage
        let publishMessage: PublishMessage
        let freeMessage: FreeMessage
    }

    private static let functions: Functions? = {
        // Messages are freed through cnats's garbage collector, which nats_Open starts.
        let opened = NativeStatus.libraryOpened
        let version = nats_GetVersionNumber()
        guard opened, version >> 16 == 3, environmentAllows else { return nil }
        // RTLD_DEFAULT: the process's global scope, where libnats was loaded as a dependency.
        let scope = UnsafeMutableRawPointer(bitPattern: 0)
        guard let create = dlsym(scope, "natsMsg_create"), let publish = dlsym(scope, "natsConn_publish"),
            let free = dlsym(scope, "natsMsg_free")
        else { return nil }
        return Functions(
            createMessage: unsafeBitCast(create, to: CreateMessage.self),
            publishMessage: unsafeBitCast(publish, to: PublishMessage.self),
            freeMessage: unsafeBitCast(free, to: FreeMessage.self))
    }()

    /// `NATS_PUBLIC_API_ONLY=1` turns the internals off (to compare both paths, or as an escape
    /// hatch should a cnats build differ).
    private static var environmentAllows: Bool {
        guard let value = getenv("NATS_PUBLIC_API_ONLY") else { return true }
        return String(cString: value) != "1"
    }

    /// Whether the internals were found (cnats 3.x with the two functions exported).
    static var isAvailable: Bool { functions != nil }

    /// Creates an outgoing message from a ready header block and a payload; the caller destroys it.
    /// `nil` when the internals are not available.
    static func makeMessage(
        subject: UnsafePointer<CChar>,
        reply: UnsafePointer<CChar>?,
        headerBlockAndPayload: UnsafeRawBufferPointer,
        headerLength: Int
    ) throws(NATSError) -> OpaquePointer? {
        guard let functions else { return nil }
        var message: OpaquePointer?
        let replyLength = reply.map { Int32(strlen($0)) } ?? 0
        let status = functions.createMessage(
            &message, subject, Int32(strlen(subject)), replyLength > 0 ? reply : nil, replyLength,
            headerBlockAndPayload.baseAddress?.assumingMemoryBound(to: CChar.self),
            Int32(headerBlockAndPayload.count), Int32(headerLength))
        guard status == NATS_OK, let message else {
            throw NativeStatus.error(status, "creating a message for '\(String(cString: subject))'")
        }
        return message
    }

    /// Frees a message at once, on this thread. `false` when the internals are not available.
    @inline(__always)
    static func free(_ message: OpaquePointer) -> Bool {
        guard let functions else { return false }
        functions.freeMessage(UnsafeMutableRawPointer(message))
        return true
    }

    /// Publishes a message, written to the socket from this thread at once when `now` is true.
    /// Only for messages from ``makeMessage(subject:reply:headerBlockAndPayload:headerLength:)``.
    static func publish(_ message: OpaquePointer, on connection: OpaquePointer, now: Bool) -> natsStatus {
        functions!.publishMessage(connection, message, nil, now)
    }

    /// Where a received message's header block is.
    enum HeaderBlock {
        /// The message has no headers.
        case none
        /// The block as it came from the server.
        case raw(UnsafeRawBufferPointer)
        /// Not readable in place: ask cnats (internals off, or cnats already parsed the block).
        case unknown
    }

    /// The raw header block of a received message, found from public accessors: cnats's reader
    /// (`natsMsg_create`) lays out subject, NUL, reply, NUL, header block, NUL, payload in one
    /// allocation, and without headers the payload follows the subject or reply's NUL directly.
    /// A block cnats already parsed into its map has NULs written into it and is `.unknown`.
    static func receivedHeaderBlock(of message: OpaquePointer) -> HeaderBlock {
        guard functions != nil, let subject = natsMsg_GetSubject(message), let data = natsMsg_GetData(message) else {
            return .unknown
        }
        let start: UnsafePointer<CChar>
        if let reply = natsMsg_GetReply(message) {
            start = reply + strlen(reply) + 1
        } else {
            start = subject + strlen(subject) + 1
        }
        if data == start { return .none }
        // The block ends with CRLF CRLF and a NUL right before the payload.
        let length = data - start - 1
        guard length >= 12, length < 1 << 24 else { return .unknown }
        let block = UnsafeRawBufferPointer(start: start, count: length)
        guard data[-1] == 0, block[length - 4] == 0x0D, block[length - 3] == 0x0A, block[length - 2] == 0x0D,
            block[length - 1] == 0x0A, memchr(start, 0, length) == nil
        else { return .unknown }
        return .raw(block)
    }
}

import CNATS
import Logging

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Three cnats functions that nats.h does not declare, and the layout of a received message, which
/// the module relies on to avoid cnats's per-message header maps, to write a request at once, and
/// to free messages without a hand-off to cnats's garbage-collector thread.
///
/// The functions are exported by libnats 3.x (they are what cnats's own public calls use) and
/// have kept their signatures from 3.0 to 3.13 (see ``verifiedVersions``):
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
/// They are looked up at run time (`dlsym`), not linked, and only for a libnats release whose
/// sources were checked (``verifiedVersions``): with another version, with
/// `NATS_PUBLIC_API_ONLY=1`, or with a build that hides them, `isAvailable` is false and the
/// module uses public calls only (header maps, and requests, JetStream publishes, replies and pull
/// requests written by a flush from a dispatch thread, see `NativeConnection.flushSoon`), with the
/// same behaviour and the old costs. ``selection`` says which path is in use and why; every
/// connection logs it at connect. Tests cover both paths' wire format against
/// cnats's own parser, and the gate itself.
enum NativeInternals {
    typealias CreateMessage = @convention(c) (
        UnsafeMutablePointer<OpaquePointer?>?, UnsafePointer<CChar>?, Int32, UnsafePointer<CChar>?, Int32,
        UnsafePointer<CChar>?, Int32, Int32
    ) -> natsStatus
    typealias PublishMessage = @convention(c) (OpaquePointer?, OpaquePointer?, UnsafePointer<CChar>?, Bool) -> natsStatus
    typealias FreeMessage = @convention(c) (UnsafeMutableRawPointer?) -> Void

    /// The libnats releases whose internals were checked against their sources (nats.c git tags
    /// v3.0.0 to v3.13.0, every 3.x release there is): in each, `natsMsg_create`,
    /// `natsConn_publish` (`pub.c`) and `natsMsg_free` have the signatures above;
    /// `natsMsg_create` (3.6+: through `natsMsg_createWithPadding`, padding after the payload)
    /// lays out subject, NUL, reply, NUL, header block, NUL, payload in one allocation, which is
    /// also how the reader (`conn.c`, `natsConn_processMsg`) creates every received message;
    /// `natsMsgHeader_encode` sends an unparsed ("needs lift") block as it is; `natsMsg_free` is
    /// unchanged; and the `natsMsg` struct is the same. Changes in between that the module does
    /// not depend on: 3.2 `natsMsg_create` accepts a NULL buffer; 3.3 `natsMsg_Destroy` skips
    /// "no destroy" messages; 3.4 `natsConn_publish` counts headers against `max_payload` (the
    /// module checks sizes itself first); 3.7 it skips the headers-support check while a retried
    /// initial connect runs. A release not listed (3.14, a 4.x) uses the public API until someone
    /// checks it and adds it here. Encoded as `nats_GetVersionNumber` encodes them.
    static let verifiedVersions: Set<UInt32> = [
        version(3, 0, 0), version(3, 1, 0), version(3, 1, 1), version(3, 2, 0), version(3, 3, 0),
        version(3, 4, 0), version(3, 4, 1), version(3, 5, 0), version(3, 6, 0), version(3, 6, 1),
        version(3, 7, 0), version(3, 8, 0), version(3, 8, 1), version(3, 8, 2), version(3, 8, 3),
        version(3, 9, 0), version(3, 9, 1), version(3, 9, 2), version(3, 9, 3), version(3, 10, 0),
        version(3, 10, 1), version(3, 11, 0), version(3, 12, 0), version(3, 13, 0),
    ]

    /// A version number as `nats_GetVersionNumber` returns it (`major << 16 | minor << 8 | patch`).
    static func version(_ major: UInt32, _ minor: UInt32, _ patch: UInt32) -> UInt32 {
        major << 16 | minor << 8 | patch
    }

    /// `major.minor.patch` of a version number.
    static func describe(version: UInt32) -> String {
        "\(version >> 16).\((version >> 8) & 0xFF).\(version & 0xFF)"
    }

    /// The gate, a pure function: which path a libnats of `version` gets, before looking for
    /// the symbols (`publicOnlyRequested`: `NATS_PUBLIC_API_ONLY=1`).
    static func gate(version: UInt32, publicOnlyRequested: Bool) -> NATSNativePath {
        let text = describe(version: version)
        if publicOnlyRequested {
            return NATSNativePath(usesInternals: false, libraryVersion: text, reason: "NATS_PUBLIC_API_ONLY=1 is set")
        }
        guard verifiedVersions.contains(version) else {
            return NATSNativePath(
                usesInternals: false, libraryVersion: text,
                reason: "libnats \(text) is not a release whose internals were verified (3.0.0 to 3.13.0)")
        }
        return NATSNativePath(
            usesInternals: true, libraryVersion: text, reason: "libnats \(text) is a verified release")
    }

    private struct Functions: @unchecked Sendable {
        // @unchecked: C function pointers, immutable after lookup.
        let createMessage: CreateMessage
        let publishMessage: PublishMessage
        let freeMessage: FreeMessage
    }

    /// The path in use, and the functions when it is the internals' one. Decided once.
    private static let lookup: (path: NATSNativePath, functions: Functions?) = {
        // Messages are freed through cnats's garbage collector, which nats_Open starts.
        let opened = NativeStatus.libraryOpened
        let version = nats_GetVersionNumber()
        let gated = gate(version: version, publicOnlyRequested: publicOnlyRequested)
        guard gated.usesInternals else { return (gated, nil) }
        guard opened else {
            return (NATSNativePath(usesInternals: false, libraryVersion: gated.libraryVersion, reason: "nats_Open failed"), nil)
        }
        // RTLD_DEFAULT: the process's global scope, where libnats was loaded as a dependency.
        let scope = UnsafeMutableRawPointer(bitPattern: 0)
        guard let create = dlsym(scope, "natsMsg_create"), let publish = dlsym(scope, "natsConn_publish"),
            let free = dlsym(scope, "natsMsg_free")
        else {
            return (
                NATSNativePath(
                    usesInternals: false, libraryVersion: gated.libraryVersion,
                    reason: "libnats \(gated.libraryVersion) does not export natsMsg_create, natsConn_publish and natsMsg_free"),
                nil
            )
        }
        return (
            gated,
            Functions(
                createMessage: unsafeBitCast(create, to: CreateMessage.self),
                publishMessage: unsafeBitCast(publish, to: PublishMessage.self),
                freeMessage: unsafeBitCast(free, to: FreeMessage.self))
        )
    }()

    private static var functions: Functions? { lookup.functions }

    /// Which path the module takes through cnats, and why.
    static var selection: NATSNativePath { lookup.path }

    /// `NATS_PUBLIC_API_ONLY=1` turns the internals off (to compare both paths, or as an escape
    /// hatch should a cnats build differ).
    private static var publicOnlyRequested: Bool {
        guard let value = getenv("NATS_PUBLIC_API_ONLY") else { return false }
        return String(cString: value) == "1"
    }

    /// Whether the internals are in use (a verified libnats, the three functions exported, not
    /// turned off).
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

/// Which path the module takes through cnats (its internals, or the public API only) and why:
/// decided once per process from the libnats version, `NATS_PUBLIC_API_ONLY` and the exported
/// symbols (see `NativeInternals`). Package-level so that tests and tools can read it.
package struct NATSNativePath: Sendable, Equatable, CustomStringConvertible {
    /// Whether the internals are used (the faster paths).
    package let usesInternals: Bool
    /// The libnats version found at run time, `major.minor.patch`.
    package let libraryVersion: String
    /// Why this path.
    package let reason: String

    /// The path of this process.
    package static var current: NATSNativePath { NativeInternals.selection }

    /// The gate alone, as a pure function of a version number (`major << 16 | minor << 8 |
    /// patch`, as `nats_GetVersionNumber` returns it): whether a libnats of that version may use
    /// the internals. `publicOnlyRequested` stands for `NATS_PUBLIC_API_ONLY=1`.
    package static func gate(libraryVersion: UInt32, publicOnlyRequested: Bool = false) -> NATSNativePath {
        NativeInternals.gate(version: libraryVersion, publicOnlyRequested: publicOnlyRequested)
    }

    package var description: String {
        usesInternals
            ? "cnats internals (\(reason))"
            : "cnats public API only (\(reason))"
    }

    /// Logs the path once per connect: debug with the internals, info without (the slower path
    /// is worth knowing about).
    func log(to logger: Logger) {
        logger.log(
            level: usesInternals ? .debug : .info, "NATS uses \(description)",
            metadata: ["libnats": "\(libraryVersion)"])
    }
}

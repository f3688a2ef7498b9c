import CNATSRaw

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// The raw baselines: cnats called the way a careful C program would call it. No validation, no
// copies, C strings prepared once, callbacks that do their work in place. This is the ceiling the
// NATS module is measured against.

struct RawFailure: Error, CustomStringConvertible {
    var description: String
}

@inline(__always)
func rawCheck(_ status: natsStatus, _ call: @autoclosure () -> String) throws(RawFailure) {
    if status != NATS_OK {
        throw RawFailure(description: "\(call()) failed: \(String(cString: natsStatus_GetText(status)))")
    }
}

/// Owns one `natsConnection`.
final class RawConnection: @unchecked Sendable {
    // @unchecked: cnats connections are thread-safe and the pointer never changes.
    let pointer: OpaquePointer

    /// Connects with cnats's defaults, plus SendAsap when asked (every publish written at once,
    /// no flusher thread): what a latency-minded C responder uses.
    init(url: String, sendAsap: Bool = false) throws(RawFailure) {
        var options: OpaquePointer?
        try rawCheck(natsOptions_Create(&options), "natsOptions_Create")
        // natsConnection_Connect clones the options; ours are destroyed here.
        defer { natsOptions_Destroy(options) }
        try rawCheck(natsOptions_SetURL(options, url), "natsOptions_SetURL")
        if sendAsap { try rawCheck(natsOptions_SetSendAsap(options, true), "natsOptions_SetSendAsap") }
        var connection: OpaquePointer?
        try rawCheck(natsConnection_Connect(&connection, options), "natsConnection_Connect(\(url))")
        pointer = connection!
    }

    deinit {
        // Closes (flushing what is buffered) and frees the connection.
        natsConnection_Destroy(pointer)
    }

    func flush(timeoutMilliseconds: Int64 = 10_000) throws(RawFailure) {
        try rawCheck(natsConnection_FlushTimeout(pointer, timeoutMilliseconds), "natsConnection_FlushTimeout")
    }
}

/// A C string allocated once, as a C program would keep its subject constants.
final class RawCString: @unchecked Sendable {
    // @unchecked: immutable after init.
    let pointer: UnsafeMutablePointer<CChar>

    init(_ string: String) { pointer = strdup(string)! }

    deinit { free(pointer) }
}

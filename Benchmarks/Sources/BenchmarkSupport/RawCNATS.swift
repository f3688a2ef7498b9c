import CNATSRaw

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// The raw baselines: cnats called the way a careful C program would call it. No validation, no
// copies, C strings prepared once, callbacks that do their work in place. This is the ceiling the
// NATS module is measured against.

/// A failed cnats call of a raw baseline.
public struct RawFailure: Error, CustomStringConvertible {
    /// What failed, with cnats's text for the status.
    public var description: String

    /// A failure described by `description`.
    public init(description: String) {
        self.description = description
    }
}

/// Throws when a cnats call failed, naming the call and cnats's text for the status.
@inline(__always)
public func rawCheck(_ status: natsStatus, _ call: @autoclosure () -> String) throws(RawFailure) {
    if status != NATS_OK {
        throw RawFailure(description: "\(call()) failed: \(String(cString: natsStatus_GetText(status)))")
    }
}

/// Owns one `natsConnection`.
public final class RawConnection: @unchecked Sendable {
    // @unchecked: cnats connections are thread-safe and the pointer never changes.
    /// The cnats connection.
    public let pointer: OpaquePointer

    /// Connects with cnats's defaults, plus SendAsap when asked (every publish written at once,
    /// no flusher thread): what a latency-minded C responder uses.
    public init(url: String, sendAsap: Bool = false) throws(RawFailure) {
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

    /// A PING/PONG round trip: the server has processed everything sent before.
    public func flush(timeoutMilliseconds: Int64 = 10_000) throws(RawFailure) {
        try rawCheck(natsConnection_FlushTimeout(pointer, timeoutMilliseconds), "natsConnection_FlushTimeout")
    }
}

/// A C string allocated once, as a C program would keep its subject constants.
public final class RawCString: @unchecked Sendable {
    // @unchecked: immutable after init.
    /// The NUL-terminated copy.
    public let pointer: UnsafeMutablePointer<CChar>

    /// Copies `string` once.
    public init(_ string: String) { pointer = strdup(string)! }

    deinit { free(pointer) }
}

/// A counting semaphore for raw callbacks (C threads) to signal a waiting benchmark thread.
public final class RawSignal: @unchecked Sendable {
    // @unchecked: sem_t is thread-safe; the pointer never changes.
    private let semaphore: UnsafeMutablePointer<sem_t>

    /// A signal nobody has posted yet.
    public init() {
        semaphore = .allocate(capacity: 1)
        sem_init(semaphore, 0, 0)
    }

    deinit {
        sem_destroy(semaphore)
        semaphore.deallocate()
    }

    /// Posts one signal (from any thread, a C callback included).
    public func signal() { sem_post(semaphore) }

    /// Waits up to `milliseconds`; false on timeout.
    public func wait(milliseconds: Int) -> Bool {
        var until = timespec()
        clock_gettime(CLOCK_REALTIME, &until)
        until.tv_sec += milliseconds / 1000
        until.tv_nsec += (milliseconds % 1000) * 1_000_000
        if until.tv_nsec >= 1_000_000_000 {
            until.tv_sec += 1
            until.tv_nsec -= 1_000_000_000
        }
        while true {
            if sem_timedwait(semaphore, &until) == 0 { return true }
            if errno != EINTR { return false }
        }
    }
}

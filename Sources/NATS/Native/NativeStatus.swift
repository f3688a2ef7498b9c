import CNATS

/// Turns cnats status codes into ``NATSError`` values.
enum NativeStatus {
    /// Initialises cnats once per process. `nats_Close()` is never called: cnats's library threads
    /// live as long as the process, and closing them while connections exist would crash.
    static let libraryOpened: Bool = {
        nats_Open(-1) == NATS_OK
    }()

    /// The status as the public, C-free value.
    static func describe(_ status: natsStatus) -> NATSError.NativeStatus {
        NATSError.NativeStatus(rawValue: Int32(bitPattern: status.rawValue), text: String(cString: natsStatus_GetText(status)))
    }

    /// The text of the last error cnats recorded on this thread, if it adds something.
    static func lastErrorText() -> String? {
        var status = NATS_OK
        guard let text = nats_GetLastError(&status) else { return nil }
        let message = String(cString: text)
        return message.isEmpty ? nil : message
    }

    /// Maps a failed status to an error; `operation` says what was being done, in words a user
    /// understands.
    static func error(_ status: natsStatus, _ operation: String, file: String = #fileID, line: Int = #line) -> NATSError {
        let native = describe(status)
        var detail = native.text
        if let last = lastErrorText(), last != detail, !last.isEmpty {
            detail = NATSServerURL.redact(last)
        }
        let code: NATSError.Code
        var retriable = false
        switch status {
        case NATS_TIMEOUT:
            code = .timeout
            retriable = true
        case NATS_NO_RESPONDERS:
            code = .noResponders
            retriable = true
        case NATS_CONNECTION_CLOSED:
            code = .connectionClosed
        case NATS_DRAINING:
            code = .connectionDraining
        case NATS_NO_SERVER:
            code = .noServers
            retriable = true
        case NATS_CONNECTION_AUTH_FAILED:
            code = .authenticationFailed
        case NATS_NOT_PERMITTED:
            code = .permissionDenied
        case NATS_INVALID_SUBJECT:
            code = .invalidSubject
        case NATS_MAX_PAYLOAD:
            code = .payloadTooLarge
        case NATS_SLOW_CONSUMER:
            code = .slowConsumer
        case NATS_SSL_ERROR:
            code = .tls
            detail = describeTLSFailure(detail)
        case NATS_SECURE_CONNECTION_WANTED:
            code = .tls
            detail = "the client requires TLS but the server does not offer it (\(detail))"
        case NATS_SECURE_CONNECTION_REQUIRED:
            code = .tls
            detail = "the server requires TLS: use a tls:// URL or set TLS settings (\(detail))"
        case NATS_IO_ERROR, NATS_STALE_CONNECTION, NATS_CONNECTION_DISCONNECTED, NATS_PROTOCOL_ERROR:
            code = .ioError
            retriable = status == NATS_IO_ERROR || status == NATS_STALE_CONNECTION
                || status == NATS_CONNECTION_DISCONNECTED
        case NATS_INVALID_ARG:
            code = .invalidArgument
        case NATS_ADDRESS_MISSING:
            code = .invalidURL
        default:
            code = .internalError
        }
        return NATSError(code, "\(operation): \(detail)", isRetriable: retriable, nativeStatus: native, file: file, line: line)
    }

    /// cnats's TLS failure text, with what it means in front: cnats writes
    /// `SSL handshake error: <code>:<reason>:expected=<name>:cert=<subject>` for a verification
    /// failure.
    static func describeTLSFailure(_ detail: String) -> String {
        if detail.lowercased().contains("hostname mismatch") {
            return "TLS handshake failed: the server's certificate is not for the expected host name (\(detail))"
        }
        if detail.contains("unable to get local issuer certificate") || detail.contains("self-signed certificate")
            || detail.contains("self signed certificate") || detail.contains("certificate verify failed")
        {
            return "TLS handshake failed: the server's certificate is not signed by a trusted authority "
                + "(check tls.caFile) (\(detail))"
        }
        if detail.contains("certificate has expired") {
            return "TLS handshake failed: the server's certificate has expired (\(detail))"
        }
        if detail.contains("certificate required") {
            return "TLS handshake failed: the server requires a client certificate (mutual TLS); set "
                + "tls.certificateFile and tls.keyFile (\(detail))"
        }
        return "TLS failed: \(detail)"
    }

    /// Throws when `status` is not `NATS_OK`.
    @inline(__always)
    static func check(_ status: natsStatus, _ operation: @autoclosure () -> String, file: String = #fileID, line: Int = #line) throws(NATSError) {
        if status != NATS_OK { throw error(status, operation(), file: file, line: line) }
    }
}

extension NATSError.NativeStatus {
    private init(_ status: natsStatus) {
        self = NativeStatus.describe(status)
    }

    /// `NATS_TIMEOUT`.
    public static let timeout = Self(NATS_TIMEOUT)
    /// `NATS_NO_RESPONDERS`.
    public static let noResponders = Self(NATS_NO_RESPONDERS)
    /// `NATS_CONNECTION_CLOSED`.
    public static let connectionClosed = Self(NATS_CONNECTION_CLOSED)
    /// `NATS_NO_SERVER`.
    public static let noServer = Self(NATS_NO_SERVER)
    /// `NATS_SLOW_CONSUMER`.
    public static let slowConsumer = Self(NATS_SLOW_CONSUMER)
    /// `NATS_MAX_PAYLOAD`.
    public static let maxPayload = Self(NATS_MAX_PAYLOAD)
    /// `NATS_NOT_PERMITTED`.
    public static let notPermitted = Self(NATS_NOT_PERMITTED)
    /// `NATS_CONNECTION_AUTH_FAILED`.
    public static let authenticationFailed = Self(NATS_CONNECTION_AUTH_FAILED)
    /// `NATS_MISSED_HEARTBEAT`.
    public static let missedHeartbeat = Self(NATS_MISSED_HEARTBEAT)
}

extension NativeStatus {
    /// Maps a status given by its raw value (for tests, which do not see cnats types).
    static func error(raw: Int32, _ operation: String) -> NATSError {
        error(natsStatus(rawValue: UInt32(bitPattern: raw)), operation)
    }
}

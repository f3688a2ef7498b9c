#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads a server's INFO line on a fresh TCP connection, to explain a failed connect that cnats
/// reports only as a protocol error (a server requiring a client certificate closes the
/// connection right after the TLS handshake; cnats then says "Expected 'PONG', got ''").
/// Used on the failure path only; blocking, with a short timeout.
enum NativeServerProbe {
    /// What a fresh TCP connection to a server shows.
    enum Greeting {
        /// No connection.
        case unreachable
        /// Connected, but no INFO line within the timeout (a TLS-first server waits for the
        /// client's handshake).
        case silent
        /// The INFO line's JSON text.
        case info(String)
    }

    /// Connects once and reads the server's INFO line.
    static func greeting(host: String, port: Int, timeout: Duration = .seconds(1)) -> Greeting {
        guard let socketFD = connectedSocket(host: host, port: port, timeout: timeout) else { return .unreachable }
        defer { close(socketFD) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 2048)
        while bytes.count < 16_384, !bytes.contains(UInt8(ascii: "\n")) {
            let count = recv(socketFD, &chunk, chunk.count, 0)
            guard count > 0 else { break }
            bytes += chunk[0..<count]
        }
        let line = String(decoding: bytes.prefix { $0 != UInt8(ascii: "\r") && $0 != UInt8(ascii: "\n") }, as: UTF8.self)
        return line.hasPrefix("INFO ") ? .info(String(line.dropFirst(5))) : .silent
    }

    /// Why connecting with `configuration` failed, when a server's INFO explains it better than
    /// cnats's error: a client certificate it requires, or a TLS-first handshake cnats 3.4 cannot
    /// do. `nil` when nothing is known.
    static func explainConnectFailure(_ configuration: NATSConnectionConfiguration) -> NATSError? {
        guard configuration.usesTLS else { return nil }
        for server in configuration.servers {
            switch greeting(host: server.host, port: server.port) {
            case .unreachable:
                continue
            case .silent:
                return NATSError(
                    .tls,
                    "cannot connect to \(server): the server sent no INFO; it probably expects the TLS handshake "
                        + "first (tls { handshake_first: true }), which cnats 3.4 cannot do. Give the server a "
                        + "fallback delay (handshake_first: \"300ms\") or turn handshake_first off")
            case .info(let info):
                let compact = info.filter { $0 != " " }
                if compact.contains("\"tls_verify\":true"), configuration.tls?.certificateFile == nil {
                    return NATSError(
                        .tls,
                        "cannot connect to \(server): the server requires a client certificate (mutual TLS, tls_verify) "
                            + "and none is configured; set tls.certificateFile and tls.keyFile")
                }
            }
        }
        return nil
    }

    /// A TCP socket connected to `host`:`port` with send and receive timeouts, or `nil`.
    private static func connectedSocket(host: String, port: Int, timeout: Duration) -> Int32? {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &result) == 0, let first = result else { return nil }
        defer { freeaddrinfo(result) }
        let socketFD = socket(first.pointee.ai_family, first.pointee.ai_socktype, first.pointee.ai_protocol)
        guard socketFD >= 0 else { return nil }
        let milliseconds = max(1, Int(timeout.millisecondsClamped))
        var interval = timeval(tv_sec: milliseconds / 1000, tv_usec: (milliseconds % 1000) * 1000)
        setsockopt(socketFD, SOL_SOCKET, SO_RCVTIMEO, &interval, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(socketFD, SOL_SOCKET, SO_SNDTIMEO, &interval, socklen_t(MemoryLayout<timeval>.size))
        guard connect(socketFD, first.pointee.ai_addr, first.pointee.ai_addrlen) == 0 else {
            close(socketFD)
            return nil
        }
        return socketFD
    }
}

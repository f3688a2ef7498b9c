/// A NATS server address, validated when created. Credentials in it are never printed.
///
/// Accepted forms: `nats://host:port`, `tls://host:port`, `host:port`, `host` (port 4222), with
/// optional `user:password@` or `token@` before the host, and `[::1]` for IPv6 hosts.
public struct NATSServerURL: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible,
    CustomReflectable
{
    /// The schemes cnats 3.4 understands.
    public static let supportedSchemes = ["nats", "tls"]
    /// The port used when the URL has none.
    public static let defaultPort = 4222

    /// `nats` or `tls`.
    public let scheme: String
    /// The host name or address (IPv6 without brackets).
    public let host: String
    /// The port.
    public let port: Int
    /// The user, or a token when there is no password.
    public let user: String?
    /// The password.
    public let password: String?

    /// Parses and validates a URL; the error never repeats the credentials.
    public init(_ text: String) throws(NATSError) {
        let redactedText = NATSServerURL.redact(text)
        func fail(_ rule: String) -> NATSError {
            NATSError(.invalidURL, "invalid server URL '\(redactedText)': \(rule)")
        }
        if text.isEmpty { throw NATSError(.invalidURL, "a server URL must not be empty") }
        if text.unicodeScalars.contains(where: { $0.properties.isWhitespace || $0.value < 0x20 }) {
            throw fail("it must not contain spaces or control characters")
        }
        var rest = Substring(text)
        if let range = rest.firstRange(of: "://") {
            let scheme = rest[..<range.lowerBound].lowercased()
            guard NATSServerURL.supportedSchemes.contains(scheme) else {
                throw fail(
                    "scheme '\(scheme)' is not supported; use one of \(NATSServerURL.supportedSchemes.map { "\($0)://" }.joined(separator: ", "))"
                )
            }
            self.scheme = scheme
            rest = rest[range.upperBound...]
        } else {
            self.scheme = "nats"
        }
        if rest.hasSuffix("/") { rest = rest.dropLast() }
        if rest.contains("/") || rest.contains("?") || rest.contains("#") {
            throw fail("a server URL has no path, query or fragment")
        }
        if let at = rest.lastIndex(of: "@") {
            let userInfo = rest[..<at]
            rest = rest[rest.index(after: at)...]
            if let colon = userInfo.firstIndex(of: ":") {
                self.user = String(userInfo[..<colon])
                self.password = String(userInfo[userInfo.index(after: colon)...])
            } else {
                self.user = String(userInfo)
                self.password = nil
            }
            if user?.isEmpty == true && (password ?? "").isEmpty { throw fail("empty credentials before '@'") }
        } else {
            self.user = nil
            self.password = nil
        }
        var hostPart = rest
        var portPart: Substring?
        if hostPart.hasPrefix("[") {
            guard let close = hostPart.firstIndex(of: "]") else { throw fail("an IPv6 host needs a closing ']'") }
            let afterClose = hostPart[hostPart.index(after: close)...]
            hostPart = hostPart[hostPart.index(after: hostPart.startIndex)..<close]
            if afterClose.hasPrefix(":") {
                portPart = afterClose.dropFirst()
            } else if !afterClose.isEmpty {
                throw fail("unexpected text after the IPv6 host")
            }
        } else if let colon = hostPart.lastIndex(of: ":") {
            portPart = hostPart[hostPart.index(after: colon)...]
            hostPart = hostPart[..<colon]
        }
        if hostPart.isEmpty { throw fail("the host is missing") }
        self.host = String(hostPart)
        if let portPart {
            guard let port = Int(portPart) else {
                throw fail("port '\(portPart)' is not a number")
            }
            guard (1...65535).contains(port) else {
                throw fail("port \(port) is out of range (1-65535)")
            }
            self.port = port
        } else {
            self.port = NATSServerURL.defaultPort
        }
    }

    /// The URL as cnats gets it, credentials included. Never log this.
    var connectString: String {
        var text = "\(scheme)://"
        if let user {
            text += user
            if let password { text += ":\(password)" }
            text += "@"
        }
        text += host.contains(":") ? "[\(host)]" : host
        text += ":\(port)"
        return text
    }

    /// The URL with any credentials replaced by `***`.
    public var description: String {
        var text = "\(scheme)://"
        if user != nil { text += password != nil ? "\(user!):***@" : "***@" }
        text += host.contains(":") ? "[\(host)]" : host
        return text + ":\(port)"
    }

    /// The same as ``description``: credentials redacted.
    public var debugDescription: String { description }

    /// Shows the URL redacted, so that `dump` and debuggers do not reveal the password either.
    public var customMirror: Mirror {
        Mirror(self, children: ["url": description], displayStyle: .struct)
    }

    /// Replaces credentials in any URL-like text (also a list, or one that failed to parse).
    public static func redact(_ text: String) -> String {
        text.split(separator: ",", omittingEmptySubsequences: false).map { part -> String in
            guard let at = part.lastIndex(of: "@") else { return String(part) }
            let schemeEnd = part.firstRange(of: "://")?.upperBound ?? part.startIndex
            guard schemeEnd <= at else { return String(part) }
            let userInfo = part[schemeEnd..<at]
            let redacted: String
            if let colon = userInfo.firstIndex(of: ":") {
                redacted = "\(userInfo[..<colon]):***"
            } else {
                redacted = "***"
            }
            return String(part[..<schemeEnd]) + redacted + String(part[at...])
        }.joined(separator: ",")
    }
}

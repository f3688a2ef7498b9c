/// A NATS server address, validated when created. Credentials in it are never printed.
///
/// Accepted forms: `nats://host:port`, `tls://host:port`, `host:port`, `host` (port 4222), and
/// `[::1]` or `[::1]:port` for IPv6 hosts. Credentials may come before the host:
///
/// | form | meaning |
/// | --- | --- |
/// | `nats://alice:secret@host` | user `alice`, password `secret` |
/// | `nats://:secret@host` | empty user, password `secret` |
/// | `nats://alice:@host` | user `alice`, empty password |
/// | `nats://s3cr3t@host` | the token `s3cr3t` |
///
/// User, password and token are percent-decoded, as in any URL: `%2C` is a comma, `%40` an `@`,
/// `%3A` a `:`, `%2F` a `/`, `%25` a `%`. A comma must be percent-encoded, because server lists
/// are separated by commas; a `%` must be (it starts an escape). Everything before the last `@`
/// counts as credentials, so a raw `@`, `:` (after the first), `/`, `?` or `#` in a password is
/// read correctly too, but encoding them is clearer. Decoded credentials must be UTF-8 without
/// control characters.
///
/// Credentials never reach cnats inside a URL: the connection passes them as its authentication,
/// so that they hold for every server, discovered ones included, and cnats never prints them.
/// They count as the configuration's authentication method: ``NATSConnectionConfiguration/validate()``
/// rejects them next to another ``NATSConnectionConfiguration/authentication``, or different
/// credentials in two URLs.
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
    /// The user (percent-decoded; empty for `:password@`), or a token when ``password`` is `nil`.
    public let user: String?
    /// The password (percent-decoded), or `nil` when the URL holds a token or no credentials.
    public let password: String?

    /// Parses and validates one URL; the error never repeats the credentials.
    ///
    /// - Throws: ``NATSError`` with code ``NATSError/Code/invalidURL`` naming the URL
    ///   (credentials redacted) and the rule it breaks.
    public init(_ text: String) throws(NATSError) {
        let scalars = Array(text.unicodeScalars)
        switch NATSServerURL.parse(scalars[...]) {
        case .success(let parsed):
            self = parsed.url
        case .failure(let failure):
            throw NATSError(.invalidURL, failure.message(for: NATSServerURL.redact(text)))
        }
    }

    /// Parses a comma-separated list of server URLs, the form of a `servers` setting; spaces
    /// around the commas and empty entries are ignored.
    ///
    /// A comma inside credentials must be percent-encoded (`%2C`): a list that looks split inside
    /// credentials (an entry that does not parse followed by one holding `@`, or an entry holding
    /// `@` without a scheme after one with a scheme) fails with a message saying so, and without
    /// any part of the secret.
    ///
    /// - Throws: ``NATSError`` with code ``NATSError/Code/invalidURL``, also when the list names
    ///   no server.
    public static func parseList(_ text: String) throws(NATSError) -> [NATSServerURL] {
        switch parseList(Array(text.unicodeScalars)) {
        case .success(let entries):
            return entries.map(\.url)
        case .failure(let failure):
            throw NATSError(.invalidURL, failure.message(list: text))
        }
    }

    /// The URL as cnats gets it: scheme, host and port, never the credentials.
    var connectString: String { "\(scheme)://\(hostAndPort)" }

    /// The credentials this URL carries, as an authentication: a password makes user and
    /// password (the user may be empty), a user alone is a token. `nil` without credentials.
    public var credentials: NATSConnectionConfiguration.Authentication? {
        if let password { return .userPassword(user: user ?? "", password: password) }
        if let user { return .token(user) }
        return nil
    }

    private var hostAndPort: String {
        (host.contains(":") ? "[\(host)]" : host) + ":\(port)"
    }

    /// The URL with any password or token replaced by `***` (the user stays, percent-encoded).
    public var description: String {
        var text = "\(scheme)://"
        if let user {
            text += password != nil ? "\(NATSServerURL.percentEncoded(user)):***@" : "***@"
        } else if password != nil {
            text += ":***@"
        }
        return text + hostAndPort
    }

    /// The same as ``description``: credentials redacted.
    public var debugDescription: String { description }

    /// Shows the URL redacted, so that `dump` and debuggers do not reveal the password either.
    public var customMirror: Mirror {
        Mirror(self, children: ["url": description], displayStyle: .struct)
    }

    /// Replaces credentials in URL-like text: one URL, a list, one that failed to parse, or a
    /// message holding URLs.
    ///
    /// Text that parses as a server list keeps its shape: passwords and tokens become `***`. Other
    /// text is masked conservatively: everything from the first URL's start to the last `@` (one
    /// URL without commas or spaces keeps its user), and a URL without `@` that could hide a
    /// secret (`nats://:x...`, a port that is not a number) loses that part.
    public static func redact(_ text: String) -> String {
        let scalars = Array(text.unicodeScalars)
        guard case .success(let entries) = parseList(scalars) else {
            return redactConservatively(scalars)
        }
        var result = String.UnicodeScalarView()
        var position = scalars.startIndex
        for entry in entries {
            guard let userInfo = entry.userInfo else { continue }
            result.append(contentsOf: scalars[position..<userInfo.lowerBound])
            if entry.url.password != nil {
                // Keep the user as written, up to the first ':'.
                let colon = scalars[userInfo].firstIndex(of: ":")!
                result.append(contentsOf: scalars[userInfo.lowerBound...colon])
            }
            result.append(contentsOf: "***".unicodeScalars)
            position = userInfo.upperBound
        }
        result.append(contentsOf: scalars[position...])
        return String(result)
    }
}

// MARK: - Parsing

extension NATSServerURL {
    /// One parsed URL and where its credentials were in the text.
    struct Parsed {
        var url: NATSServerURL
        /// The raw credentials, between the scheme (or the start) and the last `@`.
        var userInfo: Range<Int>?
    }

    /// Why one URL does not parse. The messages never quote the credentials, nor text that could
    /// hold them.
    enum Failure: Error {
        case empty, whitespace, comma, scheme(String), path, emptyCredentials, escape, controlInCredentials,
            notUTF8, unclosedIPv6, afterIPv6, hostMissing, hostCharacters, portNotNumber, portRange

        var rule: String {
            switch self {
            case .empty: "a server URL must not be empty"
            case .whitespace: "it must not contain spaces or control characters"
            case .comma:
                "it must not contain ',' (a list separates servers with commas): percent-encode a comma in credentials as %2C"
            case .scheme(let scheme):
                "scheme '\(scheme)' is not supported; use one of \(NATSServerURL.supportedSchemes.map { "\($0)://" }.joined(separator: ", "))"
            case .path: "a server URL has no path, query or fragment"
            case .emptyCredentials: "empty credentials before '@'"
            case .escape:
                "invalid percent-encoding in the credentials: '%' must be followed by two hex digits (write a '%' as %25)"
            case .controlInCredentials: "credentials must not contain control characters, percent-encoded or not"
            case .notUTF8: "percent-encoded credentials must decode to UTF-8"
            case .unclosedIPv6: "an IPv6 host needs a closing ']'"
            case .afterIPv6: "unexpected text after the IPv6 host"
            case .hostMissing: "the host is missing"
            case .hostCharacters:
                "the host may hold only letters, digits, '-', '.' and '_' (an IPv6 address goes in brackets, as in [::1]:4222)"
            case .portNotNumber: "the port is not a number"
            case .portRange: "the port is out of range (1-65535)"
            }
        }

        func message(for redactedText: String) -> String {
            if case .empty = self { return rule }
            // Printable: the text may hold the control characters it is rejected for.
            return "invalid server URL '\(NATSValidation.printable(redactedText))': \(rule)"
        }
    }

    /// Why a list does not parse.
    enum ListFailure: Error {
        /// An entry (1-based, of `count`) breaks a rule.
        case entry(index: Int, count: Int, text: [Unicode.Scalar], Failure)
        /// The list looks split at a comma inside credentials.
        case commaInCredentials(index: Int, count: Int)
        case empty

        func message(list: String) -> String {
            switch self {
            case .empty:
                return "the server list is empty: give at least one server URL"
            case .entry(let index, let count, let text, let failure):
                let url = NATSServerURL.redact(String(String.UnicodeScalarView(text)))
                let position = count > 1 ? "server \(index) of \(count): " : ""
                return position + failure.message(for: url)
            case .commaInCredentials(let index, let count):
                return
                    "invalid server list '\(NATSValidation.printable(NATSServerURL.redact(list)))': entry \(index) of \(count) looks like part of credentials split at a comma; a comma inside a user, password or token must be percent-encoded as %2C"
            }
        }
    }

    private static let schemeSeparator: [Unicode.Scalar] = [":", "/", "/"]

    /// The index of the first `://` in `scalars`, if any.
    private static func schemeSeparatorIndex(_ scalars: ArraySlice<Unicode.Scalar>) -> Int? {
        var index = scalars.startIndex
        while index + 2 < scalars.endIndex {
            if scalars[index] == ":" && scalars[index + 1] == "/" && scalars[index + 2] == "/" { return index }
            index += 1
        }
        return nil
    }

    /// The index of the `://` that ends a URL's scheme: a letter followed by letters, digits,
    /// `+`, `-` or `.`. A `://` after other text is part of the credentials (or no URL), so that
    /// an error never quotes it as a scheme.
    private static func schemeEnd(_ url: ArraySlice<Unicode.Scalar>) -> Int? {
        guard let separator = schemeSeparatorIndex(url), separator > url.startIndex,
            isLetter(url[url.startIndex]), url[..<separator].allSatisfy(isSchemeCharacter)
        else { return nil }
        return separator
    }

    private static func isLetter(_ scalar: Unicode.Scalar) -> Bool {
        ("a"..."z").contains(scalar) || ("A"..."Z").contains(scalar)
    }

    private static func isSchemeCharacter(_ scalar: Unicode.Scalar) -> Bool {
        isLetterOrDigit(scalar) || scalar == "+" || scalar == "-" || scalar == "."
    }

    private static func isSpaceOrControl(_ scalar: Unicode.Scalar) -> Bool {
        scalar.properties.isWhitespace || scalar.value < 0x20 || scalar.value == 0x7F
    }

    /// The one parser of a server URL; all others (lists, redaction, configuration) use it.
    static func parse(_ text: ArraySlice<Unicode.Scalar>) -> Result<Parsed, Failure> {
        if text.isEmpty { return .failure(.empty) }
        if text.contains(where: isSpaceOrControl) { return .failure(.whitespace) }
        if text.contains(",") { return .failure(.comma) }
        var rest = text
        let scheme: String
        if let separator = schemeEnd(rest) {
            scheme = String(String.UnicodeScalarView(rest[..<separator])).lowercased()
            guard supportedSchemes.contains(scheme) else { return .failure(.scheme(scheme)) }
            rest = rest[(separator + 3)...]
        } else {
            scheme = "nats"
        }
        // Everything before the last '@' is credentials, whatever it holds.
        var user: String?
        var password: String?
        var userInfo: Range<Int>?
        if let at = rest.lastIndex(of: "@") {
            let raw = rest[..<at]
            userInfo = raw.startIndex..<at
            rest = rest[(at + 1)...]
            if let colon = raw.firstIndex(of: ":") {
                switch (percentDecoded(raw[..<colon]), percentDecoded(raw[(colon + 1)...])) {
                case (.success(let decodedUser), .success(let decodedPassword)):
                    user = decodedUser
                    password = decodedPassword
                case (.failure(let failure), _), (_, .failure(let failure)):
                    return .failure(failure)
                }
                if user!.isEmpty && password!.isEmpty { return .failure(.emptyCredentials) }
            } else {
                switch percentDecoded(raw) {
                case .success(let token): user = token
                case .failure(let failure): return .failure(failure)
                }
                if user!.isEmpty { return .failure(.emptyCredentials) }
            }
        }
        if rest.last == "/" { rest = rest.dropLast() }
        if rest.contains(where: { $0 == "/" || $0 == "?" || $0 == "#" }) { return .failure(.path) }
        var hostPart = rest
        var portPart: ArraySlice<Unicode.Scalar>?
        var isIPv6 = false
        if hostPart.first == "[" {
            guard let close = hostPart.firstIndex(of: "]") else { return .failure(.unclosedIPv6) }
            let afterClose = hostPart[(close + 1)...]
            hostPart = hostPart[(hostPart.startIndex + 1)..<close]
            isIPv6 = true
            if afterClose.first == ":" {
                portPart = afterClose.dropFirst()
            } else if !afterClose.isEmpty {
                return .failure(.afterIPv6)
            }
        } else if let colon = hostPart.lastIndex(of: ":") {
            portPart = hostPart[(colon + 1)...]
            hostPart = hostPart[..<colon]
        }
        if hostPart.isEmpty { return .failure(.hostMissing) }
        let hostAllowed: (Unicode.Scalar) -> Bool =
            isIPv6
            ? { isLetterOrDigit($0) || $0 == ":" || $0 == "." || $0 == "%" }
            : { isLetterOrDigit($0) || $0 == "-" || $0 == "." || $0 == "_" }
        if !hostPart.allSatisfy(hostAllowed) { return .failure(.hostCharacters) }
        // Brackets hold an IPv6 address, which always has a ':' (`[f%1]` would print as `f%1`,
        // which does not parse back).
        if isIPv6 && !hostPart.contains(":") { return .failure(.hostCharacters) }
        let port: Int
        if let portPart {
            guard !portPart.isEmpty, portPart.allSatisfy({ $0 >= "0" && $0 <= "9" }) else { return .failure(.portNotNumber) }
            guard portPart.count <= 5, let value = Int(String(String.UnicodeScalarView(portPart))), (1...65535).contains(value)
            else { return .failure(.portRange) }
            port = value
        } else {
            port = defaultPort
        }
        return .success(
            Parsed(
                url: NATSServerURL(
                    scheme: scheme, host: String(String.UnicodeScalarView(hostPart)), port: port, user: user,
                    password: password),
                userInfo: userInfo))
    }

    private init(scheme: String, host: String, port: Int, user: String?, password: String?) {
        self.scheme = scheme
        self.host = host
        self.port = port
        self.user = user
        self.password = password
    }

    private static func isLetterOrDigit(_ scalar: Unicode.Scalar) -> Bool {
        ("a"..."z").contains(scalar) || ("A"..."Z").contains(scalar) || ("0"..."9").contains(scalar)
    }

    /// Parses a comma-separated list; see ``parseList(_:)``.
    static func parseList(_ scalars: [Unicode.Scalar]) -> Result<[Parsed], ListFailure> {
        var pieces: [ArraySlice<Unicode.Scalar>] = []
        for piece in scalars.split(separator: ",", omittingEmptySubsequences: false) {
            // Spaces around commas are not part of a URL.
            guard let first = piece.firstIndex(where: { !isSpaceOrControl($0) }) else { continue }
            let last = piece.lastIndex(where: { !isSpaceOrControl($0) })!
            pieces.append(piece[first...last])
        }
        if pieces.isEmpty { return .failure(.empty) }
        var parsed: [Parsed] = []
        var seenScheme = false
        for (offset, piece) in pieces.enumerated() {
            let laterHoldsAt = pieces[(offset + 1)...].contains { $0.contains("@") }
            let hasScheme = schemeEnd(piece) != nil
            // `nats://u:p,q@h` splits into `nats://u:p` and `q@h`: the first rarely parses, the
            // second lacks a scheme. Either way no part of the pieces may be shown.
            if piece.contains("@") && !hasScheme && seenScheme {
                return .failure(.commaInCredentials(index: offset, count: pieces.count))
            }
            seenScheme = seenScheme || hasScheme
            switch parse(piece) {
            case .success(let entry):
                parsed.append(entry)
            case .failure(let failure):
                if laterHoldsAt { return .failure(.commaInCredentials(index: offset + 1, count: pieces.count)) }
                return .failure(.entry(index: offset + 1, count: pieces.count, text: Array(piece), failure))
            }
        }
        return .success(parsed)
    }

    /// Decodes `%XX` escapes (UTF-8) in credentials.
    private static func percentDecoded(_ text: ArraySlice<Unicode.Scalar>) -> Result<String, Failure> {
        var bytes: [UInt8] = []
        var index = text.startIndex
        func hexValue(_ scalar: Unicode.Scalar) -> UInt8? {
            switch scalar {
            case "0"..."9": UInt8(scalar.value - 0x30)
            case "a"..."f": UInt8(scalar.value - 0x61 + 10)
            case "A"..."F": UInt8(scalar.value - 0x41 + 10)
            default: nil
            }
        }
        while index < text.endIndex {
            let scalar = text[index]
            if scalar == "%" {
                guard index + 2 < text.endIndex, let high = hexValue(text[index + 1]), let low = hexValue(text[index + 2])
                else { return .failure(.escape) }
                bytes.append(high << 4 | low)
                index += 3
            } else {
                bytes.append(contentsOf: String(scalar).utf8)
                index += 1
            }
        }
        guard let decoded = String(validating: bytes, as: UTF8.self) else { return .failure(.notUTF8) }
        if decoded.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) {
            return .failure(.controlInCredentials)
        }
        return .success(decoded)
    }

    /// Percent-encodes everything in a user name but unreserved characters, for display.
    static func percentEncoded(_ text: String) -> String {
        var result = ""
        for byte in text.utf8 {
            let scalar = Unicode.Scalar(byte)
            if byte < 0x80 && (isLetterOrDigit(scalar) || "-._~".unicodeScalars.contains(scalar)) {
                result.unicodeScalars.append(scalar)
            } else {
                let hex = Array("0123456789ABCDEF".unicodeScalars)
                result.unicodeScalars.append("%")
                result.unicodeScalars.append(hex[Int(byte >> 4)])
                result.unicodeScalars.append(hex[Int(byte & 0xF)])
            }
        }
        return result
    }
}

// MARK: - Conservative redaction

extension NATSServerURL {
    /// Characters that end a URL inside a message.
    private static func endsURL(_ scalar: Unicode.Scalar) -> Bool {
        isSpaceOrControl(scalar) || "'\",;)>".unicodeScalars.contains(scalar)
    }

    /// Whether `text` looks like a port (digits; one out of range is still shown, to name the
    /// mistake): anything else after a host's last ':' may be a password without its host.
    private static func isPort(_ text: ArraySlice<Unicode.Scalar>) -> Bool {
        !text.isEmpty && text.allSatisfy { $0 >= "0" && $0 <= "9" }
    }

    /// Masks text that is not a clean server list, erring on the side of hiding too much.
    static func redactConservatively(_ scalars: [Unicode.Scalar]) -> String {
        var output: [Unicode.Scalar] = []
        var tailStart = scalars.startIndex
        if let lastAt = scalars.lastIndex(of: "@") {
            let firstAt = scalars.firstIndex(of: "@")!
            // Masking starts after the first URL's scheme; from the start of the text when there
            // is none, or when the `://` is not a scheme's (then it may be inside credentials).
            var start = scalars.startIndex
            if let separator = schemeSeparatorIndex(scalars[..<firstAt]) {
                var token = separator
                while token > scalars.startIndex && isSchemeCharacter(scalars[token - 1]) { token -= 1 }
                let atBoundary = token == scalars.startIndex || !":@%/".unicodeScalars.contains(scalars[token - 1])
                if token < separator && isLetter(scalars[token]) && atBoundary { start = separator + 3 }
            }
            output.append(contentsOf: scalars[..<start])
            let masked = scalars[start..<lastAt]
            // One URL alone: its user is the text up to the first ':', as the parser reads it.
            let single = !masked.contains(where: { isSpaceOrControl($0) || $0 == "," })
            if single, let colon = masked.firstIndex(of: ":") {
                output.append(contentsOf: masked[...colon])
            }
            output.append(contentsOf: "***".unicodeScalars)
            tailStart = lastAt
        }
        // After the last '@', URLs hold no credentials, unless cnats lost the '@' of an empty user
        // (`nats://:secret127.0.0.1:4222`) or a password was given without a host.
        var index = tailStart
        while index < scalars.endIndex {
            guard let separator = schemeSeparatorIndex(scalars[index...]) else { break }
            output.append(contentsOf: scalars[index..<(separator + 3)])
            let start = separator + 3
            var end = start
            while end < scalars.endIndex && !endsURL(scalars[end]) && scalars[end] != "/" { end += 1 }
            let authority = scalars[start..<end]
            if authority.first == ":" {
                output.append(contentsOf: "***".unicodeScalars)
            } else {
                var portStart: Int?
                if authority.first == "[" {
                    if let close = authority.firstIndex(of: "]"), close + 1 < end, scalars[close + 1] == ":" {
                        portStart = close + 2
                    }
                } else if let colon = authority.lastIndex(of: ":") {
                    portStart = colon + 1
                }
                if let portStart, !isPort(scalars[portStart..<end]) {
                    output.append(contentsOf: scalars[start..<portStart])
                    output.append(contentsOf: "***".unicodeScalars)
                } else {
                    output.append(contentsOf: authority)
                }
            }
            index = end
        }
        output.append(contentsOf: scalars[index...])
        return String(String.UnicodeScalarView(output))
    }
}

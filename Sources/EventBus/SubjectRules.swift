/// The NATS subject syntax, checked before anything reaches a backend.
///
/// A subject is tokens separated by `.`; no token is empty; no byte is whitespace, a control character or
/// DEL. In a pattern, `*` stands for exactly one token and `>` for one or more trailing tokens; each must be
/// a whole token, and `>` only the last. A literal subject (what a publish needs) has no wildcard at all.
enum SubjectRules {
    static let dot = UInt8(ascii: ".")
    static let star = UInt8(ascii: "*")
    static let greaterThan = UInt8(ascii: ">")

    /// Checks a literal subject, as publish and dead-letter targets need. `role` names it in the error.
    static func validateLiteral(_ subject: String, role: String = "subject") throws(EventBusError) {
        try validateTokens(subject, role: role, code: .invalidSubject) { (token, _, _) throws(EventBusError) in
            if token.contains(star) || token.contains(greaterThan) {
                throw EventBusError(
                    .invalidSubject,
                    "\(role) '\(subject)' contains a wildcard ('*' or '>'); a literal subject is needed here"
                )
            }
        }
    }

    /// Checks a subscription pattern.
    static func validatePattern(_ pattern: String) throws(EventBusError) {
        try validateTokens(pattern, role: "pattern", code: .invalidPattern) { (token, index, isLast) throws(EventBusError) in
            let hasWildcardByte = token.contains(star) || token.contains(greaterThan)
            guard hasWildcardByte else { return }
            if token.count != 1 {
                throw EventBusError(
                    .invalidPattern,
                    "pattern '\(pattern)' has token \(index + 1) '\(String(decoding: token, as: UTF8.self))': "
                        + "'*' and '>' must be a whole token"
                )
            }
            if token.first == greaterThan && !isLast {
                throw EventBusError(.invalidPattern, "pattern '\(pattern)': '>' may only be the last token")
            }
        }
    }

    /// Checks a consumer group name: it becomes a JetStream durable name, so only letters, digits, `-` and `_`.
    static func validateGroup(_ group: String) throws(EventBusError) {
        guard !group.isEmpty, group.utf8.count <= 200 else {
            throw EventBusError(.invalidOption, "group '\(group)' must have 1 to 200 characters")
        }
        for byte in group.utf8 {
            let allowed = (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A)
                || (byte >= 0x61 && byte <= 0x7A) || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_")
            if !allowed {
                throw EventBusError(
                    .invalidOption,
                    "group '\(group)' may only contain letters, digits, '-' and '_'"
                )
            }
        }
    }

    /// Splits `text` at dots and checks the rules shared by subjects and patterns, then calls `checkToken`
    /// with each token, its index and whether it is the last.
    private static func validateTokens(
        _ text: String,
        role: String,
        code: EventBusError.Code,
        checkToken: (ArraySlice<UInt8>, Int, Bool) throws(EventBusError) -> Void
    ) throws(EventBusError) {
        let bytes = Array(text.utf8)
        if bytes.isEmpty {
            throw EventBusError(code, "\(role) is empty; it needs at least one token")
        }
        for byte in bytes where byte <= 0x20 || byte == 0x7F {
            throw EventBusError(
                code,
                "\(role) '\(text.debugEscaped)' contains whitespace or a control character (byte \(byte))"
            )
        }
        let tokens = bytes.split(separator: dot, omittingEmptySubsequences: false)
        for (index, token) in tokens.enumerated() {
            if token.isEmpty {
                throw EventBusError(code, "\(role) '\(text)' has an empty token at position \(index + 1)")
            }
            try checkToken(token, index, index == tokens.count - 1)
        }
    }
}

extension String {
    /// The string with control characters escaped, so an error message shows them instead of printing them.
    var debugEscaped: String {
        var result = ""
        for scalar in unicodeScalars {
            result += scalar.value < 0x20 || scalar.value == 0x7F ? scalar.escaped(asASCII: true) : String(scalar)
        }
        return result
    }
}

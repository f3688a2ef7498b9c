/// The NATS subject syntax, checked before anything reaches a backend.
///
/// A subject is tokens separated by `.`; no token is empty; no byte is whitespace, a control character or
/// DEL. In a pattern, `*` stands for exactly one token and `>` for one or more trailing tokens; each must be
/// a whole token, and `>` only the last. A literal subject (what a publish needs) has no wildcard at all.
enum SubjectRules {
    static let dot = UInt8(ascii: ".")
    static let star = UInt8(ascii: "*")
    static let greaterThan = UInt8(ascii: ">")

    /// The `.`-separated tokens of a subject or pattern, empty ones included, found on the UTF-8 bytes:
    /// `String.split` walks `Character`s (grapheme breaking), which made it 60% of a subject-index walk.
    static func tokens(of text: String) -> [Substring] {
        var tokens: [Substring] = []
        let utf8 = text.utf8
        var start = utf8.startIndex
        var index = start
        while index != utf8.endIndex {
            if utf8[index] == dot {
                tokens.append(text[start..<index])
                start = utf8.index(after: index)
            }
            index = utf8.index(after: index)
        }
        tokens.append(text[start..<utf8.endIndex])
        return tokens
    }

    /// Whether the literal subject `subject` matches the pattern `pattern` (both as UTF-8 bytes), token by
    /// token in place: `*` matches one token, a final `>` one or more.
    static func matches(pattern: UnsafeRawBufferPointer, subject: UnsafeRawBufferPointer) -> Bool {
        @inline(__always)
        func tokenEnd(_ bytes: UnsafeRawBufferPointer, from start: Int) -> Int {
            var end = start
            while end < bytes.count && bytes[end] != dot { end &+= 1 }
            return end
        }
        var patternStart = 0
        var subjectStart = 0
        while true {
            let patternEnd = tokenEnd(pattern, from: patternStart)
            let isSingle = patternEnd &- patternStart == 1
            if isSingle && pattern[patternStart] == greaterThan {
                return subjectStart <= subject.count
            }
            // A subject token starts at `subjectStart` while it is at most the count.
            guard subjectStart <= subject.count else { return false }
            let subjectEnd = tokenEnd(subject, from: subjectStart)
            if !(isSingle && pattern[patternStart] == star) {
                let length = patternEnd &- patternStart
                guard length == subjectEnd &- subjectStart else { return false }
                var offset = 0
                while offset < length {
                    if pattern[patternStart &+ offset] != subject[subjectStart &+ offset] { return false }
                    offset &+= 1
                }
            }
            patternStart = patternEnd &+ 1
            subjectStart = subjectEnd &+ 1
            if patternStart > pattern.count {
                return subjectStart > subject.count
            }
        }
    }

    /// Checks a literal subject, as publish and dead-letter targets need. `role` names it in the error.
    /// No allocation, eight bytes at a time (``ByteScan``): it runs on every publish. Only a subject that
    /// breaks a rule (or is not contiguous) takes the byte-by-byte loop that names the rule.
    static func validateLiteral(_ subject: String, role: String = "subject") throws(EventBusError) {
        if subject.withContiguousUTF8IfAvailable(ByteScan.isLiteralSubject) == true {
            return
        }
        var tokenLength = 0
        var tokenIndex = 0
        for byte in subject.utf8 {
            switch byte {
            case dot:
                if tokenLength == 0 {
                    throw emptyToken(subject, role: role, code: .invalidSubject, position: tokenIndex + 1)
                }
                tokenLength = 0
                tokenIndex += 1
            case star, greaterThan:
                throw EventBusError(
                    .invalidSubject,
                    "\(role) '\(subject)' contains a wildcard ('*' or '>'); a literal subject is needed here"
                )
            case 0...0x20, 0x7F:
                throw badByte(subject, role: role, code: .invalidSubject, byte: byte)
            default:
                tokenLength += 1
            }
        }
        if tokenLength == 0 {
            throw emptyToken(subject, role: role, code: .invalidSubject, position: tokenIndex + 1)
        }
    }

    /// Checks a subscription pattern, in one pass over its bytes.
    static func validatePattern(_ pattern: String) throws(EventBusError) {
        var tokenLength = 0
        var tokenIndex = 0
        var lastWildcard: UInt8?
        func checkToken(isLast: Bool) throws(EventBusError) {
            if tokenLength == 0 {
                throw emptyToken(pattern, role: "pattern", code: .invalidPattern, position: tokenIndex + 1)
            }
            guard let wildcard = lastWildcard else { return }
            if tokenLength != 1 {
                throw EventBusError(
                    .invalidPattern,
                    "pattern '\(pattern)' token \(tokenIndex + 1): '*' and '>' must be a whole token"
                )
            }
            if wildcard == greaterThan && !isLast {
                throw EventBusError(.invalidPattern, "pattern '\(pattern)': '>' may only be the last token")
            }
        }
        for byte in pattern.utf8 {
            switch byte {
            case dot:
                try checkToken(isLast: false)
                tokenLength = 0
                tokenIndex += 1
                lastWildcard = nil
            case star, greaterThan:
                lastWildcard = byte
                tokenLength += 1
            case 0...0x20, 0x7F:
                throw badByte(pattern, role: "pattern", code: .invalidPattern, byte: byte)
            default:
                tokenLength += 1
            }
        }
        try checkToken(isLast: true)
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

    private static func emptyToken(_ text: String, role: String, code: EventBusError.Code, position: Int) -> EventBusError {
        text.isEmpty
            ? EventBusError(code, "\(role) is empty; it needs at least one token")
            : EventBusError(code, "\(role) '\(text)' has an empty token at position \(position)")
    }

    private static func badByte(_ text: String, role: String, code: EventBusError.Code, byte: UInt8) -> EventBusError {
        EventBusError(code, "\(role) '\(text.debugEscaped)' contains whitespace or a control character (byte \(byte))")
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

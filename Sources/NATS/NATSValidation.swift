/// The rules the client checks before anything is sent, so that bad input fails with a clear,
/// typed error instead of a protocol error (or a silently dropped message) later.
///
/// All checks walk the UTF-8 bytes once and allocate nothing on success; they sit on the
/// publish path.
public enum NATSValidation {
    /// What a subject is used for, which decides whether wildcards are allowed.
    public enum SubjectUse: Sendable {
        /// A publish or reply subject: a literal subject, no `*` or `>` tokens.
        case publish
        /// A subscription subject: `*` may stand for a whole token, `>` may be the last token.
        case subscribe
    }

    /// Checks a subject and throws ``NATSError/Code/invalidSubject`` naming the subject and the rule.
    ///
    /// Rules: not empty; no whitespace or control characters; no empty tokens (`a..b`, a leading or
    /// trailing `.`); for publishing no wildcard tokens; for subscribing `*` only as a whole token
    /// and `>` only as the whole last token.
    @inlinable
    public static func validateSubject(_ subject: String, for use: SubjectUse) throws(NATSError) {
        if let failure = subjectViolation(subject, for: use) {
            throw NATSError(.invalidSubject, "invalid subject '\(printable(subject))': \(failure)")
        }
    }

    /// Returns the rule a subject breaks, or `nil` when it is valid.
    @inlinable
    public static func subjectViolation(_ subject: String, for use: SubjectUse) -> String? {
        var subject = subject
        return subject.withUTF8 { bytes in subjectViolation(bytes, for: use) }
    }

    /// Bytes below 64 that need a closer look: controls, space, `*`, `.` and `>`.
    @usableFromInline
    static let specialBelow64: UInt64 = 0x0000_0001_FFFF_FFFF | (1 << 0x2A) | (1 << 0x2E) | (1 << 0x3E)

    @usableFromInline
    static func subjectViolation(_ bytes: UnsafeBufferPointer<UInt8>, for use: SubjectUse) -> String? {
        if bytes.isEmpty { return "a subject must not be empty" }
        // Fast path: most bytes are letters, digits, `-` or `_`; one comparison (and one shift for
        // bytes below 64) each. Only a special byte or the end of a token is looked at closely.
        var tokenStart = 0
        var index = 0
        let count = bytes.count
        while index < count {
            let byte = bytes[index]
            let special = byte < 64 ? (specialBelow64 >> UInt64(byte)) & 1 != 0 : byte == 0x7F
            if special {
                if byte == UInt8(ascii: ".") {
                    if let rule = tokenViolation(bytes, start: tokenStart, end: index, for: use) { return rule }
                    tokenStart = index + 1
                } else if byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") {
                    return "a subject must not contain whitespace"
                } else if byte < 0x20 || byte == 0x7F {
                    return "a subject must not contain control characters"
                }
            }
            index += 1
        }
        return tokenViolation(bytes, start: tokenStart, end: count, for: use)
    }

    /// The rule the token `bytes[start..<end]` breaks (`end` is a `.` or the end of the subject).
    @usableFromInline
    static func tokenViolation(_ bytes: UnsafeBufferPointer<UInt8>, start: Int, end: Int, for use: SubjectUse) -> String? {
        let length = end - start
        if length == 0 {
            if end == 0 { return "a subject must not start with '.'" }
            if end == bytes.count { return "a subject must not end with '.'" }
            return "a subject must not contain empty tokens ('..')"
        }
        if length == 1 {
            let token = bytes[start]
            if token == UInt8(ascii: "*") && use == .publish {
                return "wildcard '*' is not allowed in a subject to publish to"
            }
            if token == UInt8(ascii: ">") {
                if use == .publish { return "wildcard '>' is not allowed in a subject to publish to" }
                if end != bytes.count { return "wildcard '>' must be the last token" }
            }
        }
        return nil
    }

    /// Checks a queue group name: not empty, no whitespace, no control characters.
    public static func validateQueueGroup(_ name: String) throws(NATSError) {
        if name.isEmpty { throw NATSError(.invalidQueueGroup, "a queue group name must not be empty") }
        for byte in name.utf8 where byte <= 0x20 || byte == 0x7F {
            throw NATSError(
                .invalidQueueGroup,
                "invalid queue group '\(printable(name))': it must not contain whitespace or control characters")
        }
    }

    /// Checks a header name: printable ASCII (33...126) without `:`, not empty.
    public static func validateHeaderName(_ name: String) throws(NATSError) {
        if name.isEmpty { throw NATSError(.invalidHeader, "a header name must not be empty") }
        for byte in name.utf8 {
            if byte == UInt8(ascii: ":") {
                throw NATSError(.invalidHeader, "invalid header name '\(printable(name))': it must not contain ':'")
            }
            if byte < 33 || byte > 126 {
                throw NATSError(
                    .invalidHeader,
                    "invalid header name '\(printable(name))': only printable ASCII without spaces is allowed")
            }
        }
    }

    /// Checks a header value: no CR, LF or NUL (they would end or corrupt the header block).
    public static func validateHeaderValue(_ value: String, name: String) throws(NATSError) {
        for byte in value.utf8 where byte == 0x0D || byte == 0x0A || byte == 0x00 {
            throw NATSError(
                .invalidHeader,
                "invalid value for header '\(printable(name))': it must not contain CR, LF or NUL (value '\(printable(value))')")
        }
    }

    /// Checks every name and value of a header set.
    ///
    /// Walks the stored fields' UTF-8 bytes directly (no tuple iterator, no per-byte view
    /// indexing); the per-field checks above only run to build the error when a rule is broken.
    public static func validateHeaders(_ headers: NATSHeaders) throws(NATSError) {
        for field in headers.fields {
            var name = field.name
            let nameValid = name.withUTF8 { bytes in
                guard !bytes.isEmpty else { return false }
                for byte in bytes where byte < 33 || byte > 126 || byte == UInt8(ascii: ":") { return false }
                return true
            }
            if !nameValid { try validateHeaderName(field.name) }
            var value = field.value
            if value.withUTF8({ containsLineBreakOrNul(UnsafeRawBufferPointer($0)) }) {
                try validateHeaderValue(field.value, name: field.name)
            }
        }
    }

    /// Whether `bytes` holds a CR, LF or NUL byte. Reads eight bytes at a time: every publish
    /// with headers checks every value (a CloudEvents message carries about 400 bytes of them).
    static func containsLineBreakOrNul(_ bytes: UnsafeRawBufferPointer) -> Bool {
        let ones: UInt64 = 0x0101_0101_0101_0101
        // Nonzero exactly when some byte of `word` is zero.
        func hasZeroByte(_ word: UInt64) -> Bool { (word &- ones) & ~word & (ones &* 0x80) != 0 }
        var index = 0
        while index + 8 <= bytes.count {
            let word = bytes.loadUnaligned(fromByteOffset: index, as: UInt64.self)
            if hasZeroByte(word) || hasZeroByte(word ^ (ones &* 0x0D)) || hasZeroByte(word ^ (ones &* 0x0A)) { return true }
            index += 8
        }
        while index < bytes.count {
            let byte = bytes[index]
            if byte == 0x0D || byte == 0x0A || byte == 0x00 { return true }
            index += 1
        }
        return false
    }

    /// Renders a user value for an error message: control characters become visible escapes and
    /// very long values are shortened, so a message stays one readable line.
    @usableFromInline
    static func printable(_ value: String) -> String {
        var result = ""
        for scalar in value.unicodeScalars.prefix(200) {
            // C0, DEL and C1 controls, and the bidirectional overrides and isolates that reorder
            // what follows them: an error message quoting bad input stays one readable line.
            if scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value) || (0x202A...0x202E).contains(scalar.value)
                || (0x2066...0x2069).contains(scalar.value)
            {
                result += scalar.escaped(asASCII: true)
            } else {
                result.unicodeScalars.append(scalar)
            }
        }
        if value.unicodeScalars.count > 200 { result += "…" }
        return result
    }
}

// MARK: - Control lines

extension NATSValidation {
    /// nats-server's default `max_control_line` (`MAX_CONTROL_LINE_SIZE` in server/const.go): the
    /// longest control line it accepts from a client. The server does not announce its limit
    /// (its INFO carries `max_payload`, not this), so the client uses
    /// ``NATSConnectionConfiguration/maxControlLine``, whose default this is.
    public static let defaultMaxControlLine = 4096

    /// The smallest ``NATSConnectionConfiguration/maxControlLine`` the client accepts: its own
    /// request inboxes and JetStream API subjects need room.
    public static let minimumMaxControlLine = 256

    /// The room a request's reply inbox takes in its `PUB` line, counted at its largest: the
    /// client's inboxes are `_INBOX.` and 22 characters, then `.` and a token (at most 20 digits
    /// for the module's own; cnats's blocking request uses a shorter one).
    public static let requestInboxReserve = 50

    /// The room a subscription id takes in a `SUB` line, counted at its largest (cnats numbers
    /// subscriptions from 1 with a 64-bit counter, so 20 digits).
    public static let subscriptionIDReserve = 20

    /// The number of decimal digits of a non-negative value.
    @inlinable
    public static func decimalDigits(_ value: Int) -> Int {
        var digits = 1
        var rest = value / 10
        while rest > 0 {
            digits += 1
            rest /= 10
        }
        return digits
    }

    /// The length of a `PUB` or `HPUB` control line as nats-server measures it against
    /// `max_control_line`: the arguments between the verb and the CRLF,
    /// `<subject> [reply] [header size] <total size>` (server/parser.go,
    /// `overMaxControlLineLimit`).
    ///
    /// - Parameters:
    ///   - subjectLength: The subject's length in UTF-8 bytes.
    ///   - replyLength: The reply subject's length, or `nil` without one.
    ///   - headerLength: The header block's length for an `HPUB`, or `nil` for a `PUB`.
    ///   - payloadLength: The payload's length (the total size adds the header block).
    public static func publishControlLineLength(
        subjectLength: Int, replyLength: Int?, headerLength: Int?, payloadLength: Int
    ) -> Int {
        var length = subjectLength
        if let replyLength { length += 1 + replyLength }
        if let headerLength { length += 1 + decimalDigits(headerLength) }
        return length + 1 + decimalDigits((headerLength ?? 0) + payloadLength)
    }

    /// The length of a `SUB` control line as nats-server measures it: `<subject> [queue] <sid>`,
    /// with the id counted at ``subscriptionIDReserve`` digits.
    public static func subscribeControlLineLength(subjectLength: Int, queueGroupLength: Int?) -> Int {
        subjectLength + (queueGroupLength.map { 1 + $0 } ?? 0) + 1 + subscriptionIDReserve
    }

    /// Checks that a publish's control line fits the server's `max_control_line` and throws
    /// ``NATSError/Code/invalidSubject`` naming the subject's length, the line's length and the
    /// limit if it does not. A longer line would make the server answer
    /// `-ERR 'maximum control line exceeded'` and close the connection.
    ///
    /// - Parameters:
    ///   - subject: The subject to publish to.
    ///   - replyTo: The reply subject, if any (only used to name it in the error).
    ///   - replyLength: The reply subject's length; defaults to `replyTo`'s. Pass it for reply
    ///     subjects the client builds later (a request's inbox).
    ///   - headerLength: The header block's length for a message with headers.
    ///   - payloadLength: The payload's length.
    ///   - limit: The server's `max_control_line` (``NATSConnectionConfiguration/maxControlLine``).
    public static func validatePublishControlLine(
        subject: String,
        replyTo: String? = nil,
        replyLength: Int? = nil,
        headerLength: Int? = nil,
        payloadLength: Int,
        limit: Int
    ) throws(NATSError) {
        let replyLength = replyLength ?? replyTo?.utf8.count
        let subjectLength = subject.utf8.count
        let length = publishControlLineLength(
            subjectLength: subjectLength, replyLength: replyLength, headerLength: headerLength, payloadLength: payloadLength)
        guard length > limit else { return }
        var parts = "the subject"
        if let replyTo {
            parts += ", the reply subject '\(printable(replyTo))' (\(replyTo.utf8.count) bytes)"
        } else if let replyLength {
            parts += ", the reply inbox (\(replyLength) bytes)"
        }
        parts += " and the sizes"
        throw NATSError(
            .invalidSubject,
            "invalid subject '\(printable(subject))': it is \(subjectLength) bytes, and the \(headerLength == nil ? "PUB" : "HPUB") "
                + "control line (\(parts)) would be \(length) bytes; the server accepts at most \(limit) bytes "
                + "(max_control_line, configured as NATSConnectionConfiguration.maxControlLine) and closes the "
                + "connection on a longer line")
    }

    /// Checks that a subscription's control line fits the server's `max_control_line` and throws
    /// ``NATSError/Code/invalidSubject`` naming the subject's length, the line's length and the
    /// limit if it does not.
    public static func validateSubscribeControlLine(subject: String, queueGroup: String?, limit: Int) throws(NATSError) {
        let subjectLength = subject.utf8.count
        let length = subscribeControlLineLength(subjectLength: subjectLength, queueGroupLength: queueGroup?.utf8.count)
        guard length > limit else { return }
        let queue = queueGroup.map { ", the queue group '\(printable($0))' (\($0.utf8.count) bytes)" } ?? ""
        throw NATSError(
            .invalidSubject,
            "invalid subject '\(printable(subject))': it is \(subjectLength) bytes, and the SUB control line (the subject\(queue) "
                + "and the subscription id, counted at \(subscriptionIDReserve) digits) would be \(length) bytes; the server "
                + "accepts at most \(limit) bytes (max_control_line, configured as NATSConnectionConfiguration.maxControlLine) "
                + "and closes the connection on a longer line")
    }
}

/// Word-at-a-time checks of UTF-8 bytes for the validation every publish runs.
///
/// Walking a `String.UTF8View` byte by byte costs about a dozen instructions a byte (index arithmetic and
/// bounds checks); an event's attributes are 100 bytes or more, which made validation alone ~400 ns per
/// publish. These functions read eight bytes at a time from the string's contiguous storage and answer
/// only "is everything allowed"; the callers fall back to their byte-by-byte loop to say what is wrong,
/// so error messages are unchanged.
///
/// The tests for a byte value use the classic bit tricks, exact as yes/no answers:
/// `(w - 0x01…01) & ~w & 0x80…80` is non-zero iff some byte of `w` is zero, and with `n × 0x01…01`
/// instead of `0x01…01` (n ≤ 128) iff some byte is below `n`.
/// Package-wide: the CloudEvents binding's percent-encoding scan uses the same word tests.
package enum ByteScan {
    private static let ones: UInt64 = 0x0101_0101_0101_0101
    /// The high bit of every byte: a word with none of them set holds only ASCII.
    package static let highBits: UInt64 = 0x8080_8080_8080_8080

    @inline(__always)
    private static func hasZeroByte(_ word: UInt64) -> Bool {
        (word &- ones) & ~word & highBits != 0
    }

    /// Whether a byte of `word` equals `byte`.
    @inline(__always)
    package static func hasByte(_ word: UInt64, equalTo byte: UInt8) -> Bool {
        hasZeroByte(word ^ (ones &* UInt64(byte)))
    }

    /// Whether a byte of `word` is below `limit` (at most 128).
    @inline(__always)
    package static func hasByte(_ word: UInt64, below limit: UInt8) -> Bool {
        (word &- ones &* UInt64(limit)) & ~word & highBits != 0
    }

    /// `true` when `value` is `nil` or none of its bytes is CR, LF or NUL. Inlined with the byte loop, so
    /// that a caller reading the string from a class's field needs no retain around an opaque call.
    @inline(__always)
    static func isHeaderSafe(_ value: String?) -> Bool {
        guard let value else { return true }
        return value.withContiguousUTF8IfAvailable { isHeaderSafe($0) } ?? false
    }

    /// `true` when `value` is a valid literal subject (see the overload on bytes).
    @inline(__always)
    static func isLiteralSubject(_ value: String) -> Bool {
        value.withContiguousUTF8IfAvailable { isLiteralSubject($0) } ?? false
    }

    /// `true` when no byte is CR, LF or NUL (a header value's rule).
    @inline(__always)
    static func isHeaderSafe(_ bytes: UnsafeRawBufferPointer) -> Bool {
        let count = bytes.count
        var index = 0
        while index &+ 8 <= count {
            let word = bytes.loadUnaligned(fromByteOffset: index, as: UInt64.self)
            if hasZeroByte(word) || hasByte(word, equalTo: 0x0A) || hasByte(word, equalTo: 0x0D) {
                return false
            }
            index &+= 8
        }
        while index < count {
            let byte = bytes[index]
            if byte == 0 || byte == 0x0A || byte == 0x0D { return false }
            index &+= 1
        }
        return true
    }

    /// `true` when the bytes are a valid literal subject: not empty, no byte at or below space, no DEL, no
    /// `*` or `>`, and no empty token (no leading or trailing `.`, no `..`).
    @inline(__always)
    static func isLiteralSubject(_ bytes: UnsafeRawBufferPointer) -> Bool {
        let count = bytes.count
        guard count > 0, bytes[0] != SubjectRules.dot, bytes[count &- 1] != SubjectRules.dot else { return false }
        let dots = ones &* UInt64(SubjectRules.dot)
        var index = 0
        // Each step checks the word at `index` and, for "..", the same word against the one a byte later:
        // a zero byte in (w ^ dots) | (next ^ dots) is a dot followed by a dot.
        while index &+ 9 <= count {
            let word = bytes.loadUnaligned(fromByteOffset: index, as: UInt64.self)
            let next = bytes.loadUnaligned(fromByteOffset: index &+ 1, as: UInt64.self)
            if hasByte(word, below: 0x21) || hasByte(word, equalTo: 0x7F) || hasByte(word, equalTo: SubjectRules.star)
                || hasByte(word, equalTo: SubjectRules.greaterThan) || hasZeroByte((word ^ dots) | (next ^ dots))
            {
                return false
            }
            index &+= 8
        }
        var previous: UInt8 = index > 0 ? bytes[index &- 1] : 0
        while index < count {
            let byte = bytes[index]
            if byte <= 0x20 || byte == 0x7F || byte == SubjectRules.star || byte == SubjectRules.greaterThan {
                return false
            }
            if byte == SubjectRules.dot && previous == SubjectRules.dot { return false }
            previous = byte
            index &+= 1
        }
        return true
    }
}

extension String {
    /// Runs `body` over the string's UTF-8 bytes when they are contiguous (native and small strings
    /// always are), without copying; `nil` otherwise (a bridged string on Darwin).
    @inline(__always)
    func withContiguousUTF8IfAvailable<Result>(_ body: (UnsafeRawBufferPointer) -> Result) -> Result? {
        utf8.withContiguousStorageIfAvailable { body(UnsafeRawBufferPointer($0)) }
    }
}

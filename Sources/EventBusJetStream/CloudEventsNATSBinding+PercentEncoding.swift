import EventBus

/// Percent-encoding of CloudEvents header values, as section 3.1.3.2 ("NATS Header Values") of the
/// CloudEvents NATS protocol binding prescribes.
///
/// Writing: every UTF-8 byte of space (U+0020), double quote (U+0022), percent (U+0025), and of any
/// character outside printable ASCII (U+0021-U+007E: control characters, DEL, everything non-ASCII)
/// becomes `%XY`, upper-case hex. `/shop eu/zürich` is written `/shop%20eu/z%C3%BCrich`.
///
/// Reading: double-quoted strings are unescaped first (RFC 7230 section 3.2.6: the quotes go,
/// `\x` becomes `x`; older senders quoted instead of encoding), then one round of percent-decoding
/// (lower-case hex accepted, needlessly encoded characters accepted). A value that cannot be decoded
/// (a `%` without two hex digits after it such as `%zz` or a truncated `%4`, an unterminated quote,
/// or bytes that are not valid UTF-8 once decoded, such as the overlong `%C0%A0`, which the binding
/// says must be rejected) is kept exactly as received: nothing is guessed, and a plain client that
/// never encoded (`100% done`) still reads as it wrote.
///
/// Both directions first scan the bytes (eight at a time) and return the value as it is, without
/// allocating, when there is nothing to encode or decode: the bus's usual attributes (`ce-id` a UUID,
/// `ce-type` a dotted name, `ce-source` a path) take only the scan.
extension CloudEventsNATSBinding {
    private static let percent = UInt8(ascii: "%")
    private static let quote = UInt8(ascii: "\"")
    private static let backslash = UInt8(ascii: "\\")

    /// Whether the binding requires `byte` to be percent-encoded.
    @inline(__always)
    static func mustEncode(_ byte: UInt8) -> Bool {
        byte <= 0x20 || byte >= 0x7F || byte == quote || byte == percent
    }

    /// Whether any byte of the value must be percent-encoded.
    static func needsPercentEncoding(_ bytes: UnsafeRawBufferPointer) -> Bool {
        let count = bytes.count
        var index = 0
        while index &+ 8 <= count {
            let word = bytes.loadUnaligned(fromByteOffset: index, as: UInt64.self)
            if word & ByteScan.highBits != 0 || ByteScan.hasByte(word, below: 0x21) || ByteScan.hasByte(word, equalTo: 0x7F)
                || ByteScan.hasByte(word, equalTo: quote) || ByteScan.hasByte(word, equalTo: percent)
            {
                return true
            }
            index &+= 8
        }
        while index < count {
            if mustEncode(bytes[index]) { return true }
            index &+= 1
        }
        return false
    }

    /// Whether a received value has anything to decode: a `%` or a double quote.
    static func needsPercentDecoding(_ bytes: UnsafeRawBufferPointer) -> Bool {
        let count = bytes.count
        var index = 0
        while index &+ 8 <= count {
            let word = bytes.loadUnaligned(fromByteOffset: index, as: UInt64.self)
            if ByteScan.hasByte(word, equalTo: percent) || ByteScan.hasByte(word, equalTo: quote) { return true }
            index &+= 8
        }
        while index < count {
            if bytes[index] == percent || bytes[index] == quote { return true }
            index &+= 1
        }
        return false
    }

    /// The value as a `ce-*` header carries it: `value` itself (no copy) when nothing needs encoding.
    public static func percentEncoded(_ value: String) -> String {
        var value = value
        // `withUTF8` copies only a string that is not contiguous UTF-8 already (bridged on Darwin).
        let encoded: String? = value.withUTF8 { utf8 in
            let bytes = UnsafeRawBufferPointer(utf8)
            guard needsPercentEncoding(bytes) else { return nil }
            var escaped = 0
            for byte in bytes where mustEncode(byte) { escaped &+= 1 }
            return String(unsafeUninitializedCapacity: bytes.count + 2 * escaped) { output in
                let hex: StaticString = "0123456789ABCDEF"
                var written = 0
                for byte in bytes {
                    if mustEncode(byte) {
                        output[written] = percent
                        output[written + 1] = hex.utf8Start[Int(byte >> 4)]
                        output[written + 2] = hex.utf8Start[Int(byte & 0x0F)]
                        written += 3
                    } else {
                        output[written] = byte
                        written += 1
                    }
                }
                return written
            }
        }
        return encoded ?? value
    }

    /// A received `ce-*` header value, decoded (see the type's notes); `value` itself when there is
    /// nothing to decode or when it cannot be decoded.
    public static func percentDecoded(_ value: String) -> String {
        var value = value
        let decoded: String? = value.withUTF8 { utf8 in
            let bytes = UnsafeRawBufferPointer(utf8)
            return needsPercentDecoding(bytes) ? percentDecoding(bytes) : nil
        }
        return decoded ?? value
    }

    /// ``percentDecoded(_:)`` on a value's bytes read in place: one string, made from the bytes
    /// directly when there is nothing to decode.
    static func percentDecodedText(_ bytes: UnsafeRawBufferPointer) -> String {
        if needsPercentDecoding(bytes), let decoded = percentDecoding(bytes) { return decoded }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Unquotes and percent-decodes; `nil` when the value is malformed (the caller keeps it raw).
    static func percentDecoding(_ bytes: UnsafeRawBufferPointer) -> String? {
        // Quoted strings are unescaped first, into a buffer only when there is a quote (the bus and
        // current SDKs never quote: a quote is always encoded).
        var unquoted: [UInt8]?
        if bytes.contains(quote) {
            var text = [UInt8]()
            text.reserveCapacity(bytes.count)
            var quoted = false
            var index = 0
            while index < bytes.count {
                let byte = bytes[index]
                index += 1
                if byte == quote {
                    quoted.toggle()
                } else if quoted && byte == backslash {
                    guard index < bytes.count else { return nil }
                    text.append(bytes[index])
                    index += 1
                } else {
                    text.append(byte)
                }
            }
            if quoted { return nil }
            unquoted = text
        }
        func hexValue(_ byte: UInt8) -> UInt8? {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
            case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
            case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
            default: nil
            }
        }
        // One round of percent-decoding over the unquoted text.
        func decode(_ text: some RandomAccessCollection<UInt8>) -> [UInt8]? {
            var output = [UInt8]()
            output.reserveCapacity(text.count)
            var position = text.startIndex
            while position != text.endIndex {
                let byte = text[position]
                position = text.index(after: position)
                guard byte == percent else {
                    output.append(byte)
                    continue
                }
                guard position != text.endIndex, let high = hexValue(text[position]) else { return nil }
                position = text.index(after: position)
                guard position != text.endIndex, let low = hexValue(text[position]) else { return nil }
                position = text.index(after: position)
                output.append(high << 4 | low)
            }
            return output
        }
        guard let output = if let unquoted { decode(unquoted) } else { decode(bytes) } else { return nil }
        // The binding: "encoded byte sequences which are invalid in UTF-8 MUST be rejected".
        return String(validating: output, as: UTF8.self)
    }
}

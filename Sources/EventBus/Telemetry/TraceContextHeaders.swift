/// Strict checks of W3C trace context values (`traceparent`, `tracestate`), so that a malformed header is
/// dropped at the bus's edge instead of being passed on to the next service.
///
/// `traceparent` is accepted only as version `00`: `00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`,
/// lowercase, neither id all zeros (W3C Trace Context, section 3.2). A future version is not guessed at:
/// this bus writes and reads version 00 only.
package enum TraceContextHeaders {
    /// Whether `value` is a valid version-00 `traceparent`.
    package static func isValidTraceParent(_ value: String) -> Bool {
        var value = value
        return value.withUTF8 { bytes in
            guard bytes.count == 55, bytes[0] == UInt8(ascii: "0"), bytes[1] == UInt8(ascii: "0"),
                bytes[2] == UInt8(ascii: "-"), bytes[35] == UInt8(ascii: "-"), bytes[52] == UInt8(ascii: "-")
            else { return false }
            return isLowerHex(bytes, 3..<35, nonZero: true) && isLowerHex(bytes, 36..<52, nonZero: true)
                && isLowerHex(bytes, 53..<55, nonZero: false)
        }
    }

    /// Whether `value` is a plausible `tracestate`: at most 32 comma-separated `key=value` members of
    /// printable ASCII, 512 bytes at most. Only the shape is checked; the vendor's keys are its own.
    package static func isValidTraceState(_ value: String) -> Bool {
        var value = value
        return value.withUTF8 { bytes in
            guard bytes.count <= 512 else { return false }
            var members = 0
            var sawEquals = false
            var memberLength = 0
            for byte in bytes {
                switch byte {
                case UInt8(ascii: ","):
                    if memberLength > 0 {
                        guard sawEquals else { return false }
                        members += 1
                    }
                    sawEquals = false
                    memberLength = 0
                case UInt8(ascii: "="):
                    sawEquals = true
                    memberLength += 1
                case 0x20...0x7E:
                    memberLength += 1
                default:
                    return false
                }
            }
            if memberLength > 0 {
                guard sawEquals else { return false }
                members += 1
            }
            return members <= 32
        }
    }

    /// `event` without trace context that fails the checks, and the reason, or `nil` when it is fine
    /// (the common case, including an event without trace context: no copy then).
    package static func droppingInvalid(_ event: Event) -> (event: Event, reason: String)? {
        guard let traceParent = event.traceParent else {
            // A tracestate without a traceparent means nothing (W3C: ignore it).
            guard event.traceState != nil else { return nil }
            var copy = event
            copy.traceState = nil
            return (copy, "tracestate without traceparent")
        }
        if !isValidTraceParent(traceParent) {
            var copy = event
            copy.traceParent = nil
            copy.traceState = nil
            return (copy, "traceparent is not W3C version 00 (00-<32 hex>-<16 hex>-<2 hex>, lowercase, ids not all zero)")
        }
        if let traceState = event.traceState, !isValidTraceState(traceState) {
            var copy = event
            copy.traceState = nil
            return (copy, "tracestate is not a list of at most 32 key=value members of printable ASCII within 512 bytes")
        }
        return nil
    }

    private static func isLowerHex(_ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>, nonZero: Bool) -> Bool {
        var anyNonZero = false
        for index in range {
            let byte = bytes[index]
            switch byte {
            case UInt8(ascii: "0"): break
            case UInt8(ascii: "1")...UInt8(ascii: "9"), UInt8(ascii: "a")...UInt8(ascii: "f"): anyNonZero = true
            default: return false
            }
        }
        return anyNonZero || !nonZero
    }
}

/// Text that came from outside the process (an event's attributes and payload, names and error
/// messages a server sent), made safe to print on an operator's terminal.
///
/// A terminal acts on control characters instead of showing them: ESC and the C1 CSI (U+009B)
/// start sequences that move the cursor, recolour, retitle the window or rewrite what is already
/// on screen, BEL rings, CR returns to the start of the line to overwrite it. Bidirectional
/// overrides and isolates reorder what follows them, so a line can read differently from what it
/// holds. Whoever can publish an event would otherwise control what an operator sees.
package enum TerminalText {
    /// `text` with every scalar a terminal would act on (see ``needsEscaping(_:)``) shown as a
    /// visible escape: `\n`, `\r`, `\t`, and `\u{1B}`-style hexadecimal for the rest. Everything
    /// else, including non-ASCII letters and emoji, is kept. The result is one line.
    ///
    /// A backslash already in `text` is kept as it is, so the escapes are readable, not
    /// reversible: the point is that nothing reaches the terminal as a control.
    package static func escaped(_ text: String) -> String {
        // Most text is printable ASCII: answered from the bytes, returned without a copy.
        guard text.utf8.contains(where: { $0 < 0x20 || $0 >= 0x7F }),
            text.unicodeScalars.contains(where: needsEscaping)
        else { return text }
        var result = ""
        result.reserveCapacity(text.utf8.count + 16)
        for scalar in text.unicodeScalars {
            guard needsEscaping(scalar) else {
                result.unicodeScalars.append(scalar)
                continue
            }
            switch scalar {
            case "\n": result += "\\n"
            case "\r": result += "\\r"
            case "\t": result += "\\t"
            default: result += "\\u{\(String(scalar.value, radix: 16, uppercase: true))}"
            }
        }
        return result
    }

    /// Whether a terminal could act on `scalar` rather than show it: C0 controls (U+0000-U+001F,
    /// also newline, return and tab, which would break a one-line field), DEL (U+007F), C1
    /// controls (U+0080-U+009F), the bidirectional marks, embeddings, overrides and isolates
    /// (U+061C, U+200E, U+200F, U+202A-U+202E, U+2066-U+2069), and the line and paragraph
    /// separators (U+2028, U+2029).
    package static func needsEscaping(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x00...0x1F, 0x7F...0x9F: true
        case 0x061C, 0x200E, 0x200F, 0x202A...0x202E, 0x2066...0x2069: true
        case 0x2028, 0x2029: true
        default: false
        }
    }
}

import Testing

@testable import EventBus

@Suite("Text escaped for the terminal")
struct TerminalTextTests {
    @Test(arguments: [
        ("\u{1B}[2J\u{1B}[H", #"\u{1B}[2J\u{1B}[H"#),  // clear the screen, cursor home
        ("\u{1B}]0;owned\u{07}", #"\u{1B}]0;owned\u{7}"#),  // set the window title, ended by BEL
        ("\u{9B}31m", #"\u{9B}31m"#),  // C1 CSI: a one-character ESC [
        ("a\u{85}b", #"a\u{85}b"#),  // C1 NEL, a newline to some terminals
        ("line\nnext\r\tend", #"line\nnext\r\tend"#),
        ("nul\u{0}del\u{7F}", #"nul\u{0}del\u{7F}"#),
        ("user\u{202E}gnp.exe", #"user\u{202E}gnp.exe"#),  // right-to-left override
        ("\u{2066}\u{2067}\u{2068}\u{2069}\u{202A}\u{202B}\u{202C}\u{202D}", #"\u{2066}\u{2067}\u{2068}\u{2069}\u{202A}\u{202B}\u{202C}\u{202D}"#),
        ("\u{200E}\u{200F}\u{61C}\u{2028}\u{2029}", #"\u{200E}\u{200F}\u{61C}\u{2028}\u{2029}"#),
        ("\r\n", #"\r\n"#),  // one Character, two scalars: both shown
    ])
    func controlsAreShownAsEscapes(input: String, shown: String) {
        let escaped = TerminalText.escaped(input)
        #expect(escaped == shown)
        #expect(!escaped.unicodeScalars.contains(where: TerminalText.needsEscaping))
    }

    @Test(arguments: ["orders.created", "zürich", "Ünïcödé ✓", "🇨🇭 👩🏽‍💻 emoji", "日本語のテキスト", "שלום", "", #"a\u{1B} already escaped text"#])
    func printableTextIsKept(text: String) {
        #expect(TerminalText.escaped(text) == text)
    }

    @Test func escapesEveryControlAndNothingElseBelowU00A0() {
        for value in UInt32(0)..<0xA0 {
            let scalar = Unicode.Scalar(value)!
            let escaped = TerminalText.escaped(String(Character(scalar)))
            if value < 0x20 || (0x7F...0x9F).contains(value) {
                #expect(escaped.hasPrefix("\\"), "U+\(String(value, radix: 16)) shown as \(escaped)")
                #expect(escaped.unicodeScalars.allSatisfy { $0.isASCII && $0.value >= 0x20 && $0.value < 0x7F })
            } else {
                #expect(escaped == String(Character(scalar)))
            }
        }
    }

    @Test func mixedTextKeepsItsPrintableParts() {
        #expect(TerminalText.escaped("zürich\u{1B}[31m🇨🇭") == #"zürich\u{1B}[31m🇨🇭"#)
    }
}

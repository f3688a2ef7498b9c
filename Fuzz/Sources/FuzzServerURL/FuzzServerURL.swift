import FuzzSupport
import NATS

/// `NATSServerURL(_:)`, `NATSServerURL.parseList(_:)` and `NATSServerURL.redact(_:)` on any text.
///
/// Invariants: a password or token of a URL that parsed (alone or in a list) never shows in
/// `redact` of the text, in the URL's `description` or `dump`; what parsed is within its
/// documented ranges and prints as an address that parses back; one URL parses as a list of
/// itself; `redact` of a list is idempotent; errors are `invalidURL` on one readable line.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzServerURL(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let text = String(decoding: inputBytes(data, size), as: UTF8.self)
    let redacted = NATSServerURL.redact(text)
    invariant(redacted.unicodeScalars.count <= text.unicodeScalars.count + 3 * (text.unicodeScalars.count + 1), "redact grew")

    var single: NATSServerURL?
    do {
        let url = try NATSServerURL(text)
        check(url, in: text, redacted: redacted)
        single = url
    } catch {
        checkError(error)
    }
    do {
        let list = try NATSServerURL.parseList(text)
        invariant(!list.isEmpty, "an empty list parsed")
        // Each entry's secrets are looked for in its own part of the redacted list: a token may
        // well be part of another entry's user.
        // Split by scalar, as the parser does: a comma before a combining mark is one Character.
        let parts = redacted.unicodeScalars.split(separator: ",", omittingEmptySubsequences: false).compactMap {
            part -> String? in
            let scalars = part.drop { isBlank($0) }.reversed().drop { isBlank($0) }.reversed()
            return scalars.isEmpty ? nil : String(String.UnicodeScalarView(scalars))
        }
        invariant(parts.count == list.count, "redact(\(text)) = \(redacted) has \(parts.count) entries, the list \(list.count)")
        for (url, part) in zip(list, parts) { check(url, in: text, redacted: part) }
        // A list keeps its shape when redacted, so redacting again changes nothing. (Text that
        // is no list is masked conservatively; masking that again may mask more, never less.)
        let again = NATSServerURL.redact(redacted)
        invariant(again == redacted, "redact(\(text)) = \(redacted), redacted again \(again)")
        if let single, !text.contains(",") {
            invariant(list == [single], "one URL \(single) parses as the list \(list)")
        }
    } catch {
        checkError(error)
        invariant(single == nil || text.contains(","), "\(text) parses as a URL but not as a list of one")
    }
    return 0
}

func check(_ url: NATSServerURL, in text: String, redacted: String) {
    invariant(NATSServerURL.supportedSchemes.contains(url.scheme), "scheme \(url.scheme)")
    invariant((1...65535).contains(url.port), "port \(url.port)")
    invariant(!url.host.isEmpty, "empty host")
    invariant(url.description == url.debugDescription, "debugDescription differs")
    invariant(isOneReadableLine(url.description), "description is not one line: \(url.description)")
    var dumped = ""
    dump(url, to: &dumped)
    if let password = url.password, !password.isEmpty, password != "***" {
        // The password as it would stand in user info: after a `:`, before the `@`.
        let secret = ":" + password + "@"
        // Unless the same text also stands elsewhere in the input (a user may look like it).
        if occurrences(of: secret, in: text) <= 1 {
            invariant(occurrences(of: secret, in: redacted) == 0, "redact(\(text)) = \(redacted) shows the password")
        }
        invariant(occurrences(of: secret, in: url.description) == 0, "description \(url.description) shows the password")
        invariant(occurrences(of: secret, in: dumped) == 0, "dump shows the password")
    }
    if let user = url.user, url.password == nil, !user.allSatisfy({ $0 == "*" }) {
        // A user without a password is a token: it must not show either.
        if occurrences(of: user + "@", in: text) <= 1 {
            invariant(occurrences(of: user + "@", in: redacted) == 0, "redact(\(text)) = \(redacted) shows the token")
        }
        invariant(occurrences(of: user + "@", in: url.description) == 0, "description \(url.description) shows the token")
        invariant(occurrences(of: user + "@", in: dumped) == 0, "dump shows the token")
    }
    // What the URL prints (credentials redacted) parses again to the same address.
    if let again = try? NATSServerURL(url.description) {
        invariant(again.scheme == url.scheme && again.host == url.host && again.port == url.port,
            "description \(url.description) parses as \(again), not \(url)")
    } else {
        invariant(false, "description \(url.description) of \(url) does not parse")
    }
}

/// How often `needle` stands in `text`, compared scalar by scalar (as the parser reads), overlaps
/// counted.
func occurrences(of needle: String, in text: String) -> Int {
    let needle = Array(needle.unicodeScalars)
    let text = Array(text.unicodeScalars)
    guard !needle.isEmpty, needle.count <= text.count else { return 0 }
    var count = 0
    for start in 0...(text.count - needle.count) where text[start..<(start + needle.count)].elementsEqual(needle) {
        count += 1
    }
    return count
}

/// What the list parser trims around an entry.
func isBlank(_ scalar: Unicode.Scalar) -> Bool {
    scalar.properties.isWhitespace || scalar.value < 0x20 || scalar.value == 0x7F
}

func checkError(_ error: NATSError) {
    invariant(error.code == .invalidURL, "code \(error.code)")
    invariant(isOneReadableLine(error.description), "error is not one line: \(error.description)")
}

@main
enum Main {
    static func main() { runLibFuzzer(fuzzServerURL) }
}

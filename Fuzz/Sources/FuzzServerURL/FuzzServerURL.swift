import FuzzSupport
import NATS

/// `NATSServerURL(_:)` and `NATSServerURL.redact(_:)` on any text.
///
/// Invariants: a password of a URL that parsed never shows in `redact` of the text, in the
/// URL's `description`, or in an error; what parsed is within its documented ranges; `redact`
/// is idempotent; errors are `invalidURL` on one readable line.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzServerURL(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let text = String(decoding: inputBytes(data, size), as: UTF8.self)
    let redacted = NATSServerURL.redact(text)
    invariant(NATSServerURL.redact(redacted) == redacted, "redact is not idempotent: \(redacted)")
    do {
        let url = try NATSServerURL(text)
        invariant(NATSServerURL.supportedSchemes.contains(url.scheme), "scheme \(url.scheme)")
        invariant((1...65535).contains(url.port), "port \(url.port)")
        invariant(!url.host.isEmpty, "empty host")
        invariant(url.user != nil || url.password == nil, "a password without a user")
        invariant(url.description == url.debugDescription, "debugDescription differs")
        invariant(isOneReadableLine(url.description), "description is not one line")
        if let password = url.password, !password.isEmpty, password != "***" {
            // The password as it appears in the URL's user info: after the `:` that ends the
            // user, before the `@` that starts the host.
            let secret = ":" + password + "@"
            invariant(!redacted.contains(secret), "redact(\(text)) = \(redacted) shows the password")
            invariant(!url.description.contains(secret), "description \(url.description) shows the password")
            var dumped = ""
            dump(url, to: &dumped)
            invariant(!dumped.contains(secret), "dump shows the password")
        }
        if let user = url.user, url.password == nil, !user.allSatisfy({ $0 == "*" }) {
            // A user without a password is a token: it must not show either.
            invariant(!redacted.contains(user + "@"), "redact(\(text)) = \(redacted) shows the token")
            invariant(!url.description.contains(user + "@"), "description shows the token")
        }
        // What the URL prints parses again to the same address. ASCII only: the parser works on
        // characters, and a combining mark after a separator makes it another character.
        if url.user == nil, text.utf8.allSatisfy({ $0 < 0x80 }) {
            let again = try? NATSServerURL(url.description)
            invariant(again == url, "description \(url.description) does not parse back to \(url)")
        }
    } catch {
        invariant(error.code == .invalidURL, "code \(error.code)")
        invariant(isOneReadableLine(error.description), "error is not one line: \(error.description)")
    }
    return 0
}

@main
enum Main {
    static func main() { runLibFuzzer(fuzzServerURL) }
}

/// A NATS user credentials file (`.creds`, as `nsc` writes it): a user JWT and the user's NKey
/// seed, each in a block framed by dashed lines:
///
/// ```
/// -----BEGIN NATS USER JWT-----
/// eyJ0eXAiOiJKV1Qi…
/// ------END NATS USER JWT------
///
/// -----BEGIN USER NKEY SEED-----
/// SUAM…
/// ------END USER NKEY SEED------
/// ```
///
/// Parsed and checked before use, so that a wrong file (a bare seed file, a JWT without seed)
/// fails with an error naming the file, and no secret is ever sent to a server as something it
/// is not. Errors never quote the file's content.
package struct NATSCredentials: Sendable {
    /// The user JWT (public; the server verifies it).
    package let jwt: String
    /// The user's seed (secret).
    package let nkey: NATSNKey

    /// Parses the text of a credentials file; `source` names it in errors.
    package init(parsing text: String, source: String) throws(NATSError) {
        func fail(_ rule: String) -> NATSError {
            NATSError(.invalidConfiguration, "\(source) is not a NATS credentials file: \(rule)")
        }
        var jwt: Substring?
        var seed: Substring?
        var pendingBlock: Substring?
        for rawLine in text.split(whereSeparator: { $0 == "\n" || $0 == "\r" }) {
            let line = rawLine.trimmingCharacters(in: " \t")
            if line.isEmpty { continue }
            if line.hasPrefix("---") {
                // A block's opening line names what the next line holds; closing lines are skipped.
                pendingBlock = line.contains("BEGIN") ? line : nil
                continue
            }
            guard let block = pendingBlock else { continue }
            pendingBlock = nil
            if block.contains("JWT"), jwt == nil {
                jwt = line
            } else if block.contains("SEED"), seed == nil {
                seed = line
            }
        }
        guard let jwt else {
            if seed != nil || text.contains("SU") {
                throw fail(
                    "it holds no user JWT ('-----BEGIN NATS USER JWT-----' block); a file with only an NKey seed is "
                        + "for NKey authentication (nkeySeedFile / nkey.seedFile), not for credentials")
            }
            throw fail("it holds no '-----BEGIN NATS USER JWT-----' block")
        }
        let parts = jwt.split(separator: ".", omittingEmptySubsequences: false)
        let base64URL = { (character: Character) in
            character.isASCII && (character.isLetter || character.isNumber || character == "-" || character == "_" || character == "=")
        }
        guard parts.count == 3, parts.allSatisfy({ !$0.isEmpty && $0.allSatisfy(base64URL) }) else {
            throw fail("its user JWT is not three base64url parts separated by '.'")
        }
        guard let seed else { throw fail("it holds no '-----BEGIN USER NKEY SEED-----' block") }
        let nkey = try NATSNKey(seed: seed, source: "the seed in \(source)")
        guard nkey.kind == .user else {
            throw fail("its seed is not a user seed ('SU…')")
        }
        self.jwt = String(jwt)
        self.nkey = nkey
    }
}

extension Substring {
    fileprivate func trimmingCharacters(in set: String) -> Substring {
        var result = self
        while let first = result.first, set.contains(first) { result = result.dropFirst() }
        while let last = result.last, set.contains(last) { result = result.dropLast() }
        return result
    }
}

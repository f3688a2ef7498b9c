import Testing

@testable import NATS

@Suite("Validation before the wire")
struct NATSValidationTests {
    /// Error messages quote bad input: C0, DEL, C1 and bidirectional controls come out escaped.
    @Test func printableEscapesControlsAndBidiOverrides() {
        let shown = NATSValidation.printable("a\u{1B}[31m\u{7F}\u{9B}b\u{202E}c\u{2066}zürich")
        #expect(shown == #"a\u{1B}[31m\u{7F}\u{009B}b\u{202E}c\u{2066}zürich"#)
        #expect(!shown.unicodeScalars.contains { $0.value < 0x20 || (0x7F...0x9F).contains($0.value) || $0.value == 0x202E })
    }

    @Test(arguments: [
        ("", "must not be empty"),
        ("a b", "whitespace"),
        ("a\tb", "whitespace"),
        ("a\u{01}b", "control characters"),
        ("a\u{7F}", "control characters"),
        ("a..b", "empty tokens"),
        (".a", "start with '.'"),
        ("a.", "end with '.'"),
        ("a.*", "wildcard '*'"),
        ("*", "wildcard '*'"),
        ("a.>", "wildcard '>'"),
        (">", "wildcard '>'"),
    ])
    func publishSubjectRules(subject: String, rule: String) {
        let error = #expect(throws: NATSError.self) { try NATSValidation.validateSubject(subject, for: .publish) }
        #expect(error?.code == .invalidSubject)
        #expect(error?.message.contains(rule) == true, "\(error?.message ?? "")")
    }

    @Test(arguments: ["orders", "orders.created", "a.b.c.d", "a*b", "a>b", "ünïcode.sübject", "$JS.API.INFO", "_INBOX.x"])
    func validPublishSubjects(subject: String) throws {
        try NATSValidation.validateSubject(subject, for: .publish)
    }

    @Test(arguments: ["*", ">", "a.*", "a.>", "*.b.>", "a.*.c"])
    func wildcardsAllowedWhenSubscribing(subject: String) throws {
        try NATSValidation.validateSubject(subject, for: .subscribe)
    }

    @Test(arguments: [("a.>.b", "must be the last token"), ("a..b", "empty tokens"), ("a. b", "whitespace"), ("", "empty")])
    func subscribeSubjectRules(subject: String, rule: String) {
        let error = #expect(throws: NATSError.self) { try NATSValidation.validateSubject(subject, for: .subscribe) }
        #expect(error?.message.contains(rule) == true, "\(error?.message ?? "")")
    }

    @Test func errorNamesTheSubjectWithControlCharactersVisible() {
        let error = #expect(throws: NATSError.self) { try NATSValidation.validateSubject("bad\r\nsubject", for: .publish) }
        #expect(error?.message.contains("bad\\r\\nsubject") == true, "\(error?.message ?? "")")
    }

    @Test(arguments: ["", "a b", "a\tb", "a\nb"])
    func queueGroupRules(name: String) {
        let error = #expect(throws: NATSError.self) { try NATSValidation.validateQueueGroup(name) }
        #expect(error?.code == .invalidQueueGroup)
    }

    @Test(arguments: [("", "empty"), ("a:b", "':'"), ("a b", "printable ASCII"), ("ümlaut", "printable ASCII"), ("a\rb", "printable ASCII")])
    func headerNameRules(name: String, rule: String) {
        let error = #expect(throws: NATSError.self) { try NATSValidation.validateHeaderName(name) }
        #expect(error?.code == .invalidHeader)
        #expect(error?.message.contains(rule) == true, "\(error?.message ?? "")")
    }

    @Test(arguments: ["a\rb", "a\nb", "a\u{0}b"])
    func headerValueRules(value: String) {
        let error = #expect(throws: NATSError.self) { try NATSValidation.validateHeaderValue(value, name: "X-Key") }
        #expect(error?.code == .invalidHeader)
        #expect(error?.message.contains("X-Key") == true)
    }

    /// The eight-bytes-at-a-time scan for CR, LF and NUL finds each of them at every position of
    /// values of every length up to 40 (whole words and the tail), and nothing in values made of
    /// every other byte, UTF-8 continuation bytes and near misses (0x0B, 0x0C, 0x0E, 0x8D) included.
    @Test func headerValueScanFindsLineBreaksAndNulAnywhereAndNothingElse() {
        let others = (0...255).map(UInt8.init).filter { $0 != 0x0D && $0 != 0x0A && $0 != 0x00 }
        for length in 1...40 {
            let clean = (0..<length).map { others[($0 * 7 + length) % others.count] }
            #expect(!clean.withUnsafeBytes { NATSValidation.containsLineBreakOrNul($0) }, "\(clean)")
            for position in 0..<length {
                for forbidden: UInt8 in [0x0D, 0x0A, 0x00] {
                    var value = clean
                    value[position] = forbidden
                    #expect(value.withUnsafeBytes { NATSValidation.containsLineBreakOrNul($0) }, "\(forbidden) at \(position) of \(length)")
                }
            }
        }
        var all = others
        all += Array(repeating: 0x80, count: 9)
        #expect(!all.withUnsafeBytes { NATSValidation.containsLineBreakOrNul($0) })
        #expect(![UInt8]().withUnsafeBytes { NATSValidation.containsLineBreakOrNul($0) })
        // Through the public check: a value with a line break past the first word fails.
        var headers = NATSHeaders()
        headers["X-Long"] = "0123456789abcdef0123\n"
        #expect(throws: NATSError.self) { try NATSValidation.validateHeaders(headers) }
        headers["X-Long"] = "0123456789abcdef0123 ünïcode"
        #expect(throws: Never.self) { try NATSValidation.validateHeaders(headers) }
    }

    @Test func headerValueErrorKeepsAControlCharacterInTheNameVisible() {
        let error = #expect(throws: NATSError.self) { try NATSValidation.validateHeaderValue("a\nb", name: "X\u{0}Key") }
        #expect(error?.message.contains(#"X\0Key"#) == true, "\(error?.message ?? "")")
        #expect(error?.message.unicodeScalars.allSatisfy { $0.value >= 0x20 } == true)
    }

    @Test func headerValuesMayHoldUnicodeAndColons() throws {
        try NATSValidation.validateHeaders(["X-Trace": "a:b:c", "X-Name": "Zoë ✓"])
    }
}

@Suite("Server URLs")
struct NATSServerURLTests {
    @Test func parsesForms() throws {
        let plain = try NATSServerURL("nats://127.0.0.1:4333")
        #expect(plain.scheme == "nats" && plain.host == "127.0.0.1" && plain.port == 4333)
        let bare = try NATSServerURL("example.com")
        #expect(bare.port == 4222 && bare.scheme == "nats")
        let tls = try NATSServerURL("tls://host:4443")
        #expect(tls.scheme == "tls")
        let v6 = try NATSServerURL("nats://[::1]:4222")
        #expect(v6.host == "::1" && v6.port == 4222)
        let user = try NATSServerURL("nats://alice:s3cret@host:4222")
        #expect(user.user == "alice" && user.password == "s3cret")
        // cnats gets the credentials as the connection's authentication, not in the URL.
        #expect(user.connectString == "nats://host:4222")
    }

    @Test(arguments: [
        ("http://host:4222", "scheme 'http' is not supported"),
        ("nats://host:0", "out of range"),
        ("nats://host:65536", "out of range"),
        ("nats://host:abc", "not a number"),
        ("nats://ho st:4222", "spaces"),
        ("nats://:4222", "host is missing"),
        ("", "must not be empty"),
        ("nats://host:4222/path", "no path"),
        ("nats://ho\u{7F}st:4222", "control characters"),
        ("nats://]:42]:4222", "brackets"),
        ("nats://a:b:4222", "brackets"),
        ("nats://[[x]:4222", "brackets"),
        ("nats://[f%1]:2", "brackets"),
    ])
    func rejectsBadURLs(url: String, rule: String) {
        let error = #expect(throws: NATSError.self) { try NATSServerURL(url) }
        #expect(error?.code == .invalidURL)
        #expect(error?.message.contains(rule) == true, "\(error?.message ?? "")")
    }

    @Test func errorShowsControlCharactersEscaped() {
        let error = #expect(throws: NATSError.self) { try NATSServerURL("nats://ho\nst:4222") }
        #expect(error?.message.contains(#"ho\nst"#) == true, "\(error?.message ?? "")")
    }

    @Test func credentialsNeverPrinted() {
        let error = #expect(throws: NATSError.self) { try NATSServerURL("http://alice:hunter2@host:99999") }
        #expect(error?.description.contains("hunter2") == false)
        #expect(error?.description.contains("alice:***@") == true)
        let tokenError = #expect(throws: NATSError.self) { try NATSServerURL("nats://s3cr3tT0ken@host:0") }
        #expect(tokenError?.description.contains("s3cr3tT0ken") == false)
        let parsed = try? NATSServerURL("nats://bob:pa55@host:4222")
        #expect(parsed?.description == "nats://bob:***@host:4222")
        #expect("\(String(describing: parsed))".contains("pa55") == false)
        #expect(NATSServerURL.redact("nats://a:b@h1:1,nats://tok@h2:2") == "nats://a:***@h1:1,nats://***@h2:2")
    }
}

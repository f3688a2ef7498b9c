import FuzzSupport
@testable import NATS

/// Subjects, queue groups, header names and values, and control-line lengths.
///
/// The input is a subject, queue group and header name (the whole input, repaired to UTF-8)
/// and a header split at the first `:`. Each check is compared with a plain reference model of
/// its rule (split on `.`, look at every byte); every error message must be one readable line.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzValidation(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = inputBytes(data, size)
    let text = String(decoding: bytes, as: UTF8.self)

    for use in [NATSValidation.SubjectUse.publish, .subscribe] {
        let violation = NATSValidation.subjectViolation(text, for: use)
        let expected = referenceSubjectIsValid(text, publish: use == .publish)
        invariant((violation == nil) == expected, "subject \(Array(text.utf8)) for \(use): \(violation ?? "valid"), reference \(expected)")
        do {
            try NATSValidation.validateSubject(text, for: use)
            invariant(violation == nil, "validateSubject accepted what subjectViolation rejects")
        } catch {
            invariant(violation != nil && error.code == .invalidSubject, "validateSubject threw \(error) for a valid subject")
            invariant(isOneReadableLine(error.description), "subject error is not one line: \(error.description)")
        }
    }
    // Whatever may be published may be subscribed to.
    if NATSValidation.subjectViolation(text, for: .publish) == nil {
        invariant(NATSValidation.subjectViolation(text, for: .subscribe) == nil, "publishable subject not subscribable")
    }

    let queueValid = !text.isEmpty && !text.utf8.contains { $0 <= 0x20 || $0 == 0x7F }
    checkThrows(queueValid, .invalidQueueGroup, "queue group") { () throws(NATSError) in try NATSValidation.validateQueueGroup(text) }

    let (nameBytes, valueBytes) = split(bytes, at: UInt8(ascii: ":"))
    let name = String(decoding: nameBytes, as: UTF8.self)
    let value = String(decoding: valueBytes ?? [], as: UTF8.self)
    let nameValid = referenceHeaderNameIsValid(name)
    let valueValid = !value.utf8.contains { $0 == 0x0D || $0 == 0x0A || $0 == 0x00 }
    checkThrows(nameValid, .invalidHeader, "header name") { () throws(NATSError) in try NATSValidation.validateHeaderName(name) }
    checkThrows(valueValid, .invalidHeader, "header value") { () throws(NATSError) in
        try NATSValidation.validateHeaderValue(value, name: name)
    }
    let headers = NATSHeaders([("Accept", "x"), (name, value)])
    checkThrows(nameValid && valueValid, .invalidHeader, "headers") { () throws(NATSError) in
        try NATSValidation.validateHeaders(headers)
    }

    // Control lines: lengths from the input's first bytes, the limit from the next.
    let numbers = bytes.prefix(8).map { Int($0) }
    let limit = (numbers.first ?? 0) * 20
    let reply = numbers.count > 1 && numbers[1] % 2 == 1 ? String(repeating: "r", count: numbers[1]) : nil
    let headerLength = numbers.count > 2 && numbers[2] % 3 != 0 ? numbers[2] * 1000 : nil
    let payloadLength = numbers.count > 3 ? numbers[3] << (numbers.count > 4 ? numbers[4] % 40 : 0) : 0
    for value in [payloadLength, headerLength ?? 0, limit, text.utf8.count] {
        invariant(NATSValidation.decimalDigits(value) == String(value).utf8.count, "decimalDigits(\(value))")
    }
    var line = text.utf8.count
    if let reply { line += 1 + reply.utf8.count }
    if let headerLength { line += 1 + String(headerLength).utf8.count }
    line += 1 + String((headerLength ?? 0) + payloadLength).utf8.count
    let computed = NATSValidation.publishControlLineLength(
        subjectLength: text.utf8.count, replyLength: reply?.utf8.count, headerLength: headerLength,
        payloadLength: payloadLength)
    invariant(computed == line, "PUB line length \(computed), reference \(line)")
    checkThrows(line <= limit, .invalidSubject, "PUB control line") { () throws(NATSError) in
        try NATSValidation.validatePublishControlLine(
            subject: text, replyTo: reply, headerLength: headerLength, payloadLength: payloadLength, limit: limit)
    }
    let queue = numbers.count > 5 && numbers[5] % 2 == 1 ? text : nil
    let subLine = text.utf8.count + (queue.map { 1 + $0.utf8.count } ?? 0) + 1 + NATSValidation.subscriptionIDReserve
    checkThrows(subLine <= limit, .invalidSubject, "SUB control line") { () throws(NATSError) in
        try NATSValidation.validateSubscribeControlLine(subject: text, queueGroup: queue, limit: limit)
    }
    return 0
}

/// Runs a check and compares with the reference: it throws exactly when `valid` is false, with
/// `code` and a message on one readable line.
func checkThrows(_ valid: Bool, _ code: NATSError.Code, _ what: String, _ body: () throws(NATSError) -> Void) {
    do {
        try body()
        invariant(valid, "\(what): accepted, but the reference rejects it")
    } catch {
        invariant(!valid, "\(what): rejected (\(error)), but the reference accepts it")
        invariant(error.code == code, "\(what): code \(error.code), expected \(code)")
        invariant(isOneReadableLine(error.description), "\(what): message is not one line: \(error.description)")
    }
}

/// The subject rules written the plain way: split into tokens, look at each.
func referenceSubjectIsValid(_ subject: String, publish: Bool) -> Bool {
    let utf8 = Array(subject.utf8)
    if utf8.isEmpty || utf8.contains(where: { $0 <= 0x20 || $0 == 0x7F }) { return false }
    let tokens = utf8.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
    for (index, token) in tokens.enumerated() {
        if token.isEmpty { return false }
        if token.elementsEqual([UInt8(ascii: "*")]) && publish { return false }
        if token.elementsEqual([UInt8(ascii: ">")]) && (publish || index != tokens.count - 1) { return false }
    }
    return true
}

/// Printable ASCII without `:`, not empty.
func referenceHeaderNameIsValid(_ name: String) -> Bool {
    !name.isEmpty && name.utf8.allSatisfy { (33...126).contains($0) && $0 != UInt8(ascii: ":") }
}

@main
enum Main {
    static func main() { runLibFuzzer(fuzzValidation) }
}

/// A subscription pattern in NATS token syntax: `order.created`, `order.*`, `order.>`.
///
/// `*` matches exactly one token, `>` one or more trailing tokens. The pattern is checked when it is
/// created, so a pattern value is always valid.
public struct SubjectPattern: Hashable, Sendable, CustomStringConvertible {
    /// The pattern as written.
    public let rawValue: String

    /// Creates a pattern, or throws ``EventBusError/Code/invalidPattern`` naming the rule it breaks.
    public init(_ pattern: String) throws(EventBusError) {
        try SubjectRules.validatePattern(pattern)
        self.rawValue = pattern
    }

    /// A pattern known to be valid (built from valid parts), not checked again.
    init(validated pattern: String) {
        self.rawValue = pattern
    }

    /// `true` when the pattern has no wildcard token, so it matches exactly one subject.
    public var isLiteral: Bool {
        !rawValue.utf8.contains(SubjectRules.star) && !rawValue.utf8.contains(SubjectRules.greaterThan)
    }

    /// The pattern's tokens, in order.
    public var tokens: [Substring] {
        rawValue.split(separator: ".", omittingEmptySubsequences: false)
    }

    /// Whether `subject` (a literal subject) matches the pattern.
    public func matches(_ subject: String) -> Bool {
        // In place on the UTF-8 bytes; splitting both into arrays cost ~500 ns per pattern, and a new group
        // starting from `.all` matches every retained event this way.
        let answer = rawValue.withContiguousUTF8IfAvailable { pattern in
            subject.withContiguousUTF8IfAvailable { SubjectRules.matches(pattern: pattern, subject: $0) }
        }
        if let answer, let answer { return answer }
        var subjectTokens = subject.utf8.split(separator: SubjectRules.dot, omittingEmptySubsequences: false)[...]
        for patternToken in rawValue.utf8.split(separator: SubjectRules.dot, omittingEmptySubsequences: false) {
            if patternToken.count == 1 && patternToken.first == SubjectRules.greaterThan {
                return !subjectTokens.isEmpty
            }
            guard let subjectToken = subjectTokens.popFirst() else { return false }
            if patternToken.count == 1 && patternToken.first == SubjectRules.star {
                continue
            }
            if !patternToken.elementsEqual(subjectToken) {
                return false
            }
        }
        return subjectTokens.isEmpty
    }

    /// The pattern as written.
    public var description: String { rawValue }
}

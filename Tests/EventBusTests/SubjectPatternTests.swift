@testable import EventBus
import Testing

@Suite("Subject patterns and subjects")
struct SubjectPatternTests {
    @Test(arguments: ["a", "a.b.c", "a.*", "*", ">", "a.>", "*.b.>", "a.*.c", "orders.v2.created", "grüße.ü"])
    func validPatterns(_ pattern: String) throws {
        #expect(try SubjectPattern(pattern).rawValue == pattern)
    }

    @Test(arguments: [
        ("", "empty"), ("a..b", "empty token"), (".a", "empty token"), ("a.", "empty token"),
        ("a.>.b", "'>' may only be the last"), (">.a", "'>' may only be the last"),
        ("a.b*", "whole token"), ("a.*b", "whole token"), ("a.>>", "whole token"), ("a.b>", "whole token"),
        ("a b", "whitespace"), ("a.\tb", "whitespace"), ("a.\u{7F}", "control"), ("a\r\n.b", "whitespace"),
    ])
    func invalidPatterns(_ pattern: String, _ rule: String) {
        #expect {
            _ = try SubjectPattern(pattern)
        } throws: { error in
            guard let error = error as? EventBusError else { return false }
            return error.code == .invalidPattern && error.message.contains(rule)
        }
    }

    @Test(arguments: [
        ("a.b.c", "a.b.c", true), ("a.b.c", "a.b", false), ("a.b", "a.b.c", false),
        ("a.*", "a.b", true), ("a.*", "a", false), ("a.*", "a.b.c", false),
        ("*", "a", true), ("*", "a.b", false),
        ("a.>", "a.b", true), ("a.>", "a.b.c.d", true), ("a.>", "a", false),
        (">", "a", true), (">", "a.b.c", true),
        ("*.b.>", "a.b.c", true), ("*.b.>", "a.b", false), ("*.b.>", "x.c.d", false),
        ("a.*.c", "a.bb.c", true), ("a.*.c", "a.b.d", false),
        ("ab", "a", false), ("a", "ab", false), ("a.b", "a.bc", false),
    ])
    func matching(_ pattern: String, _ subject: String, _ expected: Bool) throws {
        #expect(try SubjectPattern(pattern).matches(subject) == expected)
    }

    @Test func literalness() throws {
        #expect(try SubjectPattern("a.b").isLiteral)
        #expect(try !SubjectPattern("a.*").isLiteral)
        #expect(try !SubjectPattern("a.>").isLiteral)
        #expect(try SubjectPattern("a.*.>").tokens == ["a", "*", ">"])
    }

    @Test(arguments: [
        ("", "empty"), ("a..b", "empty token"), ("a.", "empty token"), ("a.*", "wildcard"),
        ("a.>", "wildcard"), ("a.b*c", "wildcard"), ("a b", "whitespace"), ("a\0b", "control"),
    ])
    func invalidLiteralSubjects(_ subject: String, _ rule: String) {
        #expect {
            try SubjectRules.validateLiteral(subject)
        } throws: { error in
            guard let error = error as? EventBusError else { return false }
            return error.code == .invalidSubject && error.message.contains(rule)
        }
    }

    @Test func errorMessageEscapesControlCharacters() {
        #expect {
            try SubjectRules.validateLiteral("a\nb")
        } throws: { error in
            let text = String(describing: error)
            return !text.contains("\n") && text.contains("\\n") && text.contains("invalidSubject")
        }
    }
}

@Suite("Subject index (the in-memory bus's sublist)")
struct SubjectIndexTests {
    @Test func matchesLiteralsAndWildcards() throws {
        var index = SubjectIndex<Int>()
        let patterns = ["a.b.c", "a.*.c", "a.>", "*.b.*", ">", "x"]
        for (value, pattern) in patterns.enumerated() {
            index.insert(try SubjectPattern(pattern), value)
        }
        #expect(Set(index.match("a.b.c")) == [0, 1, 2, 3, 4])
        #expect(Set(index.match("a.x.c")) == [1, 2, 4])
        #expect(Set(index.match("a")) == [4])
        #expect(Set(index.match("x")) == [5, 4])
        #expect(Set(index.match("q.b.z")) == [3, 4])
        #expect(index.match("a.b.c").count == 5, "each value appears once per match")
    }

    @Test func removalPrunesAndInvalidatesTheCache() throws {
        var index = SubjectIndex<Int>()
        let wildcard = try SubjectPattern("orders.*")
        index.insert(wildcard, 1)
        index.insert(try SubjectPattern("orders.created"), 2)
        #expect(Set(index.match("orders.created")) == [1, 2])
        index.remove(wildcard, 1)
        #expect(index.match("orders.created") == [2], "a cached answer survived a removal")
        index.remove(try SubjectPattern("orders.created"), 2)
        #expect(index.match("orders.created").isEmpty)
    }

    @Test func sameValueUnderTwoPatternsIsRemovedOnlyFromOne() throws {
        var index = SubjectIndex<Int>()
        index.insert(try SubjectPattern("a.*"), 7)
        index.insert(try SubjectPattern("a.>"), 8)
        index.remove(try SubjectPattern("a.*"), 7)
        #expect(index.match("a.b") == [8])
    }

    @Test func cacheStaysBounded() throws {
        var index = SubjectIndex<Int>(cacheLimit: 16)
        index.insert(try SubjectPattern("s.>"), 1)
        for number in 0..<1000 {
            #expect(index.match("s.\(number)") == [1])
        }
        #expect(index.cachedSubjectCount <= 16)
    }
}

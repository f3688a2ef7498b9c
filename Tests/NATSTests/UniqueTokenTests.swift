import Testing

@testable import NATS

@Suite("Unique tokens for message ids and inboxes")
struct UniqueTokenTests {
    @Test func tokensAreUniqueBase62OfFixedLength() {
        var generator = UniqueTokenGenerator()
        var seen = Set<String>()
        let alphabet = Set("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz".utf8)
        for _ in 0..<200_000 {
            let token = generator.next()
            #expect(token.utf8.count == UniqueTokenGenerator.length)
            #expect(token.utf8.allSatisfy(alphabet.contains))
            seen.insert(token)
        }
        #expect(seen.count == 200_000)
    }

    @Test func generatorsDrawDifferentPrefixes() {
        var first = UniqueTokenGenerator()
        var second = UniqueTokenGenerator()
        #expect(first.next().prefix(12) != second.next().prefix(12))
    }

    @Test func inboxesAreDistinct() {
        let inboxes = (0..<1_000).map { _ in NATSConnection.makeInbox() }
        #expect(Set(inboxes).count == 1_000)
        #expect(inboxes.allSatisfy { $0.hasPrefix("_INBOX.") && $0.utf8.count == 7 + 22 })
    }
}

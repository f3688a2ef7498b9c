@testable import EventBus
import Testing

/// The hand-written structures behind the in-memory bus's hot paths, each checked against the plain
/// standard-library version of what it replaces.
@Suite("In-memory bus structures")
struct InMemoryStructureTests {
    /// A deterministic generator, so a failure can be replayed.
    struct SplitMix: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    @Test func pendingTableAgreesWithADictionary() {
        var random = SplitMix(state: 42)
        var table = PendingTable()
        var reference: [UInt64: UInt32] = [:]
        for step in 0..<200_000 {
            // Keys from a sliding window, spaced like a pattern consumer's, plus strays far behind.
            let base = UInt64(step / 4)
            let key = random.next() % 7 == 0 ? 1 + random.next() % 100 : base * 3 + 1 + random.next() % 600
            switch random.next() % 3 {
            case 0, 1:
                table[key] = PendingDelivery(attempt: UInt32(step), phase: .queued)
                reference[key] = UInt32(step)
            default:
                table[key] = nil
                reference[key] = nil
            }
            if step % 997 == 0 {
                #expect(table.count == reference.count)
                for (key, value) in reference {
                    #expect(table[key]?.attempt == value)
                }
            }
        }
        #expect(Set(table.keys) == Set(reference.keys))
        for key in reference.keys { table[key] = nil }
        #expect(table.isEmpty && table[1] == nil)
    }

    @Test func duplicateWindowFindsEveryIdInsideItAndForgetsTheOldestPastItsCapacity() {
        let now = BrokerInstant(nanoseconds: 5_000_000_000)
        var window = DuplicateWindow(window: .seconds(60), capacity: 5_000)
        for index in 0..<20_000 {
            #expect(window.recordIfNew("id-\(index)", sequence: UInt64(index + 1), now: now) == nil)
            if index % 101 == 0 {
                // The recent ids are known, with their sequence (4,000 back: the re-recordings below take
                // up a few places of the 5,000).
                for back in [0, 1, 17, 4_000] where back <= index {
                    let earlier = index - back
                    #expect(window.recordIfNew("id-\(earlier)", sequence: 0, now: now) == UInt64(earlier + 1))
                }
                if index >= 5_000 {
                    let forgotten = index - 5_000
                    // Recording it again makes it new (and evicts the oldest), as the dictionary did.
                    #expect(window.recordIfNew("id-\(forgotten)", sequence: 99, now: now) == nil)
                    #expect(window.recordIfNew("id-\(forgotten)", sequence: 0, now: now) == 99)
                }
            }
        }
        #expect(window.count == 5_000)
    }

    @Test func duplicateWindowExpiresByTime() {
        let start = BrokerInstant(nanoseconds: 5_000_000_000)
        var window = DuplicateWindow(window: .seconds(10), capacity: 1_000)
        for index in 0..<100 {
            _ = window.recordIfNew("e\(index)", sequence: UInt64(index + 1), now: start + .milliseconds(index * 100))
        }
        // At start + 10.05 s the first id (expires at start + 10 s) is gone, the second (10.1 s) is not.
        let later = start + .milliseconds(10_050)
        #expect(window.recordIfNew("e1", sequence: 0, now: later) == 2)
        #expect(window.recordIfNew("e0", sequence: 500, now: later) == nil)
        #expect(window.count == 100)
        #expect(window.recordIfNew("e99", sequence: 0, now: start + .seconds(30)) == nil, "all expired")
        #expect(window.count == 1)
    }

    @Test func duplicateWindowComparesIdsOfEveryLength() {
        var window = DuplicateWindow(window: .seconds(60), capacity: 100)
        let now = BrokerInstant(nanoseconds: 5_000_000_000)
        let ids = ["", "a", "ab", "abcdefg", "abcdefgh", "abcdefghi", "6f1c2a9e-47b1-4c4e-9a52-0c1d2e3f4a5b", "grüße"]
        for (index, id) in ids.enumerated() {
            #expect(window.recordIfNew(id, sequence: UInt64(index + 1), now: now) == nil, "\(id)")
        }
        for (index, id) in ids.enumerated() {
            #expect(window.recordIfNew(id, sequence: 0, now: now) == UInt64(index + 1), "\(id)")
        }
    }

    /// The word-at-a-time checks say "fine" exactly when the byte-by-byte rules do.
    @Test func byteScanAgreesWithTheByteByByteRules() {
        var random = SplitMix(state: 7)
        let alphabet: [UInt8] = Array("ab.*> \t\r\n\0\u{7F}z9-".utf8) + [0xC3, 0xBC, 0x21, 0x20, 0x2E]
        for _ in 0..<50_000 {
            let length = Int(random.next() % 24)
            var bytes: [UInt8] = []
            for _ in 0..<length {
                // Mostly harmless letters, so that valid subjects are common.
                bytes.append(random.next() % 4 == 0 ? alphabet[Int(random.next() % UInt64(alphabet.count))] : 0x61)
            }
            let headerSafe = !bytes.contains { $0 == 0 || $0 == 0x0A || $0 == 0x0D }
            let tokens = bytes.split(separator: 0x2E, omittingEmptySubsequences: false)
            let literal = !bytes.isEmpty && !tokens.contains { $0.isEmpty }
                && !bytes.contains { $0 <= 0x20 || $0 == 0x7F || $0 == 0x2A || $0 == 0x3E }
            bytes.withUnsafeBytes { raw in
                #expect(ByteScan.isHeaderSafe(raw) == headerSafe, "\(bytes)")
                #expect(ByteScan.isLiteralSubject(raw) == literal, "\(bytes)")
            }
        }
    }

    /// Matching in place agrees with splitting both into tokens, the way it was done before.
    @Test func patternMatchingAgreesWithTokenSplitting() throws {
        func reference(_ pattern: String, _ subject: String) -> Bool {
            var subjectTokens = subject.split(separator: ".", omittingEmptySubsequences: false)[...]
            for token in pattern.split(separator: ".", omittingEmptySubsequences: false) {
                if token == ">" { return !subjectTokens.isEmpty }
                guard let subjectToken = subjectTokens.popFirst() else { return false }
                if token != "*" && token != subjectToken { return false }
            }
            return subjectTokens.isEmpty
        }
        var random = SplitMix(state: 99)
        let words = ["a", "b", "ab", "grüße", "x1"]
        func pick(_ choices: [String]) -> String { choices[Int(random.next() % UInt64(choices.count))] }
        for _ in 0..<20_000 {
            let subject = (0..<(1 + Int(random.next() % 4))).map { _ in pick(words) }.joined(separator: ".")
            var tokens = (0..<(1 + Int(random.next() % 4))).map { _ in pick(words + ["*", "*"]) }
            if random.next() % 3 == 0 { tokens.append(">") }
            let text = tokens.joined(separator: ".")
            let pattern = try SubjectPattern(text)
            #expect(pattern.matches(subject) == reference(text, subject), "\(text) ~ \(subject)")
            #expect(SubjectRules.tokens(of: subject) == subject.split(separator: ".", omittingEmptySubsequences: false))
        }
    }

    @Test func validationIsRememberedUntilAnAttributeChanges() throws {
        var event = Event(subject: "orders.created", type: "t", source: "/s")
        try event.validateForPublish()
        #expect(event.isKnownValidForPublish)
        let copy = event
        event.subject = "orders..created"
        #expect(!event.isKnownValidForPublish, "a setter forgets the check")
        #expect(copy.isKnownValidForPublish, "the copy keeps its own, unchanged attributes")
        #expect(throws: EventBusError.self) { try event.validateForPublish() }
        event.subject = "orders.created"
        event.extensions["bad name"] = "x"
        #expect(throws: EventBusError.self) { try event.validateForPublish() }
    }
}

/// Acks that the consumer's inbox accepted without the broker's lock behave exactly like acks applied at
/// once: nothing can observe the difference. (The time limit cancels a test, ending a `next()` that waits
/// for a delivery that never comes.)
@Suite("In-memory bus deferred acks", .timeLimit(.minutes(1)))
struct InMemoryDeferredAckTests {
    @Test func anAcceptedAckIsAppliedBeforeItsDeadlineCouldRedeliver() async throws {
        let bus = try InMemoryEventBus()
        let subscription = try await bus.subscribe("d.ack", options: .init(ackWait: .milliseconds(60)))
        var iterator = subscription.makeAsyncIterator()
        try await bus.publish(makeEvent("d.ack", "1"))
        let first = try #require(try await iterator.next())
        try await first.ack()
        #expect(bus.statistics().pendingDeliveries == 0, "statistics see the ack at once")
        // Past the ack wait: had the ack been lost, the next pull would redeliver the first event.
        try await Task.sleep(for: .milliseconds(150))
        try await bus.publish(makeEvent("d.ack", "2"))
        let second = try #require(try await iterator.next())
        #expect(second.deliveryCount == 1 && second.event.data == Array("2".utf8))
        await #expect(throws: EventBusError.self) { try await first.ack() }
        await #expect(throws: EventBusError.self) { try await first.nak(delay: nil) }
        try await second.inProgress()
        try await second.ack()
        await #expect(throws: EventBusError.self) { try await second.inProgress() }
        await bus.close()
    }

    @Test func anAckPastItsDeadlineGoesToTheBrokerAndFailsIfRedelivered() async throws {
        let bus = try InMemoryEventBus()
        let subscription = try await bus.subscribe("d.late", options: .init(ackWait: .milliseconds(40)))
        var iterator = subscription.makeAsyncIterator()
        try await bus.publish(makeEvent("d.late"))
        let first = try #require(try await iterator.next())
        let again = try #require(try await iterator.next())
        #expect(again.deliveryCount == 2 && again.sequence == first.sequence)
        await #expect(throws: EventBusError.self) { try await first.ack() }
        try await again.ack()
        #expect(bus.statistics().pendingDeliveries == 0)
        await bus.close()
    }

    /// With `maxInFlight: 1`, a parked member can only go on once the other member's ack makes room: that
    /// ack must wake it, so it takes the broker's path.
    @Test func anAckThatMakesRoomWakesAParkedMember() async throws {
        let bus = try InMemoryEventBus()
        let options = SubscriptionOptions(group: "room", maxInFlight: 1)
        let first = try await bus.subscribe("d.room", options: options)
        let second = try await bus.subscribe("d.room", options: options)
        try await bus.publish(makeEvent("d.room", "1"))
        try await bus.publish(makeEvent("d.room", "2"))
        var firstIterator = first.makeAsyncIterator()
        let one = try #require(try await firstIterator.next())
        let received = try await withThrowingTaskGroup(of: Delivery?.self) { group in
            group.addTask {
                var secondIterator = second.makeAsyncIterator()
                return try await secondIterator.next()
            }
            group.addTask {
                try await Task.sleep(for: .seconds(5))
                return nil
            }
            // Let the second member park first.
            try await Task.sleep(for: .milliseconds(50))
            try await one.ack()
            let result = try await group.next() ?? nil
            group.cancelAll()
            return result
        }
        #expect(received?.event.data == Array("2".utf8), "the parked member got the next event after the ack")
        try await received?.ack()
        await bus.close()
    }
}

import Foundation
import Testing

@testable import EventBus

@Suite("Generated event ids")
struct EventIDTests {
    @Test func idsAreVersion4UUIDsAndUnique() throws {
        var seen = Set<String>()
        for _ in 0..<100_000 {
            let id = Event.makeID()
            let uuid = try #require(UUID(uuidString: id), "'\(id)' is not a UUID")
            #expect(uuid.uuidString == id)
            let bytes = uuid.uuid
            #expect(bytes.6 >> 4 == 4, "version nibble of \(id)")
            #expect(bytes.8 >> 6 == 0b10, "variant bits of \(id)")
            seen.insert(id)
        }
        #expect(seen.count == 100_000)
    }

    @Test func eventsGetDistinctIDs() {
        let first = Event(subject: "a.b", type: "t", source: "/s", data: [])
        let second = Event(subject: "a.b", type: "t", source: "/s", data: [])
        #expect(first.id != second.id)
    }
}

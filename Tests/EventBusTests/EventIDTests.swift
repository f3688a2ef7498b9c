import Foundation
import Synchronization
import Testing

@testable import EventBus

@Suite("Generated event ids")
struct EventIDTests {
    @Test func idsAreVersion4UUIDsAndUnique() async throws {
        // 100,000 ids: 1.6 MB of generator output, 390 refills of its buffer. More (or one
        // expectation per id) costs seconds of a cooperative thread in a debug build, which the
        // timing-sensitive tests running beside this one need.
        let count = 100_000
        var seen = Set<String>(minimumCapacity: count)
        var malformed: [String] = []
        for number in 0..<count {
            let id = Event.makeID()
            if !Self.isWellFormed(id), malformed.count < 5 { malformed.append(id) }
            if number % 1000 == 0 {
                // The same through Foundation's reading of a UUID.
                let uuid = try #require(UUID(uuidString: id), "'\(id)' is not a UUID")
                #expect(uuid.uuidString == id)
                #expect(uuid.uuid.6 >> 4 == 4 && uuid.uuid.8 >> 6 == 0b10)
                await Task.yield()
            }
            seen.insert(id)
        }
        #expect(malformed.isEmpty, "not 8-4-4-4-12 upper-case hexadecimal, version 4, variant 10: \(malformed)")
        #expect(seen.count == count)
    }

    @Test func eventsGetDistinctIDs() {
        let first = Event(subject: "a.b", type: "t", source: "/s", data: [])
        let second = Event(subject: "a.b", type: "t", source: "/s", data: [])
        #expect(first.id != second.id)
    }

    /// Each id is exactly the next 16 bytes of the byte source, with only the version and variant
    /// bits set, and the source is asked for 4 KiB once per 256 ids (not once per id).
    @Test func idsAreTheSourceBytesInOrder() throws {
        let source = RecordingByteSource()
        var generator = EventIDGenerator(source: source.fill)
        let count = 600
        let ids = (0..<count).map { _ in generator.next() }
        let (bytes, fills) = source.record.withLock { ($0.bytes, $0.fills) }
        #expect(fills == [4096, 4096, 4096], "one 4 KiB read per 256 ids")
        for (number, id) in ids.enumerated() {
            var expected = Array(bytes[(number * 16)..<(number * 16 + 16)])
            expected[6] = expected[6] & 0x0F | 0x40
            expected[8] = expected[8] & 0x3F | 0x80
            let hex = expected.map { String(format: "%02X", $0) }.joined()
            let dashed = [hex.prefix(8), hex.dropFirst(8).prefix(4), hex.dropFirst(12).prefix(4), hex.dropFirst(16).prefix(4), hex.dropFirst(20)]
                .joined(separator: "-")
            #expect(id == dashed, "id \(number)")
        }
    }

    /// The system source fills a whole buffer (more than one 256-byte `getentropy` call) with bytes
    /// that differ from one fill to the next.
    @Test func systemSourceFillsTheWholeBuffer() {
        var first = [UInt8](repeating: 0, count: EventIDGenerator.bufferSize + 100)
        var second = first
        first.withUnsafeMutableBytes { EventIDGenerator.systemRandomBytes($0) }
        second.withUnsafeMutableBytes { EventIDGenerator.systemRandomBytes($0) }
        #expect(first != second)
        // A zero run of 32 bytes anywhere would mean a part was left unfilled (chance 2^-256).
        for start in stride(from: 0, to: first.count - 32, by: 32) {
            #expect(first[start..<(start + 32)].contains { $0 != 0 }, "bytes \(start)..<\(start + 32)")
        }
    }

    /// A sanity check, not a proof of unpredictability (a good non-cryptographic generator passes it
    /// too): each of the 122 random bits of 20,000 ids is set about half the time.
    @Test func randomBitsAreBalanced() throws {
        let count = 20_000
        var generator = EventIDGenerator()
        var ones = [Int](repeating: 0, count: 128)
        for _ in 0..<count {
            let (high, low) = try #require(Self.words(generator.next()))
            for bit in 0..<64 {
                ones[bit] += Int((high >> UInt64(63 - bit)) & 1)
                ones[64 + bit] += Int((low >> UInt64(63 - bit)) & 1)
            }
        }
        let fixed: Set<Int> = [48, 49, 50, 51, 64, 65]  // version and variant
        // 6 standard deviations (sqrt(n)/2 = 71): a false alarm about once in 10^7 runs per bit.
        for bit in 0..<128 where !fixed.contains(bit) {
            #expect(abs(ones[bit] - count / 2) < 6 * 71, "bit \(bit) set in \(ones[bit]) of \(count) ids")
        }
    }

    /// The attack of finding 7: ids from a seeded xoshiro256** (how they were made before) give its
    /// state away, so the next ids can be computed and published first. The attack predicts the
    /// reference xoshiro generator's next id from 8 ids; it must fail on the generator in use.
    @Test func nextIDCannotBeComputedFromEarlierIDs() throws {
        var reference = XoshiroIDs()
        let seen = (0..<8).map { _ in reference.next() }
        let predicted = try #require(XoshiroStateRecovery.predictNext(after: seen), "the attack works on xoshiro ids")
        #expect(predicted == reference.next())

        for _ in 0..<5 {
            var generator = EventIDGenerator()
            let observed = (0..<8).map { _ in generator.next() }
            let guess = XoshiroStateRecovery.predictNext(after: observed)
            #expect(guess == nil || guess != generator.next())
        }
    }

    /// 36 characters: 8-4-4-4-12 upper-case hexadecimal digits, version 4, variant 10.
    static func isWellFormed(_ id: String) -> Bool {
        var index = 0
        for character in id.utf8 {
            let fits =
                switch index {
                case 8, 13, 18, 23: character == UInt8(ascii: "-")
                case 14: character == UInt8(ascii: "4")
                case 19: (UInt8(ascii: "8")...UInt8(ascii: "9")).contains(character) || (UInt8(ascii: "A")...UInt8(ascii: "B")).contains(character)
                default: (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(character) || (UInt8(ascii: "A")...UInt8(ascii: "F")).contains(character)
                }
            if !fits { return false }
            index += 1
        }
        return index == 36
    }

    /// The two 64-bit halves of an id's hexadecimal digits.
    static func words(_ id: String) -> (UInt64, UInt64)? {
        let hex = id.filter { $0 != "-" }
        guard hex.count == 32, let high = UInt64(hex.prefix(16), radix: 16), let low = UInt64(hex.suffix(16), radix: 16) else { return nil }
        return (high, low)
    }
}

/// Deterministic bytes, all different, so a skipped or reused byte shows; remembers what it gave.
final class RecordingByteSource: Sendable {
    let record = Mutex<(state: UInt64, bytes: [UInt8], fills: [Int])>((0x9E37_79B9_7F4A_7C15, [], []))

    func fill(_ buffer: UnsafeMutableRawBufferPointer) {
        record.withLock { record in
            for index in buffer.indices {
                record.state = record.state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                buffer[index] = UInt8(truncatingIfNeeded: record.state >> 56)
            }
            record.bytes += buffer
            record.fills.append(buffer.count)
        }
    }
}

/// Ids as the library made them before: xoshiro256** seeded from the system, two outputs per id.
struct XoshiroIDs {
    var state: (UInt64, UInt64, UInt64, UInt64)

    init() {
        var random = SystemRandomNumberGenerator()
        state = (random.next(), random.next(), random.next(), random.next())
    }

    init(state: (UInt64, UInt64, UInt64, UInt64)) {
        self.state = state
    }

    mutating func nextWord() -> UInt64 {
        let result = XoshiroStateRecovery.rotl(state.1 &* 5, 7) &* 9
        let shifted = state.1 << 17
        state.2 ^= state.0
        state.3 ^= state.1
        state.1 ^= state.2
        state.0 ^= state.3
        state.2 ^= shifted
        state.3 = XoshiroStateRecovery.rotl(state.3, 45)
        return result
    }

    mutating func next() -> String {
        let high = (nextWord() & 0xFFFF_FFFF_FFFF_0FFF) | 0x4000
        let low = (nextWord() & 0x3FFF_FFFF_FFFF_FFFF) | 0x8000_0000_0000_0000
        let hex = String(format: "%016llX%016llX", high, low)
        let digits = Array(hex)
        return [0..<8, 8..<12, 12..<16, 16..<20, 20..<32].map { String(digits[$0]) }.joined(separator: "-")
    }
}

/// Recovers xoshiro256**'s 256-bit state from ids it made, by linear algebra over GF(2).
///
/// The state update is linear over GF(2). The output scrambler `rotl(s1 * 5, 7) * 9` is not, but its
/// low bits are invertible: the low k bits of a product depend only on the low k bits of the factors.
/// An id's first word keeps its low 12 bits (the version nibble is bits 12-15), which give bits 0-4
/// of `s1`; the second word keeps 62 bits, which give bits 0-54. Eight ids give 480 linear equations
/// in the 256 unknown bits of the first state.
enum XoshiroStateRecovery {
    /// A bit of some state word as a sum (xor) of the first state's 256 bits.
    typealias Combination = SIMD4<UInt64>
    typealias Word = [Combination]

    static func rotl(_ value: UInt64, _ count: UInt64) -> UInt64 {
        (value << count) | (value >> (64 - count))
    }

    static func inverse(_ odd: UInt64) -> UInt64 {
        var inverse = odd
        for _ in 0..<6 { inverse = inverse &* (2 &- odd &* inverse) }
        return inverse
    }

    static func xor(_ a: Word, _ b: Word) -> Word { zip(a, b).map { $0 ^ $1 } }
    static func shiftedLeft(_ a: Word, _ count: Int) -> Word { (0..<64).map { $0 >= count ? a[$0 - count] : .zero } }
    static func rotatedLeft(_ a: Word, _ count: Int) -> Word { (0..<64).map { a[($0 - count + 64) % 64] } }

    /// The id that follows `ids` if they came from one xoshiro256** in a row; nil if no state
    /// explains them (or several do).
    static func predictNext(after ids: [String]) -> String? {
        var words: [UInt64] = []
        for id in ids {
            guard let (high, low) = EventIDTests.words(id) else { return nil }
            words += [high, low]
        }
        // The symbolic state: bit i of word k is unknown number 64k + i.
        var state: [Word] = (0..<4).map { word in
            (0..<64).map { bit in
                var unit = Combination.zero
                unit[word] = 1 << UInt64(bit)
                return unit
            }
        }
        var equations: [(Combination, Bool)] = []
        let inverse9 = inverse(9), inverse5 = inverse(5)
        for (index, output) in words.enumerated() {
            // Known low bits of the output: 12 of a first word, 62 of a second.
            let known = index % 2 == 0 ? 12 : 62
            let y = (output &* inverse9) & ((1 << UInt64(known)) - 1)  // rotl(s1 * 5, 7), low bits
            let z = y >> 7  // s1 * 5, bits 0..<(known - 7)
            let s1Bits = known - 7
            let s1 = (z &* inverse5) & ((1 << UInt64(s1Bits)) - 1)
            for bit in 0..<s1Bits {
                equations.append((state[1][bit], (s1 >> UInt64(bit)) & 1 == 1))
            }
            let shifted = shiftedLeft(state[1], 17)
            state[2] = xor(state[2], state[0])
            state[3] = xor(state[3], state[1])
            state[1] = xor(state[1], state[2])
            state[0] = xor(state[0], state[3])
            state[2] = xor(state[2], shifted)
            state[3] = rotatedLeft(state[3], 45)
        }
        guard let first = solve(equations) else { return nil }
        var generator = XoshiroIDs(state: (first[0], first[1], first[2], first[3]))
        for id in ids where generator.next() != id { return nil }
        return generator.next()
    }

    /// The one solution of the equations (Gaussian elimination), or nil.
    static func solve(_ equations: [(Combination, Bool)]) -> Combination? {
        var rows = equations
        var pivotRows: [Int] = []
        var row = 0
        for column in 0..<256 {
            let (word, bit) = (column / 64, UInt64(column % 64))
            guard let found = (row..<rows.count).first(where: { (rows[$0].0[word] >> bit) & 1 == 1 }) else { return nil }
            rows.swapAt(row, found)
            for other in rows.indices where other != row && (rows[other].0[word] >> bit) & 1 == 1 {
                rows[other].0 ^= rows[row].0
                rows[other].1 = rows[other].1 != rows[row].1
            }
            pivotRows.append(row)
            row += 1
        }
        // Rows past the pivots are 0 = value: any 1 means no state explains the ids.
        if rows[row...].contains(where: { $0.1 }) { return nil }
        var solution = Combination.zero
        for column in 0..<256 where rows[pivotRows[column]].1 {
            solution[column / 64] |= 1 << UInt64(column % 64)
        }
        return solution
    }
}

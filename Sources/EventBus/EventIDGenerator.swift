import Synchronization

/// Random version-4 UUID strings without a system call per id.
///
/// xoshiro256** seeded once from `SystemRandomNumberGenerator` (the operating system's secure
/// source): its 256 bits of state make two processes' sequences overlap with negligible
/// probability, and within one process it does not repeat for 2^256 - 1 draws. Event ids only
/// need to be unique (they key duplicate suppression), not unpredictable; a caller that needs
/// unguessable ids can set `Event.id` itself.
struct EventIDGenerator {
    private var state: (UInt64, UInt64, UInt64, UInt64)

    init() {
        var random = SystemRandomNumberGenerator()
        repeat {
            state = (random.next(), random.next(), random.next(), random.next())
        } while state == (0, 0, 0, 0)
    }

    private mutating func nextWord() -> UInt64 {
        let result = (state.1 &* 5).rotatedLeft(7) &* 9
        let shifted = state.1 << 17
        state.2 ^= state.0
        state.3 ^= state.1
        state.1 ^= state.2
        state.0 ^= state.3
        state.2 ^= shifted
        state.3 = state.3.rotatedLeft(45)
        return result
    }

    /// The next id: 8-4-4-4-12 upper-case hexadecimal digits, version 4, variant 10.
    mutating func next() -> String {
        let high = (nextWord() & 0xFFFF_FFFF_FFFF_0FFF) | 0x0000_0000_0000_4000
        let low = (nextWord() & 0x3FFF_FFFF_FFFF_FFFF) | 0x8000_0000_0000_0000
        return String(unsafeUninitializedCapacity: 36) { buffer in
            var position = 0
            func put(_ value: UInt64, digits: Int) {
                for index in stride(from: digits - 1, through: 0, by: -1) {
                    let nibble = UInt8(truncatingIfNeeded: value >> (UInt64(index) * 4)) & 0xF
                    buffer[position] = nibble < 10 ? UInt8(ascii: "0") + nibble : UInt8(ascii: "A") + nibble - 10
                    position += 1
                }
            }
            func dash() {
                buffer[position] = UInt8(ascii: "-")
                position += 1
            }
            put(high >> 32, digits: 8)
            dash()
            put(high >> 16, digits: 4)
            dash()
            put(high, digits: 4)
            dash()
            put(low >> 48, digits: 4)
            dash()
            put(low, digits: 12)
            return position
        }
    }

    /// The process's generator.
    static let shared = Mutex(EventIDGenerator())
}

extension UInt64 {
    fileprivate func rotatedLeft(_ count: UInt64) -> UInt64 {
        (self << count) | (self >> (64 - count))
    }
}

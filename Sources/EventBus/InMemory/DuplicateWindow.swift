import DequeModule

/// The event ids stored recently, for duplicate suppression: an id published again inside the window
/// is not stored again. Bounded by time (`window`) and by count (`capacity`); past the count the oldest
/// ids are forgotten early.
///
/// Why not a `[String: UInt64]`: with a busy publisher the window holds up to `capacity` (a million by
/// default) ids, and a `Dictionary` of that size cost ~400 ns per publish, measured: rehashing every key
/// on each growth, and on each probe a string comparison that follows the other key's pointer (a cache
/// miss). Here the ids sit in a ring in publish order (``records``, which expiry walks from the front), and
/// an open-addressing table finds them: a probe compares 32-bit hash tags and touches a record only when
/// they are equal; growing re-uses the stored hashes; removing the oldest id uses backward-shift deletion,
/// so there are no tombstones and probe runs stay short (load ≤ 1/2).
///
/// A slot is 8 bytes (tag and position), so a full default window's table is 16 MiB rather than 32: with a
/// million random ids every probe misses the caches anyway, and half the footprint means fewer TLB misses
/// (the profile of M1 shows the home-slot load as the single most expensive instruction of a publish).
struct DuplicateWindow {
    /// What a probe and expiry read, kept apart from the id so that reading it copies no reference.
    private struct Record {
        var hash: UInt64
        var sequence: UInt64
        var expires: BrokerInstant
    }

    /// A table slot: the high 32 bits of the id's hash (the tag, whose low bits also pick the home slot)
    /// and the record's position modulo 2³² − 1, plus one (so 0 means empty).
    private struct Slot {
        var bits: UInt64

        static let empty = Slot(bits: 0)
        static let positionModulus: UInt64 = 0xFFFF_FFFF

        init(bits: UInt64) { self.bits = bits }

        init(hash: UInt64, position: UInt64) {
            bits = (hash >> 32) << 32 | (position % Self.positionModulus &+ 1)
        }

        var isEmpty: Bool { bits == 0 }
        var tag: UInt32 { UInt32(truncatingIfNeeded: bits >> 32) }
        var positionCode: UInt64 { bits & 0xFFFF_FFFF }
    }

    let window: Duration
    let capacity: Int
    /// Ids in publish order; the oldest (first) expires first. `ids[i]` belongs to `records[i]`.
    private var records: Deque<Record> = []
    private var ids: Deque<String> = []
    /// The position of `records.first`; positions number every id ever recorded.
    private var firstPosition: UInt64 = 0
    /// Power-of-two open-addressing table, linear probing, at most half full.
    private var slots: [Slot] = []
    private let hashSeed: (UInt64, UInt64)

    init(window: Duration, capacity: Int) {
        self.window = window
        // Positions are kept modulo 2³² − 1, so at most that many ids can be told apart.
        self.capacity = min(capacity, Int(Slot.positionModulus) - 1)
        var generator = SystemRandomNumberGenerator()
        hashSeed = (generator.next(), generator.next() | 1)
    }

    var isEnabled: Bool { window > .zero && capacity > 0 }

    var count: Int { records.count }

    @inline(__always)
    private func home(ofTag tag: UInt32, mask: Int) -> Int {
        Int(tag) & mask
    }

    /// The offset in `records` of the record a slot points to.
    @inline(__always)
    private func offset(of slot: Slot) -> Int {
        let modulus = Slot.positionModulus
        let position = slot.positionCode &- 1
        return Int((position &+ modulus &- firstPosition % modulus) % modulus)
    }

    /// Records `id` as stored at `sequence`, unless it is already known: then returns the earlier sequence
    /// and records nothing.
    mutating func recordIfNew(_ id: String, sequence: UInt64, now: BrokerInstant) -> UInt64? {
        guard isEnabled else { return nil }
        forgetExpired(now: now)
        let hash = hashOf(id)
        if !slots.isEmpty {
            let mask = slots.count &- 1
            let tag = UInt32(truncatingIfNeeded: hash >> 32)
            var index = home(ofTag: tag, mask: mask)
            while true {
                let slot = slots[index]
                if slot.isEmpty { break }
                if slot.tag == tag {
                    let offset = offset(of: slot)
                    if records[offset].hash == hash && ids[offset] == id { return records[offset].sequence }
                }
                index = (index &+ 1) & mask
            }
        }
        if records.count >= capacity {
            removeOldest()
        }
        let position = firstPosition &+ UInt64(records.count)
        records.append(Record(hash: hash, sequence: sequence, expires: now + window))
        ids.append(id)
        if records.count &* 2 > slots.count {
            grow()
        } else {
            insert(Slot(hash: hash, position: position))
        }
        return nil
    }

    private mutating func forgetExpired(now: BrokerInstant) {
        while !records.isEmpty && records[records.startIndex].expires <= now {
            removeOldest()
        }
    }

    /// Forgets the oldest id: its slot is emptied and the run after it shifted back.
    private mutating func removeOldest() {
        guard let oldest = records.popFirst() else { return }
        ids.removeFirst()
        let mask = slots.count &- 1
        let target = Slot(hash: oldest.hash, position: firstPosition)
        firstPosition &+= 1
        var hole = home(ofTag: target.tag, mask: mask)
        while slots[hole].bits != target.bits {
            hole = (hole &+ 1) & mask
        }
        var next = (hole &+ 1) & mask
        while !slots[next].isEmpty {
            let nextHome = home(ofTag: slots[next].tag, mask: mask)
            // The entry at `next` may fill the hole when the hole lies between its home and `next`.
            if (next &- nextHome) & mask >= (next &- hole) & mask {
                slots[hole] = slots[next]
                hole = next
            }
            next = (next &+ 1) & mask
        }
        slots[hole] = .empty
    }

    private mutating func insert(_ slot: Slot) {
        let mask = slots.count &- 1
        var index = home(ofTag: slot.tag, mask: mask)
        while !slots[index].isEmpty {
            index = (index &+ 1) & mask
        }
        slots[index] = slot
    }

    /// Doubles the table (at least 16 slots) and re-inserts every record from its stored hash.
    private mutating func grow() {
        let size = max(16, slots.count &* 2)
        slots = Array(repeating: .empty, count: size)
        var position = firstPosition
        for record in records {
            insert(Slot(hash: record.hash, position: position))
            position &+= 1
        }
    }

    /// A seeded 64-bit hash of the id's UTF-8 bytes, eight at a time: each word is mixed in with a
    /// folded 64×64→128-bit multiply. The seed is random per window, so which ids collide cannot be
    /// known in advance; it is ~4x cheaper than `Hasher` for a 36-character UUID.
    private func hashOf(_ id: String) -> UInt64 {
        if let hash = id.withContiguousUTF8IfAvailable({ hashOf(bytes: $0) }) {
            return hash
        }
        var copy = id
        copy.makeContiguousUTF8()
        return copy.withContiguousUTF8IfAvailable { hashOf(bytes: $0) } ?? 0
    }

    private func hashOf(bytes: UnsafeRawBufferPointer) -> UInt64 {
        @inline(__always)
        func fold(_ a: UInt64, _ b: UInt64) -> UInt64 {
            let product = a.multipliedFullWidth(by: b)
            return product.high ^ product.low
        }
        let (seed, multiplier) = hashSeed
        var hash = seed ^ UInt64(bytes.count)
        var index = 0
        while index &+ 8 <= bytes.count {
            hash = fold(hash ^ bytes.loadUnaligned(fromByteOffset: index, as: UInt64.self), multiplier)
            index &+= 8
        }
        if index < bytes.count {
            var tail: UInt64 = 0
            var shift: UInt64 = 0
            while index < bytes.count {
                tail |= UInt64(bytes[index]) << shift
                shift &+= 8
                index &+= 1
            }
            hash = fold(hash ^ tail ^ 0x9E37_79B9_7F4A_7C15, multiplier)
        }
        return fold(hash, multiplier ^ 0xD6E8_FEB8_6659_FD93)
    }
}

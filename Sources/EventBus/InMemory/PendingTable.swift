/// A consumer's pending deliveries: a map from log sequence (never 0) to ``PendingDelivery``.
///
/// Every delivery inserts one entry and its ack removes it, so this is on the path of every event. A
/// `Dictionary<UInt64, …>` hashes each key with SipHash (~15 ns, three times per event); the keys here are
/// sequences the broker assigns, nobody can choose them to collide, so a multiplicative (Fibonacci) hash
/// is enough: consecutive and evenly spaced sequences spread over the table. Open addressing with linear
/// probing, at most half full, backward-shift deletion (no tombstones). Grows by doubling and never
/// shrinks: a consumer's pending count swings between 0 and `maxInFlight` all the time (shrinking on the
/// way down made every swing copy the table, measured), and `maxInFlight` bounds the size.
///
/// Concrete rather than generic over the value: the generic version, though specialized, still went
/// through runtime calls for its `Optional` payloads (`swift_storeEnumTagSinglePayloadGeneric`, measured).
struct PendingTable {
    typealias Value = PendingDelivery

    private struct Slot {
        /// 0: empty (sequences start at 1).
        var key: UInt64
        var value: Value

        static let empty = Slot(key: 0, value: PendingDelivery(attempt: 0, phase: .queued))
    }

    private var slots: [Slot] = []
    private var shift: UInt64 = 64
    private(set) var count = 0

    var isEmpty: Bool { count == 0 }

    @inline(__always)
    private func home(_ key: UInt64) -> Int {
        Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> shift)
    }

    /// The slot holding `key`, or `nil`.
    private func find(_ key: UInt64) -> Int? {
        guard count > 0 else { return nil }
        let mask = slots.count &- 1
        var index = home(key)
        while true {
            let found = slots[index].key
            if found == key { return index }
            if found == 0 { return nil }
            index = (index &+ 1) & mask
        }
    }

    subscript(key: UInt64) -> Value? {
        get {
            guard let index = find(key) else { return nil }
            return slots[index].value
        }
        set {
            precondition(key != 0, "sequence 0 is never stored")
            if let newValue {
                if let index = find(key) {
                    slots[index].value = newValue
                } else {
                    insertNew(key, newValue)
                }
            } else if let index = find(key) {
                remove(at: index)
            }
        }
    }

    /// The keys, in no particular order.
    var keys: [UInt64] {
        slots.compactMap { $0.key == 0 ? nil : $0.key }
    }

    private mutating func insertNew(_ key: UInt64, _ value: Value) {
        if (count &+ 1) &* 2 > slots.count {
            resize(to: max(16, slots.count &* 2))
        }
        place(Slot(key: key, value: value))
        count &+= 1
    }

    private mutating func place(_ slot: Slot) {
        let mask = slots.count &- 1
        var index = home(slot.key)
        while slots[index].key != 0 {
            index = (index &+ 1) & mask
        }
        slots[index] = slot
    }

    private mutating func remove(at start: Int) {
        let mask = slots.count &- 1
        var hole = start
        var next = (hole &+ 1) & mask
        while slots[next].key != 0 {
            let nextHome = home(slots[next].key)
            // The entry at `next` may fill the hole when the hole lies between its home and `next`.
            if (next &- nextHome) & mask >= (next &- hole) & mask {
                slots[hole] = slots[next]
                hole = next
            }
            next = (next &+ 1) & mask
        }
        slots[hole] = .empty
        count &-= 1
    }

    private mutating func resize(to size: Int) {
        let old = slots
        slots = Array(repeating: .empty, count: size)
        shift = UInt64(64 &- size.trailingZeroBitCount)
        for slot in old where slot.key != 0 {
            place(slot)
        }
    }
}

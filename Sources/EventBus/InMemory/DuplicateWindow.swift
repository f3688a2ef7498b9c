import DequeModule

/// The event ids stored recently, for duplicate suppression: an id published again inside the window
/// is not stored again. Bounded by time (`window`) and by count (`capacity`); past the count the oldest
/// ids are forgotten early.
struct DuplicateWindow {
    private struct Record {
        var id: String
        var expires: ContinuousClock.Instant
    }

    let window: Duration
    let capacity: Int
    private var sequences: [String: UInt64] = [:]
    private var order: Deque<Record> = []

    init(window: Duration, capacity: Int) {
        self.window = window
        self.capacity = capacity
    }

    var isEnabled: Bool { window > .zero && capacity > 0 }

    var count: Int { sequences.count }

    /// Records `id` as stored at `sequence`, unless it is already known: then returns the earlier sequence
    /// and records nothing.
    mutating func recordIfNew(_ id: String, sequence: UInt64, now: ContinuousClock.Instant) -> UInt64? {
        guard isEnabled else { return nil }
        forgetExpired(now: now)
        // One hash in the common (new id) case; a duplicate puts the earlier sequence back.
        if let earlier = sequences.updateValue(sequence, forKey: id) {
            sequences[id] = earlier
            return earlier
        }
        order.append(Record(id: id, expires: now + window))
        if order.count > capacity, let oldest = order.popFirst() {
            sequences[oldest.id] = nil
        }
        return nil
    }

    private mutating func forgetExpired(now: ContinuousClock.Instant) {
        while let oldest = order.first, oldest.expires <= now {
            order.removeFirst()
            sequences[oldest.id] = nil
        }
    }
}

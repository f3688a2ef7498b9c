import DequeModule

/// The in-memory bus's stream: every published event in sequence order, bounded by count, payload bytes and
/// age. The oldest events are discarded first, as JetStream's limits retention with `DiscardOld` does.
struct RetainedLog {
    struct Entry {
        var event: Event
        var storedAt: BrokerInstant
        /// Removed by an operator (a purged dead letter): it keeps its place, so sequences stay
        /// positions, but reads as absent, as an interior delete does in a JetStream stream.
        var isRemoved = false
    }

    /// What a removed entry holds instead of its event, so that the event's memory is freed.
    private static let removedPlaceholder = Event(id: "removed", subject: "removed", type: "removed", source: "removed", time: nil)

    struct Limits {
        var maxEvents: Int
        var maxBytes: Int
        var maxAge: Duration?
    }

    let limits: Limits
    private(set) var entries: Deque<Entry> = []
    /// The sequence of `entries[0]`; sequences start at 1 and are never reused.
    private(set) var firstSequence: UInt64 = 1
    private(set) var payloadBytes = 0
    /// How many of `entries` are removed.
    private(set) var removedCount = 0

    /// The entries that hold an event.
    var liveCount: Int { entries.count - removedCount }

    init(limits: Limits) {
        self.limits = limits
    }

    /// The sequence the next appended event gets.
    var nextSequence: UInt64 { firstSequence &+ UInt64(entries.count) }

    /// The last stored sequence, or 0 when nothing was ever stored.
    var lastSequence: UInt64 { nextSequence - 1 }

    mutating func append(_ event: Event, at now: BrokerInstant) -> UInt64 {
        let sequence = nextSequence
        entries.append(Entry(event: event, storedAt: now))
        payloadBytes += event.dataCount
        return sequence
    }

    /// Whether ``trim(now:)`` may discard anything: a limit of count or bytes is exceeded, or there is an
    /// age limit. Checked first, so a publish below the limits does not look at the oldest entry.
    var needsTrim: Bool {
        entries.count > limits.maxEvents || payloadBytes > limits.maxBytes || limits.maxAge != nil
    }

    /// The retained entry for `sequence`, or `nil` if it was discarded or never stored.
    func entry(_ sequence: UInt64) -> Entry? {
        guard sequence >= firstSequence, sequence < nextSequence else { return nil }
        let entry = entries[Int(sequence - firstSequence)]
        return entry.isRemoved ? nil : entry
    }

    /// Removes the entry for `sequence`; returns it, or `nil` if there was none. Its event is handed
    /// to `effects`, to be released after the broker's lock.
    mutating func remove(_ sequence: UInt64, releasingInto effects: inout BrokerEffects) -> Entry? {
        guard let entry = entry(sequence) else { return nil }
        let index = Int(sequence - firstSequence)
        entries[index].isRemoved = true
        entries[index].event = Self.removedPlaceholder
        payloadBytes -= entry.event.dataCount
        removedCount += 1
        effects.release(entry.event)
        return entry
    }

    /// Calls `body` with each live entry from `sequence` on, oldest first, until it returns `false`.
    func forEachLive(from sequence: UInt64, _ body: (UInt64, Entry) -> Bool) {
        var current = max(sequence, firstSequence)
        while current < nextSequence {
            let entry = entries[Int(current - firstSequence)]
            if !entry.isRemoved, !body(current, entry) { return }
            current += 1
        }
    }

    /// Discards the oldest entries until every limit holds; returns how many were discarded. The discarded
    /// sequences are `firstSequence - count ..< firstSequence` afterwards. The discarded events are handed
    /// to `effects`, so that the last reference to each is dropped after the broker's lock is released.
    mutating func trim(now: BrokerInstant, releasingInto effects: inout BrokerEffects) -> Int {
        var discarded = 0
        while !entries.isEmpty {
            let tooMany = entries.count > limits.maxEvents
            let tooBig = payloadBytes > limits.maxBytes
            var tooOld = false
            if !tooMany && !tooBig, let maxAge = limits.maxAge {
                tooOld = entries[entries.startIndex].storedAt.duration(to: now) > maxAge
            }
            guard tooMany || tooBig || tooOld else { break }
            let oldest = entries.removeFirst()
            if oldest.isRemoved { removedCount -= 1 }
            payloadBytes -= oldest.event.dataCount
            effects.release(oldest.event)
            firstSequence += 1
            discarded += 1
        }
        return discarded
    }

    /// The retained sequences a new consumer with `pattern` starts from, oldest first.
    func sequences(
        matching pattern: SubjectPattern,
        from start: SubscriptionOptions.StartPosition,
        startInstant: BrokerInstant?
    ) -> Deque<UInt64> {
        var result: Deque<UInt64> = []
        var sequence = firstSequence
        for entry in entries {
            defer { sequence += 1 }
            if entry.isRemoved { continue }
            switch start {
            case .new:
                return []
            case .all:
                break
            case .sequence(let first):
                if sequence < first { continue }
            case .time:
                if let startInstant, entry.storedAt < startInstant { continue }
            }
            if pattern.matches(entry.event.subject) {
                result.append(sequence)
            }
        }
        return result
    }
}

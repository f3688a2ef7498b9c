import Synchronization

/// Remembers, per consumer and stream sequence, the latest delivery this process handed out, so
/// that settling an older delivery of the same event (its ack wait expired and it came back) is
/// refused as the in-memory bus refuses it, instead of acknowledging the newer one by accident.
///
/// One ``ConsumerLedger`` per consumer, shared by this process's subscriptions to it (members of
/// one group); a subscription looks its ledger up once, so a delivery costs no hashing of the
/// consumer's name. A ledger lives while a subscription uses it.
final class DeliveryLedger: Sendable {
    private let consumers = Mutex<[String: (ledger: ConsumerLedger, users: Int)]>([:])

    /// The consumer's ledger, for a new subscription to it; give it back with ``release(_:)``.
    func acquire(_ consumer: String) -> ConsumerLedger {
        consumers.withLock { consumers in
            if let existing = consumers[consumer] {
                consumers[consumer] = (existing.ledger, existing.users + 1)
                return existing.ledger
            }
            let ledger = ConsumerLedger()
            consumers[consumer] = (ledger, 1)
            return ledger
        }
    }

    /// A subscription to `consumer` ended; the ledger goes when the last one did.
    func release(_ consumer: String) {
        consumers.withLock { consumers in
            guard let existing = consumers[consumer] else { return }
            consumers[consumer] = existing.users > 1 ? (existing.ledger, existing.users - 1) : nil
        }
    }
}

/// The deliveries of one consumer (see ``DeliveryLedger``).
final class ConsumerLedger: Sendable {
    private struct Entry {
        var attempt: UInt64
        var settled: Bool
    }

    private let entries = Mutex<[UInt64: Entry]>([:])
    /// Set once the first redelivery was recorded: until then every settlement is current, and
    /// checking costs one atomic load instead of a lock per ack.
    private let hasEntries = Atomic<Bool>(false)
    private static let pruneThreshold = 100_000

    /// Records a delivery. First deliveries make no entry: only a redelivery can make an older
    /// delivery stale, so the ledger holds redeliveries alone, and a stream read once (the common
    /// case) costs no lock or hash here and an empty-table check when settled.
    func delivered(sequence: UInt64, attempt: UInt64) {
        guard attempt > 1 else { return }
        hasEntries.store(true, ordering: .releasing)
        entries.withLock { entries in
            if let existing = entries[sequence], existing.attempt > attempt { return }
            entries[sequence] = Entry(attempt: attempt, settled: false)
            if entries.count > Self.pruneThreshold {
                entries = entries.filter { !$0.value.settled }
                // Redeliveries settled elsewhere (another host, a dead letter) stay unsettled
                // here: past the threshold the oldest half goes, so pruning stays amortized.
                if entries.count > Self.pruneThreshold / 2 {
                    let sequences = entries.keys.sorted()
                    let cutoff = sequences[sequences.count - Self.pruneThreshold / 4]
                    entries = entries.filter { $0.key >= cutoff }
                }
            }
        }
    }

    /// Whether `attempt` is still the newest delivery of `sequence` (or unknown here).
    func isCurrent(sequence: UInt64, attempt: UInt64) -> Bool {
        guard hasEntries.load(ordering: .acquiring) else { return true }
        return entries.withLock { entries in
            guard !entries.isEmpty, let entry = entries[sequence] else { return true }
            return entry.attempt == attempt
        }
    }

    /// Records that `attempt` was settled. A settled redelivery is kept, to refuse the older
    /// deliveries still held, until the ledger is pruned. So the ledger holds outstanding and
    /// settled redeliveries, not one entry per event ever delivered.
    func settled(sequence: UInt64, attempt: UInt64) {
        guard attempt > 1 else { return }
        entries.withLock { entries in
            guard entries[sequence]?.attempt == attempt else { return }
            entries[sequence]?.settled = true
        }
    }
}

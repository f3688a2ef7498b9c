import Synchronization

/// A settled delivery waiting in an ``AckInbox``.
struct DeferredAck {
    var sequence: UInt64
    var attempt: UInt32
}

/// Acks of one consumer that were accepted without the broker's lock, until the broker applies them.
///
/// Why: with one lock for the whole broker, a publisher and a subscriber on two cores took it in turns
/// for every event (a publish, then an ack), and the lock's cache line moved between the cores each time:
/// measured, a fifth of all CPU was spinning in `Mutex._lockSlow` and an event took ~900 ns. An ack now
/// only needs this inbox's own lock, which the subscriber's thread alone takes in the common case, and
/// the broker applies the acks in bulk under its lock.
///
/// The contract that keeps this invisible: the consumer applies the inbox (``ConsumerCore/drainAcks()``)
/// before anything that reads or changes its pending deliveries (pulls, deadlines, parking, settlements
/// on the slow path, statistics), so an accepted ack takes effect before anything could observe its
/// absence. An ack is only deferred while its delivery's ack deadline has not passed (so no expiry can
/// have redelivered it), while the consumer exists, and while no member is parked (an ack that makes
/// room must wake one, which needs the broker). Everything else takes the broker's lock as before.
/// Bounded: each pending delivery (at most `maxInFlight`) can be acked into it once.
final class AckInbox: Sendable {
    private struct State {
        var acks: [DeferredAck] = []
        var isOpen = true
        var hasWaiters = false
    }

    private let state = Mutex(State())

    /// Accepts an ack for later, unless the consumer is closed or has a parked member.
    func deferAck(sequence: UInt64, attempt: UInt32) -> Bool {
        state.withLock { state in
            guard state.isOpen && !state.hasWaiters else { return false }
            state.acks.append(DeferredAck(sequence: sequence, attempt: attempt))
            return true
        }
    }

    /// Swaps the waiting acks into `spare` (empty, with capacity) and returns whether there were any.
    func drain(into spare: inout [DeferredAck]) -> Bool {
        state.withLock { state in
            guard !state.acks.isEmpty else { return false }
            swap(&state.acks, &spare)
            return true
        }
    }

    /// Records whether members are parked. Marking it fails (returns `false`) if acks arrived since the
    /// last drain: the member must pull again instead of parking, or it could sleep with work available.
    func setHasWaiters(_ hasWaiters: Bool) -> Bool {
        state.withLock { state in
            if hasWaiters && !state.acks.isEmpty { return false }
            state.hasWaiters = hasWaiters
            return true
        }
    }

    /// The consumer is gone: later acks take the broker's lock (and fail there).
    func close() {
        state.withLock { $0.isOpen = false }
    }
}

/// What the deliveries of one pull share (at most 64 of them): the broker, the consumer and its inbox, the
/// ack deadline they were given, and one bit per delivery that the first ack, nak or term claims, so a
/// second one is refused without asking the broker.
final class DeliveryBatch: Sendable {
    static let capacity = 64

    let broker: InMemoryBroker
    let consumer: ConsumerID
    let inbox: AckInbox
    let deadline: BrokerInstant
    private let claimed = Atomic<UInt64>(0)

    init(broker: InMemoryBroker, consumer: ConsumerID, inbox: AckInbox, deadline: BrokerInstant) {
        self.broker = broker
        self.consumer = consumer
        self.inbox = inbox
        self.deadline = deadline
    }

    /// Claims delivery `index` for a settlement; `false` if one was already made.
    func claim(_ index: Int) -> Bool {
        let bit = UInt64(1) << UInt64(index)
        return claimed.bitwiseOr(bit, ordering: .acquiringAndReleasing).oldValue & bit == 0
    }

    /// Whether delivery `index` was settled (or handed back) already.
    func isClaimed(_ index: Int) -> Bool {
        claimed.load(ordering: .acquiring) & (UInt64(1) << UInt64(index)) != 0
    }
}

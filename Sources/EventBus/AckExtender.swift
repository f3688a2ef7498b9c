import Logging
import Synchronization

/// Sends in-progress for the deliveries whose handlers run long, for one `consume` (see
/// ``SubscriptionOptions/AckExtension``).
///
/// The handlers only note which delivery runs in which slot (``begin(_:slot:)``, ``end(slot:)``): no clock
/// read, no task, no allocation per delivery. One timer task (``run()``) wakes every half extension
/// interval and looks at the slots; a delivery seen in the same slot on a later wake has run at least one
/// tick. Its start is taken as one tick before it was first seen (the earliest it can have begun), so
/// in-progress goes out no later than one interval after the real start, and again one interval after each
/// in-progress, until the handler has run for the maximum.
final class AckExtender: Sendable {
    /// What the timer needs of a running delivery: its acknowledger, and what names it in a log. Not the
    /// whole ``Delivery``: copying its event in and out would retain and release a dozen strings per event.
    struct Running: Sendable {
        let acknowledger: any DeliveryAcknowledger
        let subject: String
        let sequence: UInt64
        let attempt: Int

        init(_ delivery: Delivery) {
            acknowledger = delivery.acknowledger
            subject = delivery.subject
            sequence = delivery.sequence
            attempt = delivery.deliveryCount
        }
    }

    private struct Slot {
        var running: Running?
        /// Counts the deliveries begun in this slot, so the timer tells a new one from the one it saw.
        var generation: UInt64 = 0
    }

    /// What the timer knows of a slot's delivery; touched only by the timer task.
    private struct Seen {
        let generation: UInt64
        /// The earliest the handler can have started.
        let start: ContinuousClock.Instant
        /// When the ack wait was last restarted, at the earliest.
        var lastReset: ContinuousClock.Instant
        var gaveUp = false
    }

    private let slots: Mutex<[Slot]>
    private let slotCount: Int
    /// In-progress goes out when this much has passed since the ack wait last restarted.
    let interval: Duration
    /// How often the timer looks.
    let tick: Duration
    /// No in-progress once a handler has run this long.
    let maximum: Duration
    let ackWait: Duration
    private let logger: Logger

    init(policy: SubscriptionOptions.AckExtension, ackWait: Duration, slots: Int, logger: Logger) {
        interval = ackWait * policy.fraction
        tick = max(interval / 2, .milliseconds(1))
        maximum = policy.maximum(ackWait: ackWait)
        self.ackWait = ackWait
        self.slots = Mutex(Array(repeating: Slot(), count: slots))
        slotCount = slots
        self.logger = logger
    }

    /// `delivery`'s handler starts in `slot`.
    @inline(__always)
    func begin(_ delivery: Delivery, slot: Int) {
        let running = Running(delivery)
        slots.withLock { slots in
            slots[slot].running = running
            slots[slot].generation &+= 1
        }
    }

    /// The handler in `slot` returned: its delivery is about to be settled and needs no more in-progress.
    @inline(__always)
    func end(slot: Int) {
        slots.withLock { slots in
            slots[slot].running = nil
        }
    }

    /// The timer: runs until its task is cancelled.
    func run() async {
        var seen = [Seen?](repeating: nil, count: slotCount)
        var due: [Running] = []
        var exhausted: [Running] = []
        while true {
            do {
                try await Task.sleep(for: tick)
            } catch {
                return
            }
            let now = ContinuousClock.now
            let tick = self.tick
            let interval = self.interval
            let maximum = self.maximum
            slots.withLock { slots in
                for index in slots.indices {
                    guard let delivery = slots[index].running else {
                        seen[index] = nil
                        continue
                    }
                    let generation = slots[index].generation
                    guard var current = seen[index], current.generation == generation else {
                        seen[index] = Seen(generation: generation, start: now - tick, lastReset: now - tick)
                        continue
                    }
                    guard !current.gaveUp, now - current.lastReset >= interval else { continue }
                    if now - current.start >= maximum {
                        current.gaveUp = true
                        exhausted.append(delivery)
                    } else {
                        current.lastReset = now
                        due.append(delivery)
                    }
                    seen[index] = current
                }
            }
            // Outside the lock: settling may await the backend. A handler that returns meanwhile settles
            // first or after; either way the in-progress is harmless (refused, or restarting a wait that the
            // ack or nak then ends).
            for delivery in due {
                do {
                    try await delivery.acknowledger.inProgress()
                } catch let error as EventBusError where error.code == .alreadyAcknowledged || error.code == .closed {
                    // Settled, handed back or closed in the meantime.
                } catch {
                    logger.debug(
                        "could not extend the ack wait of a running handler's delivery",
                        metadata: metadata(delivery, ["error": "\(error)"]))
                }
            }
            for delivery in exhausted {
                logger.warning(
                    "handler still running after the ack extension's maximum; no more in-progress is sent, so the event is redelivered when its ack wait runs out",
                    metadata: metadata(delivery, ["maximum": "\(maximum)", "ackWait": "\(ackWait)"]))
            }
            due.removeAll(keepingCapacity: true)
            exhausted.removeAll(keepingCapacity: true)
        }
    }

    private func metadata(_ running: Running, _ extra: Logger.Metadata) -> Logger.Metadata {
        var metadata: Logger.Metadata = [
            "subject": "\(running.subject)",
            "sequence": "\(running.sequence)",
            "attempt": "\(running.attempt)",
        ]
        metadata.merge(extra) { _, new in new }
        return metadata
    }
}

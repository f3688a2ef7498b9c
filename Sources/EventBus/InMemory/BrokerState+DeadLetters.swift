#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The dead-letter API on the in-memory log: dead letters are entries like any other, found by
/// their ``DeadLetter/subjectHeader`` extension.
extension BrokerState {
    /// Converts broker instants to wall-clock dates, from one reading of both clocks.
    struct WallClock {
        var now: BrokerInstant
        var date: Date

        func date(of instant: BrokerInstant) -> Date {
            let elapsed = instant.duration(to: now).components
            return date.addingTimeInterval(-(Double(elapsed.seconds) + Double(elapsed.attoseconds) * 1e-18))
        }
    }

    /// The dead letters matching `filter`, oldest first, at most `limit`.
    func deadLetters(matching filter: DeadLetterFilter, limit: Int, clock: WallClock) -> [DeadLetterEntry] {
        var found: [DeadLetterEntry] = []
        let scan = filter.scanPattern
        log.forEachLive(from: filter.after &+ 1) { sequence, entry in
            guard scan.matches(entry.event.subject),
                let deadLetter = DeadLetterEntry(
                    sequence: sequence, storedEvent: entry.event, time: clock.date(of: entry.storedAt)),
                filter.matches(deadLetter)
            else { return true }
            found.append(deadLetter)
            return found.count < limit
        }
        return found
    }

    /// The dead letter at `sequence`.
    func deadLetter(at sequence: UInt64, clock: WallClock) throws(EventBusError) -> DeadLetterRecord {
        guard let entry = log.entry(sequence) else {
            throw EventBusError(
                .notFound,
                "no event is retained at sequence \(sequence) (retained: \(log.firstSequence)...\(log.lastSequence))")
        }
        guard let record = DeadLetterRecord(sequence: sequence, storedEvent: entry.event, time: clock.date(of: entry.storedAt))
        else {
            throw EventBusError(
                .notFound,
                "the event at sequence \(sequence) on '\(entry.event.subject)' is not a dead letter (it has no \(DeadLetter.subjectHeader) extension)")
        }
        return record
    }

    /// Publishes the original event of the dead letter at `sequence` with the requeue's own
    /// duplicate key, and removes the dead letter if asked; one transition, so a concurrent purge
    /// cannot remove it between the read and the publish.
    mutating func requeueDeadLetter(
        at sequence: UInt64,
        options: DeadLetterRequeueOptions,
        from client: ClientID,
        clock: WallClock,
        effects: inout BrokerEffects
    ) throws(EventBusError) -> (DeadLetterRequeueOutcome, Event) {
        let record = try deadLetter(at: sequence, clock: clock)
        var event = record.event
        if options.newEventID { event.id = Event.makeID() }
        try event.validateForPublish()
        guard isOpen(client) else { throw EventBusError(.closed, "the in-memory event bus client was closed") }
        let key = InMemoryDeadLetterQueue.requeueMessageID(forSequence: sequence)
        let receipt: PublishReceipt
        if let earlier = duplicates.recordIfNew(key, sequence: log.nextSequence, now: clock.now) {
            receipt = PublishReceipt(sequence: earlier, duplicate: true, stream: streamName)
        } else {
            receipt = PublishReceipt(sequence: store(event, now: clock.now, effects: &effects), duplicate: false, stream: streamName)
        }
        var removed = false
        if options.removeAfterRequeue {
            removed = log.remove(sequence, releasingInto: &effects) != nil
        }
        let outcome = DeadLetterRequeueOutcome(
            sequence: sequence, subject: event.subject, eventID: event.id, receipt: receipt, removed: removed)
        return (outcome, event)
    }

    /// Removes the dead letter at `sequence`; `false` when nothing is retained there.
    mutating func removeDeadLetter(at sequence: UInt64, effects: inout BrokerEffects) throws(EventBusError) -> Bool {
        guard let entry = log.entry(sequence) else { return false }
        guard entry.event.extensions[DeadLetter.subjectHeader] != nil else {
            throw EventBusError(
                .notFound,
                "the event at sequence \(sequence) on '\(entry.event.subject)' is not a dead letter; it was not removed")
        }
        return log.remove(sequence, releasingInto: &effects) != nil
    }

    /// Removes every dead letter matching `filter`; returns how many.
    mutating func purgeDeadLetters(matching filter: DeadLetterFilter, clock: WallClock, effects: inout BrokerEffects) -> Int {
        let doomed = deadLetters(matching: filter, limit: Int.max, clock: clock)
        for entry in doomed {
            _ = log.remove(entry.sequence, releasingInto: &effects)
        }
        return doomed.count
    }
}

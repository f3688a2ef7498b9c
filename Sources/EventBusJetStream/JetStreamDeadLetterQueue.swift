public import EventBus
import NATS

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The dead letters of a ``JetStreamEventBus``: messages of the bus's stream on the dead-letter
/// subjects (under the bus's subject prefix), named by their stream sequence.
///
/// Listing reads the stream message by message with `STREAM.MSG.GET` and `next_by_subj`: the
/// server skips every other subject, nothing is created on the server (no consumer to clean up),
/// and a page costs one round trip per dead letter it returns (plus one per dead letter the
/// group or time conditions skip). Purging by subject alone is one `STREAM.PURGE` with a subject
/// filter; with other conditions, each matching dead letter is deleted by sequence.
struct JetStreamDeadLetterQueue: DeadLetterQueue {
    let bus: JetStreamEventBus

    private var stream: String { bus.configuration.streamName }

    func list(_ filter: DeadLetterFilter, limit: Int) async throws -> [DeadLetterEntry] {
        try filter.validate()
        try Self.validate(limit: limit)
        let jetStream = try await bus.ready().jetStream
        let scan = bus.natsSubject(for: filter.scanPattern.rawValue)
        var next = filter.after &+ 1
        var found: [DeadLetterEntry] = []
        while found.count < limit, next > 0 {
            let stored: NATSStoredMessage?
            do {
                stored = try await jetStream.message(stream: stream, firstAtOrAfter: next, subject: scan)
            } catch {
                throw EventBusError(mapping: error, what: "listing dead letters on '\(scan)'", fallback: .backendUnavailable)
            }
            guard let stored else { break }
            next = stored.sequence &+ 1
            if let entry = DeadLetterEntry(sequence: stored.sequence, storedEvent: event(of: stored), time: stored.time),
                filter.matches(entry)
            {
                found.append(entry)
            }
        }
        return found
    }

    func inspect(sequence: UInt64) async throws -> DeadLetterRecord {
        guard sequence > 0 else { throw EventBusError(.invalidOption, "dead-letter sequence 0 is invalid; sequences start at 1") }
        let jetStream = try await bus.ready().jetStream
        let stored: NATSStoredMessage
        do {
            stored = try await jetStream.message(stream: stream, sequence: sequence)
        } catch where error.jetStreamErrorCode == NATSJetStreamErrorCode.noMessageFound {
            throw EventBusError(.notFound, "stream '\(stream)' holds no message at sequence \(sequence)", underlying: error)
        } catch {
            throw EventBusError(mapping: error, what: "reading dead letter \(sequence)", fallback: .backendUnavailable)
        }
        let event = event(of: stored)
        guard let record = DeadLetterRecord(sequence: sequence, storedEvent: event, time: stored.time) else {
            throw EventBusError(
                .notFound,
                "the message at sequence \(sequence) of stream '\(stream)' on '\(event.subject)' is not a dead letter (it has no ce-\(DeadLetter.subjectHeader) header)")
        }
        return record
    }

    func requeue(sequence: UInt64, options: DeadLetterRequeueOptions) async throws -> DeadLetterRequeueOutcome {
        let record = try await inspect(sequence: sequence)
        var event = record.event
        if options.newEventID { event.id = Event.makeID() }
        try event.validateForPublish()
        // The requeue's own message id: the event id already keyed the original publish inside
        // the duplicate window, so reusing it would drop the requeue as a duplicate.
        let receipt = try await bus.publish(event, messageID: Self.requeueMessageID(forSequence: sequence))
        var removed = false
        if options.removeAfterRequeue {
            removed = try await delete(sequence)
        }
        if !receipt.duplicate {
            bus.logger.info(
                "requeued a dead letter",
                metadata: ["sequence": "\(sequence)", "subject": "\(event.subject)", "id": "\(event.id)", "requeued-sequence": "\(receipt.sequence)"])
        }
        return DeadLetterRequeueOutcome(sequence: sequence, subject: event.subject, eventID: event.id, receipt: receipt, removed: removed)
    }

    func remove(sequence: UInt64) async throws -> Bool {
        do {
            _ = try await inspect(sequence: sequence)
        } catch let error as EventBusError where error.code == .notFound && (error.underlying as? NATSError) != nil {
            return false
        }
        return try await delete(sequence)
    }

    func purge(_ filter: DeadLetterFilter) async throws -> Int {
        try filter.validate()
        let bySubjectAlone =
            !filter.hasConditionsBeyondSubjects
            && (filter.subjects == nil || filter.deadLetterSubjects == DeadLetterFilter.defaultDeadLetterSubjects)
        if bySubjectAlone {
            let jetStream = try await bus.ready().jetStream
            let subject = bus.natsSubject(for: filter.scanPattern.rawValue)
            do {
                let purged = try await jetStream.purgeStream(stream, subject: subject)
                bus.logger.notice("purged dead letters", metadata: ["subject": "\(subject)", "count": "\(purged)"])
                return Int(clamping: purged)
            } catch {
                throw EventBusError(mapping: error, what: "purging dead letters on '\(subject)'", fallback: .backendUnavailable)
            }
        }
        var page = filter
        var removed = 0
        while true {
            let entries = try await list(page, limit: 256)
            guard let last = entries.last else { break }
            for entry in entries {
                if try await delete(entry.sequence) { removed += 1 }
            }
            page.after = last.sequence
        }
        bus.logger.notice("purged dead letters", metadata: ["filter": "\(filter)", "count": "\(removed)"])
        return removed
    }

    private func delete(_ sequence: UInt64) async throws -> Bool {
        let jetStream = try await bus.ready().jetStream
        do {
            return try await jetStream.deleteMessage(stream: stream, sequence: sequence)
        } catch {
            throw EventBusError(mapping: error, what: "removing dead letter \(sequence)", fallback: .backendUnavailable)
        }
    }

    private func event(of stored: NATSStoredMessage) -> Event {
        let subject = bus.busSubject(fromNATS: stored.subject, prefix: bus.configuration.subjectPrefix)
        return CloudEventsNATSBinding.event(subject: subject, headers: stored.headers, payload: stored.payload.bytes)
    }

    static func validate(limit: Int) throws(EventBusError) {
        guard (1...DeadLetterQueueLimits.maxPageSize).contains(limit) else {
            throw EventBusError(.invalidOption, "dead-letter page limit \(limit) must be in 1...\(DeadLetterQueueLimits.maxPageSize)")
        }
    }
}

extension JetStreamEventBus {
    /// The dead letters in the bus's stream: list, inspect, requeue (published through this bus)
    /// and purge. Starts the bus on first use, as publishing does.
    public func deadLetterQueue() throws(EventBusError) -> any DeadLetterQueue {
        JetStreamDeadLetterQueue(bus: self)
    }
}

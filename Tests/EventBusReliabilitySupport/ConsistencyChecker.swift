/// Compares what publishers were told with what the stream holds and what consumers saw, in the
/// manner of a Jepsen checker.
///
/// Every publish has a unique id and one outcome (acked, failed, unknown). At the end:
/// - **lost**: acked, but the stream does not hold the id;
/// - **misplaced**: acked with sequence *s*, but the stream holds the id elsewhere (or another id
///   at *s*): the ack was a lie about where it went;
/// - **duplicated**: the stream holds the id more than once;
/// - **unexpected**: the stream holds an id nobody published;
/// - **failed but stored**: a publish reported as certainly failed is in the stream;
/// - **recovered unknown**: an unknown outcome that turned out stored (fine, and worth knowing);
/// - with consumers: **not consumed** (stored, never delivered) and **redeliveries**.
///
/// The first five are violations; the rest are figures.
public enum ConsistencyChecker {
    /// Checks a history. Pass `deliveries: nil` when no consumer took part.
    public static func check(
        published: [PublishRecord],
        stored: [StoredMessage],
        deliveries: [DeliveryRecord]? = nil
    ) -> ConsistencyReport {
        var report = ConsistencyReport()
        var outcomeByID: [String: PublishRecord] = [:]
        for record in published {
            if outcomeByID[record.id] != nil { report.reusedIDs.append(record.id) }
            outcomeByID[record.id] = record
        }
        report.published = outcomeByID.count
        report.attempts = published.reduce(0) { $0 + $1.attempts }

        var sequencesByID: [String: [UInt64]] = [:]
        var idBySequence: [UInt64: String] = [:]
        for message in stored {
            sequencesByID[message.id, default: []].append(message.sequence)
            idBySequence[message.sequence] = message.id
        }
        report.storedMessages = stored.count
        report.storedIDs = sequencesByID.count

        for (id, record) in outcomeByID {
            let sequences = sequencesByID[id] ?? []
            switch record.outcome {
            case .acked(let sequence, let duplicate):
                report.acked += 1
                if duplicate { report.acksMarkedDuplicate += 1 }
                if sequences.isEmpty {
                    report.lost.append(id)
                } else if sequence != 0 && (!sequences.contains(sequence) || idBySequence[sequence] != id) {
                    report.misplaced.append("\(id): acked at \(sequence), stored at \(sequences)")
                }
            case .failed:
                report.failed += 1
                if !sequences.isEmpty { report.failedButStored.append(id) }
            case .unknown:
                report.unknown += 1
                if sequences.isEmpty { report.unknownNotStored += 1 } else { report.recoveredUnknown += 1 }
            }
            if record.attempts > 1 { report.retried += 1 }
        }
        for (id, sequences) in sequencesByID {
            if sequences.count > 1 { report.duplicated[id] = sequences.count }
            if outcomeByID[id] == nil { report.unexpected.append(id) }
        }

        if let deliveries {
            var deliveredIDs: [String: Int] = [:]
            var receivers: [String: Set<String>] = [:]
            for delivery in deliveries {
                deliveredIDs[delivery.id, default: 0] += 1
                receivers[delivery.id, default: []].insert(delivery.receiver)
            }
            report.consumed = deliveredIDs.count
            report.deliveries = deliveries.count
            report.redeliveries = deliveries.count - deliveredIDs.count
            report.deliveredToSeveralReceivers = receivers.values.filter { $0.count > 1 }.count
            report.notConsumed = sequencesByID.keys.filter { deliveredIDs[$0] == nil }.sorted()
            report.consumedButNotStored = deliveredIDs.keys.filter { sequencesByID[$0] == nil }.sorted()
        }
        report.lost.sort()
        report.misplaced.sort()
        report.unexpected.sort()
        report.failedButStored.sort()
        return report
    }
}

/// The result of ``ConsistencyChecker/check(published:stored:deliveries:)``.
public struct ConsistencyReport: Sendable, Codable, CustomStringConvertible {
    /// Distinct publish ids.
    public var published = 0
    /// Publish attempts in all.
    public var attempts = 0
    /// Publishes that needed more than one attempt.
    public var retried = 0
    /// Acked publishes.
    public var acked = 0
    /// Acks that said "duplicate" (a retry the stream recognised by its id).
    public var acksMarkedDuplicate = 0
    /// Publishes that certainly failed.
    public var failed = 0
    /// Publishes with an unknown outcome.
    public var unknown = 0
    /// Unknown outcomes found in the stream.
    public var recoveredUnknown = 0
    /// Unknown outcomes not in the stream.
    public var unknownNotStored = 0
    /// Messages in the stream.
    public var storedMessages = 0
    /// Distinct ids in the stream.
    public var storedIDs = 0

    /// Violation: acked but not stored.
    public var lost: [String] = []
    /// Violation: acked at one sequence, stored at another.
    public var misplaced: [String] = []
    /// Violation: stored more than once (id → copies).
    public var duplicated: [String: Int] = [:]
    /// Violation: stored but never published.
    public var unexpected: [String] = []
    /// Violation: reported failed but stored.
    public var failedButStored: [String] = []
    /// Violation of the test itself: one id used for two publishes.
    public var reusedIDs: [String] = []

    /// Distinct ids delivered to consumers (nil without consumers).
    public var consumed: Int?
    /// Deliveries in all.
    public var deliveries: Int?
    /// Deliveries beyond the first of each id.
    public var redeliveries: Int?
    /// Ids delivered to more than one receiver.
    public var deliveredToSeveralReceivers: Int?
    /// Violation (with consumers): stored but never delivered.
    public var notConsumed: [String]?
    /// Violation (with consumers): delivered but not in the stream.
    public var consumedButNotStored: [String]?

    /// Creates an empty report.
    public init() {}

    /// Human-readable violations; empty when the history is consistent.
    public var violations: [String] {
        var list: [String] = []
        func add(_ name: String, _ ids: [String]) {
            if !ids.isEmpty { list.append("\(name): \(ids.count) (\(ids.prefix(5).joined(separator: ", "))\(ids.count > 5 ? ", ..." : ""))") }
        }
        add("lost (acked, not stored)", lost)
        add("misplaced (acked sequence differs)", misplaced)
        add("duplicated in the stream", duplicated.map { "\($0.key)×\($0.value)" }.sorted())
        add("unexpected (stored, never published)", unexpected)
        add("failed but stored", failedButStored)
        add("id reused by the test", reusedIDs)
        add("not consumed (stored, never delivered)", notConsumed ?? [])
        add("consumed but not stored", consumedButNotStored ?? [])
        return list
    }

    /// Whether no violation was found.
    public var isValid: Bool { violations.isEmpty }

    public var description: String {
        var text =
            "published \(published) (attempts \(attempts), retried \(retried)), acked \(acked) (\(acksMarkedDuplicate) as duplicate), failed \(failed), unknown \(unknown) (recovered \(recoveredUnknown), not stored \(unknownNotStored)); stream holds \(storedMessages) messages / \(storedIDs) ids; lost \(lost.count), duplicated \(duplicated.count), unexpected \(unexpected.count), misplaced \(misplaced.count)"
        if let consumed {
            text += "; consumed \(consumed) ids in \(deliveries ?? 0) deliveries (redeliveries \(redeliveries ?? 0)), not consumed \(notConsumed?.count ?? 0)"
        }
        if !isValid { text += "\nVIOLATIONS:\n  " + violations.joined(separator: "\n  ") }
        return text
    }
}

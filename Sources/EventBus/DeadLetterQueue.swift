#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The dead letters a bus keeps, for an operator to list, inspect, requeue and purge.
///
/// Obtain one with ``EventBus/deadLetterQueue()``. A dead letter is the event a consumer gave up
/// (after `maxDeliver` attempts, or `term()`), stored on its dead-letter subject with the
/// ``DeadLetter`` extensions; each has a sequence in the bus's log (JetStream: the stream
/// sequence) that names it in every call here.
///
/// Both built-in backends implement it with the same semantics:
/// - ``list(_:limit:)`` pages oldest first: pass the last entry's sequence as the next filter's
///   ``DeadLetterFilter/after``.
/// - ``requeue(sequence:options:)`` publishes the original event to its original subject, where
///   it starts a new attempt count. Its CloudEvents id is kept (unless
///   ``DeadLetterRequeueOptions/newEventID`` asks otherwise), so handlers that deduplicate by id
///   still can; the backend's duplicate suppression is keyed by the dead letter instead
///   (``requeueMessageID(forSequence:)``), so requeueing the same dead letter twice inside the
///   duplicate window stores it once, while the event dead-lettered again later and requeued again
///   is stored again. Every group subscribed to the original subject receives the requeued event,
///   not only the one that gave it up.
/// - ``requeue(_:options:progress:)`` requeues many, oldest first, and on failure throws a
///   ``DeadLetterRequeueError`` saying how far it got, so a rerun with `after:` continues.
public protocol DeadLetterQueue: Sendable {
    /// The dead letters that match `filter`, oldest first, at most `limit` (1 ...
    /// ``DeadLetterQueueLimits/maxPageSize``).
    ///
    /// - Throws: `invalidOption` for a bad filter or limit, before anything is read.
    func list(_ filter: DeadLetterFilter, limit: Int) async throws -> [DeadLetterEntry]

    /// The dead letter stored at `sequence`, with its payload and the original event.
    ///
    /// - Throws: ``EventBusError/Code/notFound`` when nothing is stored there or what is stored
    ///   there is not a dead letter.
    func inspect(sequence: UInt64) async throws -> DeadLetterRecord

    /// Publishes the dead letter at `sequence` back to its original subject; see the type's
    /// documentation for the id rules.
    ///
    /// - Throws: `notFound` as ``inspect(sequence:)``; the publish's error when the backend did not
    ///   store it (the dead letter is then kept, whatever the options say).
    func requeue(sequence: UInt64, options: DeadLetterRequeueOptions) async throws -> DeadLetterRequeueOutcome

    /// Removes the dead letter at `sequence`; returns `false` when nothing was stored there.
    ///
    /// - Throws: `notFound` when what is stored there is not a dead letter (nothing is removed).
    @discardableResult
    func remove(sequence: UInt64) async throws -> Bool

    /// Removes every dead letter that matches `filter` and returns how many.
    @discardableResult
    func purge(_ filter: DeadLetterFilter) async throws -> Int
}

/// Bounds of the dead-letter API.
public enum DeadLetterQueueLimits {
    /// The largest page ``DeadLetterQueue/list(_:limit:)`` returns.
    public static let maxPageSize = 10_000
}

extension DeadLetterQueue {
    /// The message id (duplicate-suppression key) of the requeue of the dead letter at `sequence`:
    /// one per dead letter, distinct from the event id, which the original publish already used
    /// inside the duplicate window.
    public static func requeueMessageID(forSequence sequence: UInt64) -> String {
        "deadletter-requeue-\(sequence)"
    }

    /// Requeues every dead letter that matches `filter`, oldest first, a page at a time, awaiting
    /// `progress` after each one (so a slow reporter slows the requeue rather than queueing up).
    ///
    /// Resumable: the result and the error both carry ``DeadLetterRequeueProgress/lastSequence``,
    /// the last dead letter handled; run again with `filter.after` set to it to continue. A dead
    /// letter requeued twice (the rerun overlapped) is stored once and counted in
    /// ``DeadLetterRequeueProgress/duplicates``.
    ///
    /// - Parameters:
    ///   - filter: Which dead letters to requeue; `after` is where a rerun resumes.
    ///   - options: ``DeadLetterRequeueOptions/limit`` stops after that many.
    ///   - progress: Called after each dead letter with its outcome and the running totals.
    /// - Returns: The totals: requeued, duplicates and the last sequence handled.
    /// - Throws: ``DeadLetterRequeueError`` with the progress so far and the sequence that failed.
    @discardableResult
    public func requeue(
        _ filter: DeadLetterFilter,
        options: DeadLetterRequeueOptions = .init(),
        progress: (@Sendable (DeadLetterRequeueOutcome, DeadLetterRequeueProgress) async -> Void)? = nil
    ) async throws(DeadLetterRequeueError) -> DeadLetterRequeueProgress {
        var done = DeadLetterRequeueProgress()
        var filter = filter
        let wanted = options.limit ?? Int.max
        while done.processed < wanted {
            let page: [DeadLetterEntry]
            do {
                try Task.checkCancellation()
                page = try await list(filter, limit: min(wanted - done.processed, 256))
            } catch {
                throw DeadLetterRequeueError(progress: done, failedSequence: nil, error: error)
            }
            if page.isEmpty { break }
            for entry in page {
                let outcome: DeadLetterRequeueOutcome
                do {
                    try Task.checkCancellation()
                    outcome = try await requeue(sequence: entry.sequence, options: options)
                } catch {
                    throw DeadLetterRequeueError(progress: done, failedSequence: entry.sequence, error: error)
                }
                if outcome.receipt.duplicate { done.duplicates += 1 } else { done.requeued += 1 }
                if outcome.removed { done.removed += 1 }
                done.lastSequence = entry.sequence
                await progress?(outcome, done)
            }
            filter.after = page[page.count - 1].sequence
        }
        return done
    }
}

/// Which dead letters a call concerns. Every condition set must hold; the default matches all.
public struct DeadLetterFilter: Sendable, Hashable {
    /// The pattern the **original** subject must match (`orders.>`), or `nil` for any.
    public var subjects: SubjectPattern?
    /// The group that gave the event up, or `nil` for any (also dead letters without a group).
    public var group: String?
    /// Only dead letters stored at or after this time.
    public var since: Date?
    /// Only dead letters stored before this time.
    public var until: Date?
    /// Only dead letters whose sequence is above this one: `0` from the start; the last sequence of
    /// a page (or of an interrupted requeue) to continue after it.
    public var after: UInt64
    /// Where dead letters are stored: the default `deadletter.>` covers every
    /// `SubscriptionOptions.deadLetterSubject` left at its default; set it when consumers name
    /// their own dead-letter subject.
    public var deadLetterSubjects: SubjectPattern

    /// `deadletter.>`: where dead letters go unless a subscription names another subject.
    public static let defaultDeadLetterSubjects = SubjectPattern(validated: DeadLetter.defaultSubjectPrefix + ">")

    /// Creates a filter; every argument has a default, which matches every dead letter.
    public init(
        subjects: SubjectPattern? = nil,
        group: String? = nil,
        since: Date? = nil,
        until: Date? = nil,
        after: UInt64 = 0,
        deadLetterSubjects: SubjectPattern = DeadLetterFilter.defaultDeadLetterSubjects
    ) {
        self.subjects = subjects
        self.group = group
        self.since = since
        self.until = until
        self.after = after
        self.deadLetterSubjects = deadLetterSubjects
    }

    /// Throws `invalidOption` naming the value that breaks its rule.
    public func validate() throws(EventBusError) {
        if let group { try SubjectRules.validateGroup(group) }
        if let since, let until, since >= until {
            throw EventBusError(.invalidOption, "dead-letter filter: since \(since) must be before until \(until)")
        }
    }

    /// Whether the filter says more than which subjects: a group, a time range or a start.
    public var hasConditionsBeyondSubjects: Bool {
        group != nil || since != nil || until != nil || after != 0
    }

    /// The dead-letter subjects to read: `deadletter.<subjects>` when the original-subject pattern
    /// can be turned into one (the default location), otherwise ``deadLetterSubjects``; the other
    /// conditions are checked on each entry with ``matches(_:)``.
    public var scanPattern: SubjectPattern {
        guard let subjects, deadLetterSubjects == Self.defaultDeadLetterSubjects else { return deadLetterSubjects }
        return SubjectPattern(validated: DeadLetter.defaultSubjectPrefix + subjects.rawValue)
    }

    /// Whether `entry` satisfies every condition (the sequence and time bounds included).
    public func matches(_ entry: DeadLetterEntry) -> Bool {
        if entry.sequence <= after { return false }
        if !deadLetterSubjects.matches(entry.deadLetterSubject) { return false }
        if let subjects, !subjects.matches(entry.originalSubject) { return false }
        if let group, entry.group != group { return false }
        if let since, let time = entry.time, time < since { return false }
        if let until, let time = entry.time, time >= until { return false }
        return true
    }
}

/// One dead letter as a list shows it: where it came from and why it was given up.
public struct DeadLetterEntry: Sendable, Hashable, Codable {
    /// Its own position in the bus's log (JetStream: stream sequence); names it in every call.
    public var sequence: UInt64
    /// The subject it is stored on (`deadletter.orders.created`).
    public var deadLetterSubject: String
    /// The subject the event was published on, where a requeue publishes it again.
    public var originalSubject: String
    /// The event's CloudEvents id.
    public var eventID: String
    /// The event's CloudEvents type.
    public var eventType: String
    /// The event's CloudEvents source.
    public var eventSource: String
    /// The last error, as the consumer reported it.
    public var reason: String
    /// How many deliveries it had before it was given up, if recorded.
    public var attempts: Int?
    /// The original event's sequence, if recorded.
    public var originalSequence: UInt64?
    /// The group that gave it up; `nil` for a subscriber without a group.
    public var group: String?
    /// When the dead letter was stored, if the backend knows.
    public var time: Date?
    /// The payload's size in bytes.
    public var size: Int

    /// Reads the entry from a stored dead-letter event; `nil` when `event` carries no
    /// ``DeadLetter/subjectHeader`` (it is not a dead letter).
    public init?(sequence: UInt64, storedEvent event: Event, time: Date?) {
        guard let original = event.extensions[DeadLetter.subjectHeader] else { return nil }
        self.sequence = sequence
        deadLetterSubject = event.subject
        originalSubject = original
        eventID = event.id
        eventType = event.type
        eventSource = event.source
        reason = event.extensions[DeadLetter.errorHeader] ?? ""
        attempts = event.extensions[DeadLetter.attemptsHeader].flatMap { Int($0) }
        originalSequence = event.extensions[DeadLetter.streamSequenceHeader].flatMap { UInt64($0) }
        group = event.extensions[DeadLetter.groupHeader]
        self.time = time
        size = event.data.count
    }
}

/// One dead letter in full: its entry and the original event, as a requeue would publish it.
public struct DeadLetterRecord: Sendable, Equatable {
    /// Where it came from and why it was given up.
    public var entry: DeadLetterEntry
    /// The original event: its subject, attributes, extensions (without the dead-letter ones) and
    /// payload.
    public var event: Event

    /// Reads a stored dead-letter event; `nil` when it is not a dead letter.
    public init?(sequence: UInt64, storedEvent: Event, time: Date?) {
        guard let entry = DeadLetterEntry(sequence: sequence, storedEvent: storedEvent, time: time),
            let event = DeadLetter.originalEvent(from: storedEvent)
        else { return nil }
        self.entry = entry
        self.event = event
    }
}

/// How ``DeadLetterQueue/requeue(sequence:options:)`` publishes.
public struct DeadLetterRequeueOptions: Sendable, Hashable {
    /// Give the event a new CloudEvents id (handlers that deduplicate by id then treat it as new).
    /// Default `false`: the id is kept.
    public var newEventID: Bool
    /// Remove the dead letter once the requeued event is stored (also when it was stored by an
    /// earlier requeue). Default `false`: it stays until purged.
    public var removeAfterRequeue: Bool
    /// At most this many (``DeadLetterQueue/requeue(_:options:progress:)``); `nil` for all.
    public var limit: Int?

    /// Creates options; every argument has a default.
    public init(newEventID: Bool = false, removeAfterRequeue: Bool = false, limit: Int? = nil) {
        self.newEventID = newEventID
        self.removeAfterRequeue = removeAfterRequeue
        self.limit = limit
    }
}

/// What one requeue did.
public struct DeadLetterRequeueOutcome: Sendable, Hashable {
    /// The dead letter requeued.
    public var sequence: UInt64
    /// The original subject it was published to.
    public var subject: String
    /// The id the requeued event carries.
    public var eventID: String
    /// The backend's answer; `duplicate` when this dead letter was requeued before inside the
    /// duplicate window (then nothing new was stored).
    public var receipt: PublishReceipt
    /// Whether the dead letter was removed.
    public var removed: Bool

    /// Creates an outcome.
    public init(sequence: UInt64, subject: String, eventID: String, receipt: PublishReceipt, removed: Bool) {
        self.sequence = sequence
        self.subject = subject
        self.eventID = eventID
        self.receipt = receipt
        self.removed = removed
    }
}

/// How far a requeue of many got.
public struct DeadLetterRequeueProgress: Sendable, Hashable, CustomStringConvertible {
    /// Dead letters published and stored as new events.
    public var requeued = 0
    /// Dead letters whose requeue was already stored (requeued before, inside the duplicate window).
    public var duplicates = 0
    /// Dead letters removed after their requeue.
    public var removed = 0
    /// The sequence of the last dead letter handled, `nil` before the first: pass it as
    /// ``DeadLetterFilter/after`` to continue.
    public var lastSequence: UInt64?

    /// Creates progress; every argument has a default (nothing done).
    public init(requeued: Int = 0, duplicates: Int = 0, removed: Int = 0, lastSequence: UInt64? = nil) {
        self.requeued = requeued
        self.duplicates = duplicates
        self.removed = removed
        self.lastSequence = lastSequence
    }

    /// Dead letters handled: requeued or found requeued already.
    public var processed: Int { requeued + duplicates }

    /// `requeued 3, duplicates 1, removed 0, last sequence 42`.
    public var description: String {
        "requeued \(requeued), duplicates \(duplicates), removed \(removed), last sequence \(lastSequence.map(String.init) ?? "none")"
    }
}

/// A requeue of many stopped: what it did before, and what failed.
public struct DeadLetterRequeueError: Error, Sendable, CustomStringConvertible {
    /// What was done before the failure; its ``DeadLetterRequeueProgress/lastSequence`` is where a
    /// rerun continues (`after:`).
    public var progress: DeadLetterRequeueProgress
    /// The dead letter whose requeue failed; `nil` when listing failed.
    public var failedSequence: UInt64?
    /// Why it stopped.
    public var error: any Error

    /// Creates the error.
    public init(progress: DeadLetterRequeueProgress, failedSequence: UInt64?, error: any Error) {
        self.progress = progress
        self.failedSequence = failedSequence
        self.error = error
    }

    /// The failure and how to continue.
    public var description: String {
        let what = failedSequence.map { "requeueing dead letter \($0) failed" } ?? "listing dead letters failed"
        let resume = progress.lastSequence.map { "; continue after sequence \($0)" } ?? "; nothing was requeued"
        return "\(what) after \(progress)\(resume): \(error)"
    }
}

extension DeadLetter {
    /// The extensions the bus adds when it dead-letters an event.
    public static let extensionNames: Set<String> = [
        subjectHeader, attemptsHeader, errorHeader, streamSequenceHeader, groupHeader,
    ]

    /// The original event of a dead-letter copy: back on its original subject, without the
    /// dead-letter extensions; `nil` when `deadLetter` is not a dead letter.
    public static func originalEvent(from deadLetter: Event) -> Event? {
        guard let subject = deadLetter.extensions[subjectHeader] else { return nil }
        var event = deadLetter
        event.subject = subject
        event.extensions = deadLetter.extensions.filter { !extensionNames.contains($0.key) }
        return event
    }
}

extension EventBusError {
    /// The error of a backend without a dead-letter API.
    static func deadLettersUnsupported(_ backend: String) -> EventBusError {
        EventBusError(.unsupported, "\(backend) keeps no dead letters it can list, inspect or requeue")
    }
}

import ArgumentParser
import EventBus
import Foundation

/// `eventbus deadletter ls|show|requeue|purge`: the dead letters of the configured bus.
///
/// Everything a dead letter holds came from a publisher or a handler's error, so every field is
/// escaped for the terminal, in text and in `--json` output alike (JSON escapes keep it valid).
struct DeadLetterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "deadletter",
        abstract: "List, inspect, requeue and purge dead letters (events a consumer gave up).",
        subcommands: [List.self, Show.self, Requeue.self, Purge.self])
}

/// The filter flags every dead-letter command shares.
struct DeadLetterFilterOptions: ParsableArguments {
    @Option(help: "Only dead letters whose original subject matches this pattern (* one token, > the rest).")
    var subject: String?
    @Option(help: "Only dead letters given up by this group.")
    var group: String?
    @Option(help: "Only dead letters stored at or after this time: ISO 8601 (2026-12-03T09:00:00Z) or an age (90s, 15m, 2h, 7d).")
    var since: String?
    @Option(help: "Only dead letters stored before this time (same forms as --since).")
    var until: String?
    @Option(help: "Only dead letters after this sequence (continue a listing or an interrupted requeue).")
    var after: UInt64 = 0
    @Option(help: "Where dead letters are stored, if consumers set their own dead-letter subject.")
    var deadLetterSubjects: String = DeadLetterFilter.defaultDeadLetterSubjects.rawValue

    /// Whether any condition was given.
    var isSet: Bool {
        subject != nil || group != nil || since != nil || until != nil || after != 0
            || deadLetterSubjects != DeadLetterFilter.defaultDeadLetterSubjects.rawValue
    }

    func filter(now: Date = Date()) throws -> DeadLetterFilter {
        var filter = DeadLetterFilter(after: after)
        do throws(EventBusError) {
            if let subject { filter.subjects = try SubjectPattern(subject) }
            filter.deadLetterSubjects = try SubjectPattern(deadLetterSubjects)
        } catch {
            throw ValidationError(shown(error.message))
        }
        filter.group = group
        filter.since = try since.map { try Self.time($0, flag: "--since", now: now) }
        filter.until = try until.map { try Self.time($0, flag: "--until", now: now) }
        do throws(EventBusError) {
            try filter.validate()
        } catch {
            throw ValidationError(shown(error.message))
        }
        return filter
    }

    /// An ISO 8601 time, or an age (`90s`, `15m`, `2h`, `7d`) before `now`.
    static func time(_ text: String, flag: String, now: Date) throws -> Date {
        if let last = text.last, let unit = ["s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0][String(last)],
            let amount = Double(text.dropLast()), amount >= 0, amount.isFinite
        {
            return now.addingTimeInterval(-amount * unit)
        }
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let date = formatter.date(from: text) { return date }
        formatter.formatOptions = [.withInternetDateTime]
        if let date = formatter.date(from: text) { return date }
        throw ValidationError(
            "\(flag) '\(shown(text))' is neither an ISO 8601 time (2026-12-03T09:00:00Z) nor an age (90s, 15m, 2h, 7d)")
    }
}

/// Builds the JSON lines of `--json` output: one object per line, keys in the order given, and
/// every scalar a terminal would act on written as a `\u` escape, so a line is valid JSON and
/// safe to show.
enum JSONLine {
    enum Value {
        case string(String)
        case int(Int)
        case bool(Bool)
        case null
        case object([(String, Value)])
    }

    static func render(_ fields: [(String, Value)]) -> String {
        var text = ""
        write(.object(fields), into: &text)
        return text
    }

    static func optional(_ value: String?) -> Value {
        guard let value else { return .null }
        return .string(value)
    }

    static func optional(_ value: Int?) -> Value {
        guard let value else { return .null }
        return .int(value)
    }

    static func optional(_ value: UInt64?) -> Value {
        guard let value else { return .null }
        return .int(Int(clamping: value))
    }

    static func optional(_ value: Date?) -> Value {
        guard let value else { return .null }
        return .string(iso8601(value))
    }

    private static func write(_ value: Value, into text: inout String) {
        switch value {
        case .string(let string): writeString(string, into: &text)
        case .int(let int): text += String(int)
        case .bool(let bool): text += bool ? "true" : "false"
        case .null: text += "null"
        case .object(let fields):
            text += "{"
            for (index, (key, value)) in fields.enumerated() {
                if index > 0 { text += "," }
                writeString(key, into: &text)
                text += ":"
                write(value, into: &text)
            }
            text += "}"
        }
    }

    /// Strings as the rest of the CLI's `--json` output writes them: printable ASCII, the rest escaped.
    private static func writeString(_ string: String, into text: inout String) {
        JSONValue.writeString(string, into: &text)
    }
}

func iso8601(_ date: Date) -> String {
    let formatter = ISO8601DateFormatter()
    formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
    return formatter.string(from: date)
}

/// Prints a line and flushes it at once, also into a pipe.
func emit(_ line: String) {
    print(line)
    fflush(nil)
}

extension DeadLetterEntry {
    var jsonFields: [(String, JSONLine.Value)] {
        [
            ("sequence", .int(Int(clamping: sequence))),
            ("dead_letter_subject", .string(deadLetterSubject)),
            ("subject", .string(originalSubject)),
            ("id", .string(eventID)),
            ("type", .string(eventType)),
            ("source", .string(eventSource)),
            ("group", JSONLine.optional(group)),
            ("attempts", JSONLine.optional(attempts)),
            ("original_sequence", JSONLine.optional(originalSequence)),
            ("time", JSONLine.optional(time)),
            ("reason", .string(reason)),
            ("size", .int(size)),
        ]
    }

    var textLine: String {
        var line = "#\(sequence) \(shown(originalSubject)) id=\(shown(eventID)) type=\(shown(eventType)) source=\(shown(eventSource))"
        if let group { line += " group=\(shown(group))" }
        if let attempts { line += " attempts=\(attempts)" }
        if let originalSequence { line += " original=#\(originalSequence)" }
        if let time { line += " at \(iso8601(time))" }
        return line + " reason=\(shown(reason))"
    }
}

extension DeadLetterRequeueOutcome {
    var jsonFields: [(String, JSONLine.Value)] {
        [
            ("sequence", .int(Int(clamping: sequence))),
            ("subject", .string(subject)),
            ("id", .string(eventID)),
            ("requeued_sequence", .int(Int(clamping: receipt.sequence))),
            ("duplicate", .bool(receipt.duplicate)),
            ("removed", .bool(removed)),
        ]
    }

    var textLine: String {
        let stored = receipt.duplicate
            ? "already requeued before (stored at sequence \(receipt.sequence)), not stored again"
            : "stored at sequence \(receipt.sequence)"
        return "requeued #\(sequence) to \(shown(subject)) id=\(shown(eventID)): \(stored)\(removed ? ", dead letter removed" : "")"
    }
}

extension DeadLetterRequeueProgress {
    var jsonFields: [(String, JSONLine.Value)] {
        [
            ("requeued", .int(requeued)),
            ("duplicates", .int(duplicates)),
            ("removed", .int(removed)),
            ("last_sequence", JSONLine.optional(lastSequence)),
        ]
    }
}

extension DeadLetterCommand {
    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "ls", abstract: "List dead letters, oldest first.")
        @OptionGroup var bus: BusOptions
        @OptionGroup var filterOptions: DeadLetterFilterOptions
        @Option(help: "At most this many (1...\(DeadLetterQueueLimits.maxPageSize)); continue with --after <last sequence>.")
        var limit = 100

        func validate() throws {
            guard (1...DeadLetterQueueLimits.maxPageSize).contains(limit) else {
                throw ValidationError("--limit \(limit) must be in 1...\(DeadLetterQueueLimits.maxPageSize)")
            }
        }

        func run() async throws {
            let (filter, limit, json) = (try filterOptions.filter(), self.limit, bus.json)
            try await bus.withSharedBus("deadletter ls", allowMemory: false) { eventBus in
                let entries = try await eventBus.deadLetterQueue().list(filter, limit: limit)
                for entry in entries {
                    emit(json ? JSONLine.render(entry.jsonFields) : entry.textLine)
                }
                if !json {
                    var summary = "\(entries.count) dead letter\(entries.count == 1 ? "" : "s")"
                    if entries.count == limit, let last = entries.last {
                        summary += "; there may be more: --after \(last.sequence)"
                    }
                    emit(summary)
                }
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show one dead letter: the original event, its payload, extensions, reason and attempts.")
        @OptionGroup var bus: BusOptions
        @Argument(help: "The dead letter's sequence (from `deadletter ls`).") var sequence: UInt64

        func run() async throws {
            let (sequence, json) = (self.sequence, bus.json)
            try await bus.withSharedBus("deadletter show", allowMemory: false) { eventBus in
                let record = try await eventBus.deadLetterQueue().inspect(sequence: sequence)
                let event = record.event
                let text = String(validating: event.data, as: UTF8.self)
                if json {
                    var fields = record.entry.jsonFields
                    fields += [
                        ("event_time", JSONLine.optional(event.time)),
                        ("content_type", JSONLine.optional(event.dataContentType)),
                        ("correlation_id", JSONLine.optional(event.correlationID)),
                        ("causation_id", JSONLine.optional(event.causationID)),
                        ("traceparent", JSONLine.optional(event.traceParent)),
                        ("extensions", .object(event.extensions.sorted { $0.key < $1.key }.map { ($0.key, JSONLine.Value.string($0.value)) })),
                        ("data", JSONLine.optional(text)),
                        ("data_base64", .string(Data(event.data).base64EncodedString())),
                    ]
                    emit(JSONLine.render(fields))
                    return
                }
                let entry = record.entry
                var lines = [
                    "dead letter  #\(entry.sequence) on \(shown(entry.deadLetterSubject))" + (entry.time.map { " at \(iso8601($0))" } ?? ""),
                    "subject      \(shown(entry.originalSubject))" + (entry.originalSequence.map { " (original sequence \($0))" } ?? ""),
                    "id           \(shown(event.id))",
                    "type         \(shown(event.type))",
                    "source       \(shown(event.source))",
                    "group        \(entry.group.map { shown($0) } ?? "none")",
                    "attempts     \(entry.attempts.map(String.init) ?? "unknown")",
                    "reason       \(shown(entry.reason))",
                ]
                if let time = event.time { lines.append("event time   \(iso8601(time))") }
                if let contentType = event.dataContentType { lines.append("content type \(shown(contentType))") }
                if let correlationID = event.correlationID { lines.append("correlation  \(shown(correlationID))") }
                if let traceParent = event.traceParent { lines.append("traceparent  \(shown(traceParent))") }
                for (name, value) in event.extensions.sorted(by: { $0.key < $1.key }) {
                    lines.append("extension    \(shown(name))=\(shown(value))")
                }
                lines.append(
                    "data         \(event.data.count) bytes: "
                        + (text.map { shown($0) } ?? "(not UTF-8) base64 \(Data(event.data).base64EncodedString())"))
                for line in lines { emit(line) }
            }
        }
    }

    struct Requeue: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Publish dead letters back to their original subjects, oldest first.",
            discussion: """
                Each requeued event starts a new attempt count and keeps its event id (unless --new-id). \
                Requeueing the same dead letter twice inside the duplicate window stores it once. \
                Every group on the original subject receives it again. On a failure, the command says \
                the last sequence it handled: rerun with --after <sequence> to continue.
                """)
        @OptionGroup var bus: BusOptions
        @OptionGroup var filterOptions: DeadLetterFilterOptions
        @Argument(help: "Requeue these dead letters (sequences); without, every one the filter matches.")
        var sequences: [UInt64] = []
        @Flag(help: "Requeue every dead letter (needed when neither sequences nor a filter is given).") var all = false
        @Option(help: "At most this many.") var limit: Int?
        @Flag(help: "Give each requeued event a new event id.") var newID = false
        @Flag(help: "Remove each dead letter once its event is stored again.") var remove = false

        func validate() throws {
            if let limit, limit < 1 { throw ValidationError("--limit \(limit) must be at least 1") }
            if sequences.isEmpty && !filterOptions.isSet && !all {
                throw ValidationError("name the dead letters: sequences, a filter (--subject, --group, --since, --until, --after), or --all")
            }
            if !sequences.isEmpty && (filterOptions.isSet || all || limit != nil) {
                throw ValidationError("give either sequences or a filter (--all, --limit), not both")
            }
        }

        func run() async throws {
            let (filter, sequences, json) = (try filterOptions.filter(), self.sequences, bus.json)
            let options = DeadLetterRequeueOptions(newEventID: newID, removeAfterRequeue: remove, limit: limit)
            try await bus.withSharedBus("deadletter requeue", allowMemory: false) { eventBus in
                let queue = try eventBus.deadLetterQueue()
                let report: @Sendable (DeadLetterRequeueOutcome, DeadLetterRequeueProgress) async -> Void = { outcome, _ in
                    emit(json ? JSONLine.render(outcome.jsonFields) : outcome.textLine)
                }
                let done: DeadLetterRequeueProgress
                do throws(DeadLetterRequeueError) {
                    if sequences.isEmpty {
                        done = try await queue.requeue(filter, options: options, progress: report)
                    } else {
                        done = try await Self.requeue(sequences, on: queue, options: options, progress: report)
                    }
                } catch {
                    let summary = error.progress
                    if json {
                        emit(JSONLine.render([("done", .bool(false))] + summary.jsonFields + [("error", .string("\(error.error)"))]))
                    }
                    let resume = summary.lastSequence.map { "; rerun with --after \($0) to continue" } ?? ""
                    // The status of what stopped it, the message of how far it got.
                    let cause = CLIError(classifying: error.error)
                    throw CLIError(cause.status, "\(error)\(resume)", code: cause.code)
                }
                emit(json ? JSONLine.render([("done", .bool(true))] + done.jsonFields) : "done: \(done)")
            }
        }

        /// Named dead letters, in the order given; stops at the first failure as a filtered requeue does.
        static func requeue(
            _ sequences: [UInt64],
            on queue: any DeadLetterQueue,
            options: DeadLetterRequeueOptions,
            progress: @Sendable (DeadLetterRequeueOutcome, DeadLetterRequeueProgress) async -> Void
        ) async throws(DeadLetterRequeueError) -> DeadLetterRequeueProgress {
            var done = DeadLetterRequeueProgress()
            for sequence in sequences {
                let outcome: DeadLetterRequeueOutcome
                do {
                    outcome = try await queue.requeue(sequence: sequence, options: options)
                } catch {
                    throw DeadLetterRequeueError(progress: done, failedSequence: sequence, error: error)
                }
                if outcome.receipt.duplicate { done.duplicates += 1 } else { done.requeued += 1 }
                if outcome.removed { done.removed += 1 }
                done.lastSequence = sequence
                await progress(outcome, done)
            }
            return done
        }
    }

    struct Purge: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Remove dead letters: named ones, those a filter matches, or --all. Asks first unless --yes.")
        @OptionGroup var bus: BusOptions
        @OptionGroup var filterOptions: DeadLetterFilterOptions
        @Argument(help: "Remove these dead letters (sequences).") var sequences: [UInt64] = []
        @Flag(help: "Remove every dead letter (needed when neither sequences nor a filter is given).") var all = false
        @Flag(help: "Do not ask; needed when not run on a terminal.") var yes = false

        func validate() throws {
            if sequences.isEmpty && !filterOptions.isSet && !all {
                throw ValidationError("name the dead letters to remove: sequences, a filter (--subject, --group, --since, --until, --after), or --all")
            }
            if !sequences.isEmpty && (filterOptions.isSet || all) {
                throw ValidationError("give either sequences or a filter (or --all), not both")
            }
            if !yes && isatty(STDIN_FILENO) == 0 {
                throw ValidationError("purge removes dead letters for good: pass --yes (stdin is not a terminal, so it cannot ask)")
            }
        }

        func run() async throws {
            let (filter, sequences, yes, json) = (try filterOptions.filter(), self.sequences, self.yes, bus.json)
            let what = sequences.isEmpty
                ? (filterOptions.isSet ? "the dead letters matching the filter" : "every dead letter")
                : "dead letter\(sequences.count == 1 ? "" : "s") \(sequences.map { "#\($0)" }.joined(separator: ", "))"
            try await bus.withSharedBus("deadletter purge", allowMemory: false) { eventBus in
                let queue = try eventBus.deadLetterQueue()
                if !yes {
                    var question = "Remove \(what)"
                    if sequences.isEmpty {
                        let found = try await queue.list(filter, limit: DeadLetterQueueLimits.maxPageSize).count
                        question += " (\(found == DeadLetterQueueLimits.maxPageSize ? "at least " : "")\(found) found)"
                    }
                    print("\(question)? [y/N] ", terminator: "")
                    fflush(nil)
                    guard let answer = readLine(), ["y", "yes"].contains(answer.lowercased()) else {
                        emit("nothing removed")
                        return
                    }
                }
                var removed = 0
                if sequences.isEmpty {
                    removed = try await queue.purge(filter)
                } else {
                    for sequence in sequences {
                        if try await queue.remove(sequence: sequence) { removed += 1 }
                    }
                }
                emit(json ? JSONLine.render([("removed", .int(removed))]) : "removed \(removed) dead letter\(removed == 1 ? "" : "s")")
            }
        }
    }
}

public import NATS
import Logging

// What the bus does with its stream at start (DESIGN rule 12: what the bus did not create belongs to
// the operator). A missing stream is created from the configuration. A stream that exists is
// checked, not changed: the bus refuses to start when the stream cannot carry it (a clear error
// naming the field, the value found, what the bus needs and how to fix it) and logs every other
// difference once. Only `streamUpdatePolicy = .update` changes an existing stream, and then from the
// server's own configuration, so that what the bus does not model (metadata, compression,
// allow_direct, deny_delete, subject transforms, ...) survives, and never lowering its replicas.

extension JetStreamEventBus {
    /// What the bus does with a stream that already exists on the server at start.
    public enum StreamUpdatePolicy: String, Sendable, CaseIterable {
        /// Change nothing (the default). The bus checks that the stream can carry it: its subjects
        /// cover the bus's subjects, its retention is limits or interest, it has a duplicate
        /// window, it acknowledges publishes and is not sealed, a mirror or a counter stream.
        /// When it cannot, start fails with an error that says what to change; other differences
        /// from the configuration (replicas, max age, storage, ...) are logged once and kept.
        case never
        /// Apply the configured stream settings to the existing stream: add the bus's subjects
        /// where the stream's do not cover them, set max age, max messages, max bytes and the
        /// duplicate window, turn acknowledgements on, and raise replicas to the configured
        /// number. The update starts from the server's configuration, so every field the bus does
        /// not set is kept. Replicas are never lowered (lower them with
        /// `nats stream edit <stream> --replicas N`); storage and retention cannot change on a live
        /// stream and are left as they are.
        case update
    }

    /// How a stream found on the server compares with what the bus needs and its configuration.
    public struct StreamCheck: Sendable {
        /// Something that keeps the stream from carrying the bus.
        public struct Problem: Sendable, Hashable, CustomStringConvertible {
            /// The stream configuration field, by its JetStream JSON name (`subjects`, `retention`, ...).
            public var field: String
            /// The value found on the server.
            public var found: String
            /// What the bus needs, and why.
            public var needed: String
            /// How an operator fixes it.
            public var fix: String
            /// Whether ``StreamUpdatePolicy/update`` fixes it at start.
            public var fixedByUpdate: Bool

            /// `<field> is <found>: the bus needs <needed>; <fix>`.
            public var description: String { "\(field) is \(found): the bus needs \(needed); \(fix)" }
        }

        /// A difference the bus works with: kept as the server holds it, and reported.
        public struct Difference: Sendable, Hashable, CustomStringConvertible {
            /// The stream configuration field, by its JetStream JSON name.
            public var field: String
            /// The value found on the server.
            public var found: String
            /// The configured value, or `nil` for a server setting the bus does not configure.
            public var configured: String?
            /// Why it matters a little, if it does.
            public var note: String?

            /// `<field> <found> (configured <configured>; <note>)`.
            public var description: String {
                var text = "\(field) \(found)"
                var details: [String] = []
                if let configured { details.append("configured \(configured)") }
                if let note { details.append(note) }
                if !details.isEmpty { text += " (" + details.joined(separator: "; ") + ")" }
                return text
            }
        }

        /// The stream's name.
        public var stream: String
        /// What keeps the stream from carrying the bus; empty when it can.
        public var problems: [Problem]
        /// Differences from the configuration, and operator settings the bus does not model,
        /// that the bus works with.
        public var differences: [Difference]

        /// Compares the server's configuration of the stream with what the bus needs and with
        /// `configuration`.
        public init(stream found: NATSStreamConfiguration, configuration: Configuration) {
            stream = found.name
            problems = Self.problems(found, configuration: configuration)
            differences = Self.differences(found, configuration: configuration)
        }

        /// The problems that stop the bus from starting under `policy`: all of them under
        /// ``StreamUpdatePolicy/never``; under ``StreamUpdatePolicy/update`` those an update cannot fix.
        public func blockingProblems(policy: StreamUpdatePolicy) -> [Problem] {
            switch policy {
            case .never: problems
            case .update: problems.filter { !$0.fixedByUpdate }
            }
        }

        /// The sentence the bus refuses to start with: the stream, each problem, and how to fix it.
        public func refusal(policy: StreamUpdatePolicy) -> String {
            let blocking = blockingProblems(policy: policy)
            var text = "stream '\(stream)' exists but cannot carry this event bus: "
                + blocking.map(\.description).joined(separator: "; ")
            if policy == .never && blocking.contains(where: \.fixedByUpdate) {
                text += " (the bus changes an existing stream only when told to: set JetStreamEventBus.Configuration.streamUpdatePolicy = .update, or EVENT_BUS_JETSTREAM_STREAM_UPDATE=update, to let it fix \(blocking.filter(\.fixedByUpdate).map(\.field).joined(separator: ", ")) at start)"
            }
            return text
        }

        /// The subjects the bus publishes to and consumes from: events under `<prefix>.>`, dead
        /// letters under `<prefix>.deadletter.>` (both covered by the default `<prefix>.>`), or the
        /// configured ``Configuration/streamSubjects``.
        static func requiredSubjects(_ configuration: Configuration) -> [String] {
            configuration.effectiveStreamSubjects
        }

        private static func problems(_ found: NATSStreamConfiguration, configuration: Configuration) -> [Problem] {
            let name = found.name
            let extra = found.additionalFields
            var problems: [Problem] = []
            let otherStream = "point the bus at another stream (EVENT_BUS_JETSTREAM_STREAM) or let it create one under a new name"
            if let mirror = extra["mirror"], mirror != .null {
                problems.append(
                    Problem(
                        field: "mirror", found: "set (\(mirror.objectValue?["name"]?.stringValue.map { "of '\($0)'" } ?? "\(mirror)"))",
                        needed: "a stream that accepts publishes (a mirror only copies another stream)",
                        fix: "point the bus at the origin stream, or \(otherStream)", fixedByUpdate: false))
            }
            let missing = requiredSubjects(configuration).filter { required in
                !found.subjects.contains { subject($0, covers: required) }
            }
            if !missing.isEmpty {
                let wanted = found.subjects.filter { live in !missing.contains { subject($0, covers: live) } } + missing
                problems.append(
                    Problem(
                        field: "subjects", found: "[\(found.subjects.joined(separator: ", "))]",
                        needed: "subjects covering \(missing.map { "'\($0)'" }.joined(separator: ", ")) (the bus publishes its events and dead letters there and consumes them from there)",
                        fix: "add them with `nats stream edit \(name) --subjects '\(wanted.joined(separator: ","))'`",
                        fixedByUpdate: true))
            }
            if found.retention == .workQueue {
                problems.append(
                    Problem(
                        field: "retention", found: "workqueue",
                        needed: "limits or interest retention (a work-queue stream allows one consumer per subject, so a second group, or a subscriber without group, on the same events is refused, and retention cannot change on a live stream)",
                        fix: otherStream, fixedByUpdate: false))
            }
            if found.duplicateWindow <= .zero {
                problems.append(
                    Problem(
                        field: "duplicate_window", found: "0",
                        needed: "a duplicate window (publishing the same event id twice stores it once only inside it; configured \(configuration.duplicateWindow))",
                        fix: "set one with `nats stream edit \(name) --dupe-window \(seconds(configuration.duplicateWindow))`",
                        fixedByUpdate: true))
            }
            if extra["no_ack"]?.boolValue == true {
                problems.append(
                    Problem(
                        field: "no_ack", found: "true",
                        needed: "acknowledged publishes (publish returns once the stream stored the event, which it learns from the ack)",
                        fix: "turn acknowledgements on with `nats stream edit \(name) --ack`", fixedByUpdate: true))
            }
            if extra["sealed"]?.boolValue == true {
                problems.append(
                    Problem(
                        field: "sealed", found: "true", needed: "a stream that accepts new events (a sealed stream never does again)",
                        fix: otherStream, fixedByUpdate: false))
            }
            if extra["allow_msg_counter"]?.boolValue == true {
                problems.append(
                    Problem(
                        field: "allow_msg_counter", found: "true",
                        needed: "a stream that stores events (a counter stream accepts only counter increments)",
                        fix: otherStream, fixedByUpdate: false))
            }
            if let transform = extra["subject_transform"]?.objectValue,
                let source = transform["src"]?.stringValue, let destination = transform["dest"]?.stringValue,
                !destination.isEmpty, source != destination,
                requiredSubjects(configuration).contains(where: { subjectsOverlap(source.isEmpty ? ">" : source, $0) })
            {
                problems.append(
                    Problem(
                        field: "subject_transform", found: "'\(source.isEmpty ? ">" : source)' → '\(destination)'",
                        needed: "events stored under the subjects they were published on (the bus's consumers filter on those and would never see a transformed event)",
                        fix: "remove the transform (nats stream edit \(name), or the JetStream API), or \(otherStream)",
                        fixedByUpdate: false))
            }
            return problems
        }

        private static func differences(_ found: NATSStreamConfiguration, configuration: Configuration) -> [Difference] {
            var differences: [Difference] = []
            func compare(_ field: String, _ live: String, _ wanted: String, note: String? = nil) {
                if live != wanted { differences.append(Difference(field: field, found: live, configured: wanted, note: note)) }
            }
            let required = requiredSubjects(configuration)
            let others = found.subjects.filter { live in !required.contains { subject($0, covers: live) } }
            if !others.isEmpty {
                differences.append(
                    Difference(field: "subjects", found: "[\(found.subjects.joined(separator: ", "))]", configured: "[\(required.joined(separator: ", "))]",
                               note: "the stream also stores \(others.joined(separator: ", "))"))
            }
            compare(
                "num_replicas", "\(found.replicas)", "\(configuration.replicas)",
                note: found.replicas > configuration.replicas ? "the bus never lowers replicas" : nil)
            compare("storage", found.storage.rawValue, configuration.storage.rawValue, note: "cannot change on a live stream")
            compare(
                "retention", found.retention.rawValue, NATSStreamConfiguration.Retention.limits.rawValue,
                note: found.retention == .interest
                    ? "an event leaves the stream once every consumer acknowledged it, and one published while no consumer exists is not kept, so a new group starting at .all sees only what remains"
                    : nil)
            compare("max_age", age(found.maxAge), age(configuration.maxAge))
            compare("max_msgs", limit(found.maxMessages), limit(configuration.maxMessages))
            compare("max_bytes", limit(found.maxBytes), limit(configuration.maxBytes))
            if found.duplicateWindow > .zero {
                var wanted = configuration.duplicateWindow
                if configuration.maxAge > .zero && wanted > configuration.maxAge { wanted = configuration.maxAge }
                compare(
                    "duplicate_window", "\(found.duplicateWindow)", "\(wanted)",
                    note: found.duplicateWindow < wanted ? "a publish retried after this long may be stored twice" : nil)
            }
            if found.discard != .old { differences.append(Difference(field: "discard", found: found.discard.rawValue, note: "publishes fail once a limit is reached")) }
            if found.maxMessagesPerSubject != -1 {
                differences.append(Difference(field: "max_msgs_per_subject", found: "\(found.maxMessagesPerSubject)"))
            }
            if found.maxMessageSize != -1 {
                differences.append(Difference(field: "max_msg_size", found: "\(found.maxMessageSize)", note: "larger events are refused"))
            }
            // Operator settings the bus does not model: reported so that nobody wonders whether the
            // bus saw them, and kept.
            for (key, value) in found.additionalFields.sorted(by: { $0.key < $1.key }) {
                guard let shown = Self.operatorSetting(key, value) else { continue }
                differences.append(Difference(field: key, found: shown))
            }
            return differences
        }

        /// How an unmodelled field reads in a report, or `nil` when it holds the server's default
        /// (or the server's own bookkeeping) and is not worth a line.
        private static func operatorSetting(_ key: String, _ value: NATSJSONValue) -> String? {
            switch key {
            case "mirror", "no_ack", "sealed", "allow_msg_counter", "subject_transform": return nil  // problems, above
            case "metadata":
                // `_nats.*` keys are the server's own (version, API level).
                let own = (value.objectValue ?? [:]).filter { !$0.key.hasPrefix("_nats.") }
                return own.isEmpty ? nil : NATSJSONValue.object(own).description
            case "compression":
                return value.stringValue.flatMap { $0.isEmpty || $0 == "none" ? nil : $0 }
            default:
                switch value {
                case .null, .bool(false), .integer(0), .integer(-1), .double(0): return nil  // -1: "no limit"
                case .string(let text) where text.isEmpty: return nil
                case .array(let values) where values.isEmpty: return nil
                case .object(let fields) where fields.isEmpty: return nil
                default: return value.description
                }
            }
        }

        private static func age(_ duration: Duration) -> String { duration == .zero ? "unlimited" : "\(duration)" }
        private static func limit(_ value: Int64) -> String { value < 0 ? "unlimited" : "\(value)" }
        private static func seconds(_ duration: Duration) -> String { "\(duration.components.seconds)s" }

        /// Whether every subject matching `other` also matches `pattern` (NATS wildcards: `*` one
        /// token, `>` one or more trailing tokens). Each stream subject is compared on its own: a
        /// requirement covered only by the union of several stream subjects counts as not covered.
        static func subject(_ pattern: String, covers other: String) -> Bool {
            let mine = pattern.split(separator: ".", omittingEmptySubsequences: false)
            let theirs = other.split(separator: ".", omittingEmptySubsequences: false)
            for (index, token) in mine.enumerated() {
                if token == ">" { return theirs.count > index }
                guard index < theirs.count else { return false }
                let their = theirs[index]
                if their == ">" { return false }
                if token != "*" && (their == "*" || their != token) { return false }
            }
            return mine.count == theirs.count
        }

        /// Whether some subject matches both patterns.
        static func subjectsOverlap(_ first: String, _ second: String) -> Bool {
            let a = first.split(separator: ".", omittingEmptySubsequences: false)
            let b = second.split(separator: ".", omittingEmptySubsequences: false)
            for index in 0..<max(a.count, b.count) {
                let x = index < a.count ? a[index] : nil
                let y = index < b.count ? b[index] : nil
                if x == ">" { return y != nil }
                if y == ">" { return x != nil }
                guard let x, let y else { return false }
                if x != "*" && y != "*" && x != y { return false }
            }
            return true
        }
    }

    /// The stream configuration ``StreamUpdatePolicy/update`` sends: the server's, with the bus's
    /// settings applied (missing subjects added, limits and duplicate window set, acks on,
    /// replicas raised but never lowered); every other field as the server holds it.
    static func updatedStream(_ live: NATSStreamConfiguration, configuration: Configuration) -> NATSStreamConfiguration {
        var stream = live
        for required in StreamCheck.requiredSubjects(configuration)
        where !stream.subjects.contains(where: { StreamCheck.subject($0, covers: required) }) {
            // A subject the new one covers is redundant (and the server refuses overlapping subjects).
            stream.subjects.removeAll { StreamCheck.subject(required, covers: $0) }
            stream.subjects.append(required)
        }
        stream.maxAge = configuration.maxAge
        stream.maxMessages = configuration.maxMessages
        stream.maxBytes = configuration.maxBytes
        var window = configuration.duplicateWindow
        if configuration.maxAge > .zero && window > configuration.maxAge { window = configuration.maxAge }
        stream.duplicateWindow = window
        stream.replicas = max(live.replicas, configuration.replicas)
        if live.additionalFields["no_ack"]?.boolValue == true { stream.additionalFields["no_ack"] = .bool(false) }
        return stream
    }

    /// One pass of the start-time stream policy: create the stream when it is missing; otherwise
    /// check it, update it only under ``StreamUpdatePolicy/update``, and log the differences kept.
    ///
    /// - Throws: ``NATSError/Code/invalidConfiguration`` (not retriable) with
    ///   ``StreamCheck/refusal(policy:)`` when the stream cannot carry the bus; the server's error
    ///   when reading, creating or updating fails.
    static func applyStreamPolicy(
        _ jetStream: NATSJetStream, _ configuration: Configuration, logger: Logger
    ) async throws(NATSError) {
        let name = configuration.streamName
        var info: NATSStreamInfo
        do {
            info = try await jetStream.streamInfo(name)
        } catch where error.jetStreamErrorCode == NATSJetStreamErrorCode.streamNotFound {
            do {
                try await jetStream.createStream(configuration.stream)
                logger.info(
                    "created stream", metadata: ["stream": "\(name)", "subjects": "\(configuration.effectiveStreamSubjects)", "replicas": "\(configuration.replicas)"])
                return
            } catch where error.jetStreamErrorCode == NATSJetStreamErrorCode.streamNameInUse {
                // Another service created it, with other settings, between the look and the create:
                // it is now the operator's stream like any other found at start.
                info = try await jetStream.streamInfo(name)
            }
        }
        let policy = configuration.streamUpdatePolicy
        var check = StreamCheck(stream: info.configuration, configuration: configuration)
        if !check.blockingProblems(policy: policy).isEmpty {
            throw NATSError(.invalidConfiguration, check.refusal(policy: policy), isRetriable: false)
        }
        if policy == .update {
            let updated = updatedStream(info.configuration, configuration: configuration)
            if updated != info.configuration {
                let changed = updated.differences(from: info.configuration)
                info = try await jetStream.updateStream(updated)
                logger.notice(
                    "updated stream (stream update policy 'update'); every other setting kept",
                    metadata: ["stream": "\(name)", "changed": "\(changed.joined(separator: ", "))"])
                check = StreamCheck(stream: info.configuration, configuration: configuration)
                if !check.problems.isEmpty {
                    throw NATSError(.invalidConfiguration, check.refusal(policy: .never), isRetriable: false)
                }
            }
        }
        if !check.differences.isEmpty {
            logger.notice(
                "stream differs from the bus configuration; kept as it is",
                metadata: [
                    "stream": "\(name)", "differences": "\(check.differences.map(\.description).joined(separator: "; "))",
                    "policy": "\(policy == .never ? "never (EVENT_BUS_JETSTREAM_STREAM_UPDATE=update applies the configured settings)" : "update")",
                ])
        }
    }
}

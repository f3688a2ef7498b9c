#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import EventBus
import Logging
import NATS
import Synchronization

/// An `EventStore` on a JetStream stream: one subject per aggregate, the expected version checked
/// by the server.
///
/// How the contract maps onto JetStream:
/// - **Append** publishes to `<prefix>.<category>.<id>` with `Nats-Expected-Last-Subject-Sequence` set
///   to the stream sequence of the aggregate's last event, so the server itself refuses an append when
///   another writer got there first. Each event carries its version in an `EventStore-Version` header
///   and its id as `Nats-Msg-Id`. Several events go as one atomic batch (`Nats-Batch-*` headers,
///   nats-server 2.12 and later, `allow_atomic` on the stream): stored all together or not at all.
///   The store remembers each aggregate's last version and sequence from its own appends and loads, so
///   a writer appending to an aggregate it just read pays one round trip.
/// - **Load** reads the aggregate's last message (one `STREAM.MSG.GET` by subject) to know where the
///   history ends, then replays the subject with an ordered consumer (no durable consumer is left
///   behind). A snapshot remembers the stream sequence of its version, so loading from it replays only
///   the events after it.
/// - **Query** and **count** replay the category's subjects (or the whole stream) from the query's
///   start time and filter on the client: cost grows with the events in that range.
/// - **Subscribe** is an ordered consumer on the aggregate's subject that keeps running: catch-up and
///   live are one replay, so nothing is missed or repeated at the switch.
/// - **Snapshots** are values in a key-value bucket, key `<category>.<id>`.
/// - **Delete** purges the aggregate's subject and its snapshot key.
public final class JetStreamEventStore: EventStore {
    /// The header that carries an event's version within its aggregate.
    public static let versionHeader = "EventStore-Version"

    /// Where an aggregate's history ends: its last event's version, stream sequence and id.
    struct Tip: Sendable {
        var version: UInt64
        var sequence: UInt64
        var lastID: String

        static let empty = Tip(version: 0, sequence: 0, lastID: "")
    }

    /// The most aggregates whose tip the store remembers; past it the memory starts over.
    static let tipCacheLimit = 10_000

    let connection: NATSConnection
    let jetStream: NATSJetStream
    let configuration: Configuration
    let snapshots: NATSKeyValue
    let logger: Logger
    private let tips = Mutex<[AggregateID: Tip]>([:])
    private let replays = Mutex<(isClosed: Bool, open: [Int: NATSOrderedConsumer], nextID: Int)>((false, [:], 0))

    private init(connection: NATSConnection, configuration: Configuration, snapshots: NATSKeyValue, logger: Logger) {
        self.connection = connection
        self.jetStream = connection.jetStream(timeout: configuration.timeout)
        self.configuration = configuration
        self.snapshots = snapshots
        self.logger = logger
    }

    /// Opens the store on a connected NATS connection, creating (or completing) its stream and
    /// snapshot bucket unless ``Configuration/provision`` is off. The connection stays the caller's:
    /// closing the store does not close it.
    ///
    /// - Throws: `invalidArgument` for a bad configuration;
    ///   `unavailable` when the stream or bucket cannot be created or found.
    public static func open(
        on connection: NATSConnection,
        configuration: Configuration = .init(),
        logger: Logger = Logger(label: "eventstore.jetstream")
    ) async throws(EventStoreError) -> JetStreamEventStore {
        try configuration.validate()
        // As the bus's start: services on a cluster open the store at the same moment, and a stream
        // being created or without a leader leaves requests unanswered for seconds. Each attempt
        // waits 2 s at most, so that one unanswered request does not use up the retries' budget.
        let jetStream = connection.jetStream(timeout: min(configuration.timeout, .seconds(2)))
        let snapshots: NATSKeyValue
        let takesAtomicBatches: Bool
        do throws(NATSError) {
            (snapshots, takesAtomicBatches) = try await retryingThroughElections(
                "event store stream '\(configuration.streamName)'", logger: logger
            ) { () throws(NATSError) in try await provision(configuration, on: jetStream, logger: logger) }
        } catch {
            throw EventStoreError(
                .unavailable, "opening the event store (stream '\(configuration.streamName)', bucket '\(configuration.snapshotBucket)'): \(error.message)",
                isRetriable: error.isRetriable, underlying: error)
        }
        guard takesAtomicBatches else {
            throw EventStoreError(
                .unavailable,
                "stream '\(configuration.streamName)' does not take atomic batches (allow_atomic is off, or the server is older than 2.12), so the store cannot append several events all or nothing; enable allow_atomic on it",
                isRetriable: false)
        }
        return JetStreamEventStore(connection: connection, configuration: configuration, snapshots: snapshots, logger: logger)
    }

    /// One attempt of `open`: the stream and bucket (created or completed when provisioning), and
    /// whether the stream takes atomic batches.
    private static func provision(
        _ configuration: Configuration, on jetStream: NATSJetStream, logger: Logger
    ) async throws(NATSError) -> (snapshots: NATSKeyValue, takesAtomicBatches: Bool) {
        let snapshots: NATSKeyValue
        if configuration.provision {
            try await provisionStream(configuration, on: jetStream, logger: logger)
            do {
                // An existing bucket is used as it is, whatever its settings.
                snapshots = try await jetStream.keyValue(bucket: configuration.snapshotBucket)
            } catch where error.jetStreamErrorCode == NATSJetStreamErrorCode.streamNotFound {
                var bucket = NATSKeyValueConfiguration(bucket: configuration.snapshotBucket)
                bucket.storage = configuration.storage
                bucket.replicas = configuration.replicas
                bucket.description = "Event store snapshots, one key per aggregate"
                snapshots = try await jetStream.ensureKeyValue(bucket)
            }
        } else {
            snapshots = try await jetStream.keyValue(bucket: configuration.snapshotBucket)
        }
        // A server before 2.12 ignores allow_atomic and stores Nats-Batch-* messages one by one
        // without an error, so batches would not be atomic: read back what the stream says.
        let takesAtomicBatches = try await jetStream.streamInfo(configuration.streamName).configuration
            .additionalFields["allow_atomic"] == .bool(true)
        return (snapshots, takesAtomicBatches)
    }

    /// Creates the stream, or makes an existing one (an operator's, or the bus's when the store shares
    /// it) take what the store needs without rewriting anything else: its subjects must already cover
    /// the store's, and `allow_atomic` is the one setting added. Differences that matter are logged.
    static func provisionStream(_ configuration: Configuration, on jetStream: NATSJetStream, logger: Logger) async throws(NATSError) {
        let wanted = configuration.streamConfiguration
        let existing: NATSStreamInfo
        do {
            existing = try await jetStream.streamInfo(configuration.streamName)
        } catch where error.jetStreamErrorCode == NATSJetStreamErrorCode.streamNotFound {
            _ = try await jetStream.createStream(wanted)
            return
        }
        var live = existing.configuration
        let storeSubjects = "\(configuration.subjectPrefix).>"
        guard live.subjects.contains(where: { subject($0, covers: storeSubjects) }) else {
            throw NATSError(
                .invalidConfiguration,
                "stream '\(configuration.streamName)' stores \(live.subjects), which do not cover the event store's '\(storeSubjects)'; add it to the stream or choose another stream or prefix (the store does not change an existing stream's subjects)")
        }
        if live.maxAge != .zero {
            logger.warning(
                "the event store's stream expires messages: stored events older than its max_age are lost",
                metadata: ["stream": "\(configuration.streamName)", "max_age": "\(live.maxAge)"])
        }
        if live.maxMessagesPerSubject > 0
            && !(live.discard == .new && live.additionalFields["discard_new_per_subject"] == .bool(true))
        {
            logger.warning(
                "the event store's stream drops an aggregate's oldest events past max_msgs_per_subject instead of refusing appends",
                metadata: ["stream": "\(configuration.streamName)", "max_msgs_per_subject": "\(live.maxMessagesPerSubject)"])
        }
        if let limit = configuration.maxEventsPerAggregate, live.maxMessagesPerSubject != limit {
            logger.warning(
                "the event store's stream exists with another per-aggregate limit; the store does not change it",
                metadata: ["stream": "\(configuration.streamName)", "max_msgs_per_subject": "\(live.maxMessagesPerSubject)", "configured": "\(limit)"])
        }
        guard live.additionalFields["allow_atomic"] != .bool(true) else { return }
        live.additionalFields["allow_atomic"] = .bool(true)
        _ = try await jetStream.updateStream(live)
    }

    /// Whether the stream subject `pattern` matches every subject `filter` matches (both may have wildcards).
    package static func subject(_ pattern: String, covers filter: String) -> Bool {
        let patternTokens = pattern.split(separator: ".", omittingEmptySubsequences: false)
        let filterTokens = filter.split(separator: ".", omittingEmptySubsequences: false)
        for (index, token) in patternTokens.enumerated() {
            if token == ">" { return index < filterTokens.count }
            guard index < filterTokens.count, filterTokens[index] != ">" else { return false }
            if token != "*" && token != filterTokens[index] { return false }
        }
        return patternTokens.count == filterTokens.count
    }

    // MARK: Subjects and messages

    /// The duplicate key of an event in an aggregate: `<category>.<id>.<event id>`. JetStream's
    /// duplicate window is stream-wide, so the bare event id would make an event reused on another
    /// aggregate (or published on the bus too, when the store shares the bus's stream) look like a
    /// repeat of this one.
    func messageID(of event: Event, in aggregate: AggregateID) -> String {
        "\(aggregate.category).\(aggregate.id).\(event.id)"
    }

    func subject(of aggregate: AggregateID) -> String {
        "\(configuration.subjectPrefix).\(aggregate.category).\(aggregate.id)"
    }

    /// The aggregate a stored subject belongs to, or `nil` for a subject the store did not write.
    func aggregate(ofSubject subject: String) -> AggregateID? {
        let prefix = configuration.subjectPrefix + "."
        guard subject.hasPrefix(prefix) else { return nil }
        let parts = subject.dropFirst(prefix.count).split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2 else { return nil }
        return try? AggregateID(category: String(parts[0]), id: String(parts[1]))
    }

    /// A stored message as a recorded event; `nil` when it is not one of the store's (no version).
    /// `known` is the aggregate when the replay's filter already says which it is (a load), so the
    /// subject need not be parsed again for every message.
    func recorded(
        subject: String, headers: NATSHeaders, payload: [UInt8], sequence: UInt64, time: Date?, known: AggregateID? = nil
    ) -> RecordedEvent? {
        guard let aggregate = known ?? aggregate(ofSubject: subject),
            let version = headers[Self.versionHeader].flatMap({ UInt64($0) }), version > 0
        else { return nil }
        let eventSubject = CloudEventsNATSBinding.subjectAttribute(in: headers) ?? subject
        let event = CloudEventsNATSBinding.event(subject: eventSubject, headers: headers, payload: payload)
        return RecordedEvent(event: event, aggregate: aggregate, version: version, position: sequence, recordedAt: time ?? Date())
    }

    func recorded(_ message: NATSJetStreamMessage, _ metadata: NATSJetStreamMessage.Metadata, known: AggregateID? = nil) -> RecordedEvent? {
        recorded(
            subject: message.subject, headers: message.headers, payload: Array(message.payload), sequence: metadata.streamSequence,
            time: metadata.timestamp, known: known)
    }

    /// Reads where the aggregate's history ends now (one round trip) and remembers it.
    func fetchTip(_ aggregate: AggregateID) async throws(EventStoreError) -> Tip {
        let last: NATSStoredMessage?
        do {
            last = try await jetStream.lastMessage(stream: configuration.streamName, subject: subject(of: aggregate))
        } catch {
            throw Self.failure(error, "reading the last event of \(aggregate)")
        }
        guard let last else {
            remember(.empty, for: aggregate)
            return .empty
        }
        guard let version = last.headers[Self.versionHeader].flatMap({ UInt64($0) }) else {
            throw EventStoreError(
                .corrupted,
                "the last message of \(aggregate) (stream sequence \(last.sequence)) has no \(Self.versionHeader) header: something other than the event store wrote to '\(subject(of: aggregate))'")
        }
        let tip = Tip(version: version, sequence: last.sequence, lastID: last.headers[NATSPublishOptions.Header.messageID] ?? "")
        remember(tip, for: aggregate)
        return tip
    }

    func remember(_ tip: Tip?, for aggregate: AggregateID) {
        tips.withLock { tips in
            if tip != nil && tips.count >= Self.tipCacheLimit && tips[aggregate] == nil { tips.removeAll(keepingCapacity: true) }
            tips[aggregate] = tip
        }
    }

    func rememberedTip(_ aggregate: AggregateID) -> Tip? {
        tips.withLock { $0[aggregate] }
    }

    func checkOpen() throws(EventStoreError) {
        if replays.withLock({ $0.isClosed }) { throw EventStoreError(.closed, "the event store is closed") }
    }

    /// A NATS failure as a store error: time-outs and lost connections are retriable.
    static func failure(_ error: NATSError, _ what: String) -> EventStoreError {
        switch error.code {
        case .timeout, .disconnected:
            return EventStoreError(.timeout, "\(what): \(error.message)", isRetriable: true, underlying: error)
        case .connectionClosed:
            return EventStoreError(.closed, "\(what): the connection is closed", underlying: error)
        default:
            return EventStoreError(.unavailable, "\(what): \(error.message)", isRetriable: error.isRetriable, underlying: error)
        }
    }

    // MARK: Replays

    /// Registers an ordered consumer so that ``close()`` can stop it; `nil` after close.
    func register(_ consumer: NATSOrderedConsumer) -> Int? {
        replays.withLock { replays in
            guard !replays.isClosed else { return nil }
            replays.nextID += 1
            replays.open[replays.nextID] = consumer
            return replays.nextID
        }
    }

    func unregister(_ id: Int) {
        _ = replays.withLock { $0.open.removeValue(forKey: id) }
    }

    /// Replays `subjects` from `deliverPolicy` in stream order, handing each message to `body` until it
    /// returns false or the message at `endSequence` was handed over; then deletes the consumer.
    func replay(
        _ subjects: [String], from deliverPolicy: NATSConsumerConfiguration.DeliverPolicy, through endSequence: UInt64,
        what: String, _ body: (NATSJetStreamMessage, NATSJetStreamMessage.Metadata) throws(EventStoreError) -> Bool
    ) async throws(EventStoreError) {
        let consumer: NATSOrderedConsumer
        do {
            consumer = try jetStream.orderedConsumer(stream: configuration.streamName, filterSubjects: subjects, deliverPolicy: deliverPolicy)
        } catch {
            throw Self.failure(error, what)
        }
        guard let id = register(consumer) else { throw EventStoreError(.closed, "the event store is closed") }
        defer { unregister(id) }
        // The end was read before the replay began; if those messages go away meanwhile (a delete),
        // the consumer would wait for ever. A watchdog re-reads the end while nothing arrives and
        // stops the replay when nothing more can come.
        let progress = ReplayProgress()
        var failure: EventStoreError?
        await withTaskGroup(of: Void.self) { group in
            group.addTask { [jetStream, stream = configuration.streamName] in
                var checked: UInt64 = .max
                while !Task.isCancelled {
                    try? await Task.sleep(for: .seconds(2))
                    let seen = progress.lastSequence.load(ordering: .relaxed)
                    guard seen == checked, !Task.isCancelled else {
                        checked = seen
                        continue
                    }
                    let last: NATSStoredMessage?
                    do {
                        last = try await jetStream.lastMessage(stream: stream, subject: subjects[0])
                    } catch {
                        continue
                    }
                    if let last, last.sequence > seen { continue }
                    progress.drained.store(true, ordering: .releasing)
                    consumer.stop()
                    return
                }
            }
            var iterator = consumer.makeAsyncIterator()
            while true {
                let message: NATSJetStreamMessage?
                do throws(NATSError) {
                    message = try await iterator.next()
                } catch {
                    failure = Self.failure(error, what)
                    break
                }
                guard let message else {
                    if !progress.drained.load(ordering: .acquiring) {
                        failure = EventStoreError(.closed, "\(what): the replay ended early (the store or its connection closed, or the task was cancelled)")
                    }
                    break
                }
                // Parsed from the reply subject: once per message.
                guard let metadata = message.metadata else { continue }
                progress.lastSequence.store(metadata.streamSequence, ordering: .relaxed)
                do throws(EventStoreError) {
                    if try !body(message, metadata) { break }
                } catch {
                    failure = error
                    break
                }
                if metadata.streamSequence >= endSequence || metadata.pending == 0 { break }
            }
            group.cancelAll()
            consumer.stop()
            // The stopped iterator deletes its server-side consumer on this last call.
            _ = try? await iterator.next()
        }
        if let failure { throw failure }
    }

    /// What a replay's watchdog reads: the last sequence delivered, and whether it stopped the replay.
    final class ReplayProgress: Sendable {
        let lastSequence = Atomic<UInt64>(0)
        let drained = Atomic<Bool>(false)
    }

    // MARK: EventStore

    @discardableResult
    public func append(_ events: [Event], to aggregate: AggregateID, expectedVersion: ExpectedVersion) async throws(EventStoreError)
        -> AppendResult
    {
        try EventStoreRules.checkAppend(events, to: aggregate)
        try checkOpen()
        var tip = rememberedTip(aggregate)
        var tipIsFresh = false
        var waits = 0
        // Each refusal by the server means another writer appended; `.any` tries again with the new
        // tip, an exact expectation is checked against it. Bounded, so a livelock ends as a conflict.
        for _ in 0..<64 {
            if tip == nil {
                tip = try await fetchTip(aggregate)
                tipIsFresh = true
            }
            let current = tip!
            if current.lastID == messageID(of: events[events.count - 1], in: aggregate), current.version >= UInt64(events.count) {
                // These events are the aggregate's last: an earlier attempt of this append was stored.
                return AppendResult(
                    firstVersion: current.version - UInt64(events.count) + 1, version: current.version, position: current.sequence,
                    wasAlreadyStored: true)
            }
            guard expectedVersion.isMet(by: current.version) else {
                if !tipIsFresh {
                    tip = nil
                    continue
                }
                if let earlier = try await earlierAttempt(of: events, on: aggregate, expected: expectedVersion) {
                    return earlier
                }
                throw EventStoreError(
                    .conflict, "\(aggregate) is at version \(current.version); the append expected \(expectedVersion)",
                    currentVersion: current.version)
            }
            switch try await publish(events, to: aggregate, after: current) {
            case .stored(let sequence, let duplicate):
                let version = current.version + UInt64(events.count)
                remember(Tip(version: version, sequence: sequence, lastID: messageID(of: events[events.count - 1], in: aggregate)), for: aggregate)
                return AppendResult(firstVersion: current.version + 1, version: version, position: sequence, wasAlreadyStored: duplicate)
            case .duplicate(let sequence):
                remember(nil, for: aggregate)
                return try await storedEarlier(events, on: aggregate, lastSequence: sequence)
            case .wrongLastSequence:
                tip = nil
            case .anotherWriteInFlight:
                // Re-reading at once would find the tip unchanged and be refused again: give the
                // other write a moment to land (or fail), then check the expectation against it.
                tip = nil
                waits += 1
                try? await Task.sleep(for: .milliseconds(min(2 * waits, 50)))
            }
        }
        let now = try await fetchTip(aggregate)
        throw EventStoreError(
            .conflict, "\(aggregate) kept changing under 64 attempts of an append expecting \(expectedVersion); it is at version \(now.version)",
            currentVersion: now.version)
    }

    /// The result of an earlier attempt of this append, when the events after the expected version are
    /// these events (a retry of an append whose outcome was unknown).
    private func earlierAttempt(of events: [Event], on aggregate: AggregateID, expected: ExpectedVersion) async throws(EventStoreError)
        -> AppendResult?
    {
        let base: UInt64
        switch expected {
        case .any: return nil
        case .noEvents: base = 0
        case .exactly(let version): base = version
        }
        let stored = try await load(aggregate, from: base + 1, limit: events.count)
        guard stored.count == events.count, zip(stored, events).allSatisfy({ $0.event.id == $1.id }) else { return nil }
        return AppendResult(
            firstVersion: base + 1, version: base + UInt64(events.count), position: stored[stored.count - 1].position,
            wasAlreadyStored: true)
    }

    /// The result of an append the server recognised as a duplicate (its ids within the duplicate window).
    private func storedEarlier(_ events: [Event], on aggregate: AggregateID, lastSequence: UInt64) async throws(EventStoreError)
        -> AppendResult
    {
        let message: NATSStoredMessage
        do {
            message = try await jetStream.message(stream: configuration.streamName, sequence: lastSequence)
        } catch {
            throw Self.failure(error, "reading the earlier copy of an append to \(aggregate)")
        }
        guard message.subject == subject(of: aggregate),
            let version = message.headers[Self.versionHeader].flatMap({ UInt64($0) }), version >= UInt64(events.count)
        else {
            throw EventStoreError(
                .corrupted, "stream sequence \(lastSequence), which the server named as an earlier copy of an append to \(aggregate), is not one")
        }
        return AppendResult(
            firstVersion: version - UInt64(events.count) + 1, version: version, position: lastSequence, wasAlreadyStored: true)
    }

    enum PublishOutcome {
        case stored(sequence: UInt64, duplicate: Bool)
        case duplicate(sequence: UInt64)
        case wrongLastSequence
        /// A replicated stream refused the expectation because another write to the aggregate is
        /// still being replicated (JetStream 10164): the tip is about to move, or not.
        case anotherWriteInFlight
    }

    /// The batch headers of JetStream atomic publish.
    enum BatchHeader {
        static let id = "Nats-Batch-Id"
        static let sequence = "Nats-Batch-Sequence"
        static let commit = "Nats-Batch-Commit"
    }

    private func publish(_ events: [Event], to aggregate: AggregateID, after tip: Tip) async throws(EventStoreError) -> PublishOutcome {
        let subject = subject(of: aggregate)
        let what = "appending \(events.count) event\(events.count == 1 ? "" : "s") to \(aggregate) after version \(tip.version)"
        let batchID = events.count > 1 ? Event.makeID() : nil
        do {
            var ack: NATSPublishAck?
            for (offset, event) in events.enumerated() {
                var headers = CloudEventsNATSBinding.headers(for: event)
                headers.set(messageID(of: event, in: aggregate), for: NATSPublishOptions.Header.messageID)
                headers.add(String(tip.version + UInt64(offset) + 1), for: Self.versionHeader)
                if offset == 0 {
                    // In a batch the server checks it against the stream as it was before the batch.
                    headers.add(String(tip.sequence), for: NATSPublishOptions.Header.expectedLastSubjectSequence)
                }
                if let batchID {
                    headers.add(batchID, for: BatchHeader.id)
                    headers.add(String(offset + 1), for: BatchHeader.sequence)
                }
                if offset < events.count - 1 {
                    // Batch members before the commit need no answer; the commit's says how it went.
                    try connection.publish(subject: subject, payload: event.data, headers: headers)
                } else {
                    if batchID != nil { headers.add("1", for: BatchHeader.commit) }
                    ack = try await jetStream.publish(subject: subject, payload: event.data, headers: headers)
                }
            }
            guard let ack else { throw EventStoreError(.invalidArgument, "\(what): no events") }
            return ack.duplicate && batchID == nil ? .duplicate(sequence: ack.sequence) : .stored(sequence: ack.sequence, duplicate: false)
        } catch let error as NATSError {
            if error.jetStreamErrorCode == NATSJetStreamErrorCode.wrongLastSequence {
                return .wrongLastSequence
            }
            if error.jetStreamErrorCode == NATSJetStreamErrorCode.wrongLastSequenceConstant {
                return .anotherWriteInFlight
            }
            if error.message.contains("maximum messages per subject") {
                throw EventStoreError(
                    .limitReached,
                    "\(what): \(aggregate) holds the most events the stream allows per aggregate (\(configuration.maxEventsPerAggregate.map(String.init) ?? "the stream's max_msgs_per_subject")); nothing was stored",
                    underlying: error)
            }
            if error.jetStreamErrorCode == NATSJetStreamErrorCode.atomicPublishDisabled {
                throw EventStoreError(
                    .unavailable,
                    "\(what): the stream '\(configuration.streamName)' does not take atomic batches (it needs nats-server 2.12 or later and allow_atomic: true); nothing was stored",
                    isRetriable: false, underlying: error)
            }
            if batchID != nil && error.code == .jetStream {
                // Too many batches in flight, a member lost on the way, a batch over the server's
                // size: the server abandoned the whole batch.
                throw EventStoreError(
                    .unavailable, "\(what): the server refused the batch (\(error.message)); nothing was stored, append it again",
                    isRetriable: true, underlying: error)
            }
            if error.code == .timeout || error.code == .disconnected || error.code == .cancelled {
                // The publish left: whether it was stored is unknown.
                remember(nil, for: aggregate)
                throw EventStoreError(
                    .timeout, "\(what): the outcome is unknown (\(error.message)); append the same events again: a stored attempt is recognised",
                    isRetriable: true, underlying: error)
            }
            throw Self.failure(error, what)
        } catch let error as EventStoreError {
            throw error
        } catch {
            throw EventStoreError(.unavailable, "\(what): \(error)", underlying: error)
        }
    }

    public func load(_ aggregate: AggregateID, from version: UInt64) async throws(EventStoreError) -> [RecordedEvent] {
        try await load(aggregate, from: version, limit: nil)
    }

    private func load(_ aggregate: AggregateID, from version: UInt64, limit: Int?, startSequence: UInt64? = nil) async throws(EventStoreError)
        -> [RecordedEvent]
    {
        try EventStoreRules.checkVersion(version, "load from version")
        try checkOpen()
        let tip = try await fetchTip(aggregate)
        guard tip.version >= version else { return [] }
        var events: [RecordedEvent] = []
        events.reserveCapacity(Int(min(tip.version - version + 1, UInt64(min(limit ?? 100_000, 100_000)))))
        let policy: NATSConsumerConfiguration.DeliverPolicy = startSequence.map { .byStartSequence($0) } ?? .all
        try await replay([subject(of: aggregate)], from: policy, through: tip.sequence, what: "loading \(aggregate)") {
            message, metadata throws(EventStoreError) in
            guard let recorded = recorded(message, metadata, known: aggregate) else {
                throw EventStoreError(
                    .corrupted, "a message of \(aggregate) (stream sequence \(metadata.streamSequence)) is not an event store event")
            }
            if recorded.version >= version { events.append(recorded) }
            return limit.map { events.count < $0 } ?? true
        }
        return events
    }

    public func version(of aggregate: AggregateID) async throws(EventStoreError) -> UInt64 {
        try checkOpen()
        return try await fetchTip(aggregate).version
    }

    public func query(_ query: EventQuery) async throws(EventStoreError) -> [RecordedEvent] {
        try query.validate()
        var found: [RecordedEvent] = []
        try await scan(query) { recorded in
            found.append(recorded)
            return found.count < query.limit
        }
        return found
    }

    public func count(_ query: EventQuery) async throws(EventStoreError) -> Int {
        var query = query
        query.limit = EventQuery.maxLimit
        try query.validate()
        var count = 0
        try await scan(query) { _ in
            count += 1
            return true
        }
        return count
    }

    /// Replays what a query covers, from its start time to the last message there now, handing the
    /// matching events to `body` until it returns false.
    private func scan(_ query: EventQuery, _ body: (RecordedEvent) -> Bool) async throws(EventStoreError) {
        try checkOpen()
        let filter = query.category.map { "\(configuration.subjectPrefix).\($0).*" } ?? "\(configuration.subjectPrefix).>"
        let last: NATSStoredMessage?
        do {
            last = try await jetStream.lastMessage(stream: configuration.streamName, subject: filter)
        } catch {
            throw Self.failure(error, "finding the end of '\(filter)'")
        }
        guard let last else { return }
        if let from = query.from, let time = last.time, time < from { return }
        let policy: NATSConsumerConfiguration.DeliverPolicy = query.from.map { .byStartTime($0) } ?? .all
        try await replay([filter], from: policy, through: last.sequence, what: "querying '\(filter)'") { message, metadata in
            guard let recorded = recorded(message, metadata) else { return true }
            if let until = query.until, recorded.recordedAt >= until { return false }
            return query.matches(recorded) ? body(recorded) : true
        }
    }

    public func subscribe(to aggregate: AggregateID, from version: UInt64) async throws(EventStoreError) -> EventStoreSubscription {
        try EventStoreRules.checkVersion(version, "subscribe from version")
        try checkOpen()
        let consumer: NATSOrderedConsumer
        do {
            consumer = try jetStream.orderedConsumer(stream: configuration.streamName, filterSubjects: [subject(of: aggregate)])
        } catch {
            throw Self.failure(error, "subscribing to \(aggregate)")
        }
        guard let id = register(consumer) else { throw EventStoreError(.closed, "the event store is closed") }
        let follower = Follower(
            iterator: consumer.makeAsyncIterator(),
            onEnd: { [self] in
                unregister(id)
                await discard(consumer)
            },
            onDrop: { [self] in
                unregister(id)
                abandon(consumer)
            })
        return EventStoreSubscription(
            .init(
                next: { [self] () async throws(EventStoreError) -> RecordedEvent? in
                    while true {
                        let message: NATSJetStreamMessage?
                        do throws(NATSError) {
                            message = try await follower.next()
                        } catch {
                            await follower.end()
                            throw Self.failure(error, "following \(aggregate)")
                        }
                        guard let message else {
                            await follower.end()
                            return nil
                        }
                        guard let metadata = message.metadata else { continue }
                        guard let recorded = recorded(message, metadata, known: aggregate) else {
                            await follower.end()
                            throw EventStoreError(
                                .corrupted, "a message of \(aggregate) (stream sequence \(metadata.streamSequence)) is not an event store event")
                        }
                        if recorded.version >= version { return recorded }
                    }
                },
                cancel: { await follower.end() }))
    }

    /// Stops a replay and deletes its server-side consumer now (its iterator, if one is still
    /// reading, returns `nil`; its own attempt to delete then finds nothing).
    func discard(_ consumer: NATSOrderedConsumer) async {
        let name = consumer.health.consumer
        consumer.stop()
        if !name.isEmpty {
            try? await jetStream.deleteConsumer(stream: configuration.streamName, name: name)
        }
    }

    /// ``discard(_:)`` where nobody can wait (a dropped subscription's `deinit`): the delete request
    /// goes out without waiting for the server's answer.
    func abandon(_ consumer: NATSOrderedConsumer) {
        let name = consumer.health.consumer
        consumer.stop()
        if !name.isEmpty {
            try? jetStream.requestConsumerDeletion(stream: configuration.streamName, name: name)
        }
    }

    /// Holds a subscription's iterator between calls, and ends the subscription once: on `cancel()`,
    /// at its end or failure (`onEnd`), or when the subscription is dropped without either
    /// (`onDrop`, from `deinit`, which cannot wait), so that no server-side consumer outlives it.
    ///
    /// `@unchecked Sendable`: the ordered consumer's iterator is not `Sendable`, and it is only ever
    /// used by one `next()` at a time, which `inUse` enforces; iteration is sequential by the
    /// `AsyncIteratorProtocol` contract anyway.
    final class Follower: @unchecked Sendable {
        private var iterator: NATSOrderedConsumer.Iterator
        private let inUse = Atomic<Bool>(false)
        private let ended = Atomic<Bool>(false)
        private let onEnd: @Sendable () async -> Void
        private let onDrop: @Sendable () -> Void

        init(
            iterator: NATSOrderedConsumer.Iterator, onEnd: @escaping @Sendable () async -> Void,
            onDrop: @escaping @Sendable () -> Void
        ) {
            self.iterator = iterator
            self.onEnd = onEnd
            self.onDrop = onDrop
        }

        func next() async throws(NATSError) -> NATSJetStreamMessage? {
            if ended.load(ordering: .acquiring) { return nil }
            guard inUse.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else {
                throw NATSError(.invalidArgument, "an event store subscription was iterated by two tasks at once; iterate it from one")
            }
            defer { inUse.store(false, ordering: .releasing) }
            return try await iterator.next()
        }

        /// Ends the subscription (once): a reader waiting in `next()` gets `nil`.
        func end() async {
            guard ended.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged else { return }
            await onEnd()
        }

        deinit {
            guard !ended.load(ordering: .acquiring) else { return }
            onDrop()
        }
    }

    // MARK: Snapshots

    /// How a snapshot is kept in the bucket: its version, the stream sequence of that version's event
    /// (where loading resumes), when it was taken and the state.
    struct StoredSnapshot: Codable {
        var version: UInt64
        var sequence: UInt64
        var takenAt: Date
        var state: Data
    }

    func snapshotKey(_ aggregate: AggregateID) -> String {
        "\(aggregate.category).\(aggregate.id)"
    }

    public func saveSnapshot(_ snapshot: AggregateSnapshot) async throws(EventStoreError) {
        try EventStoreRules.checkVersion(snapshot.version, "snapshot version")
        try checkOpen()
        let aggregate = snapshot.aggregate
        let tip = try await fetchTip(aggregate)
        guard snapshot.version <= tip.version else {
            throw EventStoreError(
                .invalidArgument, "snapshot of \(aggregate) at version \(snapshot.version) is past its current version \(tip.version)")
        }
        let sequence: UInt64
        if snapshot.version == tip.version {
            sequence = tip.sequence
        } else {
            guard let event = try await load(aggregate, from: snapshot.version, limit: 1).first, event.version == snapshot.version else {
                throw EventStoreError(.invalidArgument, "snapshot of \(aggregate) at version \(snapshot.version): no event has that version")
            }
            sequence = event.position
        }
        let value: Data
        do {
            value = try JSONEncoder().encode(
                StoredSnapshot(version: snapshot.version, sequence: sequence, takenAt: snapshot.takenAt, state: Data(snapshot.state)))
        } catch {
            throw EventStoreError(.invalidArgument, "snapshot of \(aggregate) cannot be encoded: \(error)")
        }
        do {
            _ = try await snapshots.put(snapshotKey(aggregate), Array(value))
        } catch {
            throw Self.failure(error, "saving the snapshot of \(aggregate)")
        }
    }

    private func storedSnapshot(of aggregate: AggregateID) async throws(EventStoreError) -> StoredSnapshot? {
        try checkOpen()
        let entry: NATSKeyValueEntry?
        do {
            entry = try await snapshots.get(snapshotKey(aggregate))
        } catch {
            throw Self.failure(error, "reading the snapshot of \(aggregate)")
        }
        guard let entry else { return nil }
        do {
            return try JSONDecoder().decode(StoredSnapshot.self, from: Data(entry.value))
        } catch {
            throw EventStoreError(.corrupted, "the snapshot of \(aggregate) (revision \(entry.revision)) cannot be read: \(error)")
        }
    }

    public func snapshot(of aggregate: AggregateID) async throws(EventStoreError) -> AggregateSnapshot? {
        try await storedSnapshot(of: aggregate).map {
            AggregateSnapshot(aggregate: aggregate, version: $0.version, state: Array($0.state), takenAt: $0.takenAt)
        }
    }

    public func loadFromSnapshot(_ aggregate: AggregateID) async throws(EventStoreError) -> LoadedAggregate {
        guard let stored = try await storedSnapshot(of: aggregate) else {
            return LoadedAggregate(snapshot: nil, events: try await load(aggregate, from: 1))
        }
        let snapshot = AggregateSnapshot(aggregate: aggregate, version: stored.version, state: Array(stored.state), takenAt: stored.takenAt)
        // Only the events after the snapshot's, from the stream sequence after its event.
        let events = try await load(aggregate, from: stored.version + 1, limit: nil, startSequence: stored.sequence + 1)
        return LoadedAggregate(snapshot: snapshot, events: events)
    }

    // MARK: Delete and close

    @discardableResult
    public func delete(_ aggregate: AggregateID) async throws(EventStoreError) -> UInt64 {
        try checkOpen()
        remember(nil, for: aggregate)
        do {
            try await snapshots.purge(snapshotKey(aggregate))
            return try await jetStream.purgeStream(configuration.streamName, subject: subject(of: aggregate))
        } catch {
            throw Self.failure(error, "deleting \(aggregate)")
        }
    }

    public func close() async {
        let open = replays.withLock { replays in
            replays.isClosed = true
            defer { replays.open.removeAll() }
            return Array(replays.open.values)
        }
        for consumer in open { await discard(consumer) }
    }
}

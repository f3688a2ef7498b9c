import EventBus
import EventBusJetStream
import EventBusReliabilitySupport
import Foundation
import NATS
import NATSTestSupport
import Testing

extension ReliabilityTests {
    /// E1: the event store on an R3 stream whose leader dies while writers append.
    @Suite("Event store under faults")
    struct EventStoreFaults {
        let profile = FaultProfile.current

        /// E1: four writers append to eight aggregates (one owned by each writer, four shared) with
        /// exact expected versions, single events and atomic batches of 5, while the stream's leader is
        /// SIGKILLed and restarted. Every append is retried with the same events until it has a
        /// result. Afterwards every acked event is in its aggregate's history at the version its
        /// result named, every history runs 1...n without a gap, every event id is stored exactly
        /// once, and nothing is stored that was not acked.
        @Test("E1: event store appends survive the stream leader's SIGKILL: no loss, no gap, no double", .timeLimit(.minutes(10)))
        func appendsAcrossLeaderKills() async throws {
            let began = ContinuousClock.now
            let kills = profile.storeLeaderKills
            var result = ReliabilityResult(
                test: "E1", title: "event store on R3: stream leader SIGKILLed \(kills)x while 4 writers append, restarted after 3 s")
            let cluster = try await offPool { try NATSClusterProcess() }
            let harness = ClusterHarness(cluster: cluster)
            let admin = try await harness.connect(name: "admin")
            let probe = JetStreamProbe(connection: admin)
            var configuration = JetStreamEventStore.Configuration()
            configuration.replicas = 3
            configuration.timeout = .seconds(2)
            let stream = configuration.streamName

            // Each writer is its own client, with its own store (its own memory of aggregate tips).
            let writers = 4
            var connections: [NATSConnection] = []
            var stores: [JetStreamEventStore] = []
            for index in 0..<writers {
                let connection = try await harness.connect(name: "writer-\(index)")
                connections.append(connection)
                // Right after start the meta leader may still be settling.
                let store = try await withRetries(timeout: .seconds(30)) {
                    try await JetStreamEventStore.open(on: connection, configuration: configuration)
                }
                stores.append(store)
            }
            _ = try await probe.waitForStreamLeader(stream)
            let load = try StoreWriteLoad(
                writers: writers, shared: 4, idPrefix: runID("e1"), ratePerWriter: profile.ratePerPublisher, batchSize: 5,
                retryBudget: .seconds(30))
            load.start(on: stores)
            try await Task.sleep(for: profile.steadyPeriod)

            var elections: [Double] = []
            for _ in 1...kills {
                let leader = try await harness.leaderIndex(of: stream, probe: probe)
                let name = cluster.serverNames[leader]
                let killed = FaultEvent("SIGKILL leader \(name)")
                result.faults.append(killed)
                try await offPool { cluster.kill(leader) }
                // A new leader among the two survivors (the probe's own client may have to reconnect first).
                var newLeader: String?
                let deadline = ContinuousClock.now + .seconds(30)
                while ContinuousClock.now < deadline {
                    if let candidate = try? await probe.waitForStreamLeader(stream, timeout: .seconds(2)), candidate != name {
                        newLeader = candidate
                        break
                    }
                    try await Task.sleep(for: .milliseconds(100))
                }
                #expect(newLeader != nil, "no node took the lead within 30 s of killing \(name)")
                elections.append(wallClock() - killed.at)
                try await Task.sleep(for: .seconds(3))
                try await offPool { try cluster.start(leader) }
                // Continue once every node (the restarted one included) has caught up.
                try await offPool { try cluster.waitUntilHealthy(timeout: .seconds(60)) }
                try await Task.sleep(for: profile.steadyPeriod)
            }
            await load.stop()

            result.recoverySeconds = load.timeline.unavailability(after: result.faults)
            for (fault, recovery) in zip(result.faults, result.recoverySeconds) {
                #expect(recovery < 30, "appends did not resume within 30 s after \(fault.what)")
            }

            // What the store holds, read two ways: each aggregate through the store, and every
            // message of the stream raw (its Nats-Msg-Id and sequence), which does not trust the store.
            let reader = try await JetStreamEventStore.open(on: admin, configuration: configuration)
            var histories: [AggregateID: [RecordedEvent]] = [:]
            for aggregate in load.aggregates {
                histories[aggregate] = try await withRetries(timeout: .seconds(30)) { try await reader.load(aggregate) }
            }
            let raw = try await probe.readStream(stream, timeout: .seconds(120))
            let records = load.history.all
            let check = StoreCheck(records: records, histories: histories, raw: raw)
            let figures = load.figures

            result.published = records.reduce(0) { $0 + $1.ids.count }
            result.acked = check.ackedEvents
            result.unknown = records.filter { $0.result == nil }.reduce(0) { $0 + $1.ids.count }
            result.lost = check.lost.count
            result.duplicatesStored = check.duplicated.count
            result.unexpected = check.unexpected.count
            let summary = Self.summary(records: records, figures: figures, check: check, elections: elections)
            result.notes.append(summary)
            result.seconds = (ContinuousClock.now - began).seconds
            result.record()
            print("E1: \(summary)")
            for (code, message) in figures.retriableSamples.sorted(by: { $0.key < $1.key }) { print("E1: a \(code): \(message)") }

            let unresolved = records.filter { $0.result == nil }
            #expect(check.ackedEvents > 0, "nothing was acked at all")
            #expect(unresolved.count == 0, "appends without a result within 30 s: \(unresolved.map { $0.ids[0] }.prefix(5))")
            #expect(check.lost.count == 0, "acked but not in the history: \(check.lost.prefix(5))")
            #expect(check.misplaced.count == 0, "not at the version or position the result named: \(check.misplaced.prefix(5))")
            #expect(check.gaps.count == 0, "histories not numbered 1...n: \(check.gaps.prefix(5))")
            #expect(check.duplicated.count == 0, "stored more than once: \(check.duplicated.prefix(5))")
            #expect(check.unexpected.count == 0, "stored but never acked: \(check.unexpected.prefix(5))")
            #expect(check.storedEvents == check.ackedEvents, "\(check.storedEvents) events stored, \(check.ackedEvents) acked")
            #expect(check.rawMessages == check.storedEvents, "the stream holds \(check.rawMessages) messages, the histories \(check.storedEvents)")
            #expect(figures.ownedConflicts == 0, "conflicts on aggregates only one writer appends to")
            #expect(figures.conflictsAtExpectedVersion == 0, "conflicts that named the expected version as the current one")
            #expect(figures.partiallyStored.count == 0, "atomic batches stored in part: \(figures.partiallyStored.prefix(5))")
            #expect(figures.unexpectedErrors == 0, "errors that are neither retriable nor conflicts, e.g. \(figures.unexpectedErrorSamples)")

            await reader.close()
            for store in stores { await store.close() }
            for connection in connections { await connection.close() }
            await admin.close()
        }

        /// One line of figures: what the writers did and met, and what the check found.
        static func summary(records: [StoreWriteLoad.Record], figures: StoreWriteLoad.Counters, check: StoreCheck, elections: [Double]) -> String {
            func count(_ path: StoreWriteLoad.Path) -> Int { records.filter { $0.path == path }.count }
            let acked = records.filter { $0.result != nil }
            let batches = acked.filter { $0.ids.count > 1 }.count
            let others = figures.otherRetriable.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
            return "appends acked \(acked.count) (\(acked.count - batches) single, \(batches) batches; \(check.ackedEvents) events), "
                + "retried \(records.filter { $0.attempts > 1 }.count), timeouts \(figures.timeouts)"
                + (others.isEmpty ? "" : ", other retriable errors \(others)")
                + ", recognised as already stored \(count(.recognised)), found in history after a conflict \(count(.foundInHistory))"
                + ", conflicts \(figures.conflicts) (+\(figures.conflictsAfterRetry) after a retry, \(figures.ownedConflicts) on owned aggregates, \(figures.restlessConflicts) after the store's 64 tries, \(figures.conflictsAtExpectedVersion) naming the expected version)"
                + ", other errors \(figures.unexpectedErrors), failed reads \(figures.failedReads), unresolved \(count(.unresolved))"
                + "; stored \(check.storedEvents) events in \(check.aggregates) aggregates (\(check.rawMessages) stream messages)"
                + ", lost \(check.lost.count), gaps \(check.gaps.count), duplicated \(check.duplicated.count), unexpected \(check.unexpected.count)"
                + "; new leader seen after " + elections.map { String(format: "%.1f s", $0) }.joined(separator: ", ")
        }
    }
}

/// The event store's histories checked against what the writers were told.
struct StoreCheck {
    /// Events of appends that got a result.
    var ackedEvents = 0
    /// Events in all histories.
    var storedEvents = 0
    /// Messages in the stream.
    var rawMessages = 0
    /// Aggregates with at least one event.
    var aggregates = 0
    /// Acked event ids missing from their aggregate's history.
    var lost: [String] = []
    /// Acked events at another version or position than the result named.
    var misplaced: [String] = []
    /// Aggregates whose versions are not 1...n in order.
    var gaps: [String] = []
    /// Event ids stored more than once (in the histories or the raw stream), with the count.
    var duplicated: [String: Int] = [:]
    /// Stored event ids that no append with a result carried.
    var unexpected: [String] = []

    init(records: [StoreWriteLoad.Record], histories: [AggregateID: [RecordedEvent]], raw: [StoredMessage]) {
        rawMessages = raw.count
        var stored: [String: (aggregate: AggregateID, version: UInt64, position: UInt64)] = [:]
        for (aggregate, events) in histories {
            if !events.isEmpty { aggregates += 1 }
            storedEvents += events.count
            let versions = events.map(\.version)
            if versions != (0..<events.count).map({ UInt64($0) + 1 }) {
                gaps.append("\(aggregate): versions \(versions.prefix(3))...\(versions.suffix(3)) for \(events.count) events")
            }
            for event in events {
                if stored[event.event.id] != nil { duplicated[event.event.id, default: 1] += 1 }
                stored[event.event.id] = (aggregate, event.version, event.position)
            }
        }
        var rawCounts: [String: Int] = [:]
        // The store keys duplicates by `<category>.<id>.<event id>`.
        for message in raw { rawCounts[String(message.id.split(separator: ".", maxSplits: 2).last ?? ""), default: 0] += 1 }
        for (id, count) in rawCounts where count > 1 { duplicated[id] = max(duplicated[id] ?? 0, count) }

        var acked = Set<String>()
        for record in records {
            guard let result = record.result else { continue }
            ackedEvents += record.ids.count
            for (offset, id) in record.ids.enumerated() {
                acked.insert(id)
                guard let place = stored[id], place.aggregate == record.aggregate else {
                    lost.append("\(id) (\(record.aggregate), \(record.path.rawValue))")
                    continue
                }
                if place.version != result.firstVersion + UInt64(offset) {
                    misplaced.append("\(id): version \(place.version), result said \(result.firstVersion + UInt64(offset))")
                }
                if offset == record.ids.count - 1, place.position != result.position {
                    misplaced.append("\(id): position \(place.position), result said \(result.position)")
                }
            }
        }
        unexpected = Set(stored.keys).union(rawCounts.keys).subtracting(acked).sorted()
    }
}

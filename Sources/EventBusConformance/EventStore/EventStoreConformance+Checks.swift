#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import EventBus
import Testing

extension EventStoreConformance {
    static let appendThenLoad = Check(
        "appendThenLoad",
        "appended events load back whole, versions 1...n, positions increasing; load from a version, version(of:) and an unknown aggregate"
    ) { context in
        let store = context.store
        let order = try context.aggregate("a1")
        let events = (1...3).map { context.event("placed", $0, correlation: "corr-1") }
        let result = try await store.append(events, to: order, expectedVersion: .noEvents)
        #expect(result.firstVersion == 1 && result.version == 3 && !result.wasAlreadyStored, "append result \(result)")
        let loaded = try await store.load(order)
        #expect(loaded.map(\.version) == [1, 2, 3], "versions \(loaded.map(\.version))")
        for (got, sent) in zip(loaded.map(\.event), events) {
            #expect(sameEvent(got, sent), "the event came back changed: sent \(sent), got \(got)")
        }
        #expect(loaded.allSatisfy { $0.aggregate == order }, "aggregates \(loaded.map(\.aggregate))")
        #expect(zip(loaded, loaded.dropFirst()).allSatisfy { $0.position < $1.position }, "positions \(loaded.map(\.position))")
        #expect(loaded.last?.position == result.position, "the result's position \(result.position) is not the last event's")
        let tail = try await store.load(order, from: 2)
        #expect(tail.map(\.version) == [2, 3], "load from 2: \(tail.map(\.version))")
        #expect(try await store.load(order, from: 4).isEmpty, "load past the end is empty")
        #expect(try await store.version(of: order) == 3)
        let unknown = try context.aggregate("nobody")
        #expect(try await store.load(unknown).isEmpty)
        #expect(try await store.version(of: unknown) == 0)
    }

    static let expectedVersionIsChecked = Check(
        "expectedVersionIsChecked",
        "an append expecting the wrong version is refused with conflict and the current version, storing nothing; the right one and .any succeed"
    ) { context in
        let store = context.store
        let order = try context.aggregate("a2")
        try await store.append([context.event("placed", 1), context.event("paid", 2)], to: order, expectedVersion: .noEvents)
        let first = await expectStoreError(.conflict, ".noEvents on an aggregate at 2") {
            try await store.append([context.event("placed", 3)], to: order, expectedVersion: .noEvents)
        }
        #expect(first?.currentVersion == 2, "conflict's current version: \(String(describing: first?.currentVersion))")
        let stale = await expectStoreError(.conflict, ".exactly(1) on an aggregate at 2") {
            try await store.append([context.event("shipped", 3)], to: order, expectedVersion: .exactly(1))
        }
        #expect(stale?.currentVersion == 2)
        #expect(stale?.isRetriable == false, "a conflict is not retried as it is")
        #expect(try await store.version(of: order) == 2, "a refused append stored something")
        let next = try await store.append([context.event("shipped", 3)], to: order, expectedVersion: .exactly(2))
        #expect(next.firstVersion == 3 && next.version == 3)
        let any = try await store.append([context.event("note", 4), context.event("note", 5)], to: order, expectedVersion: .any)
        #expect(any.firstVersion == 4 && any.version == 5)
        #expect(try await store.load(order).map(\.event.type) == ["placed", "paid", "shipped", "note", "note"])
    }

    static let concurrentWritersLeaveAGapFreeHistory = Check(
        "concurrentWritersLeaveAGapFreeHistory",
        "8 writers appending to one aggregate with expected versions (retrying on conflict) and 2 with .any leave versions 1...n, each event once"
    ) { context in
        let store = context.store
        let order = try context.aggregate("contended")
        let perWriter = 12
        let conflicts = Recorder<Int>()
        let written = try await withThrowingTaskGroup(of: [String].self) { group in
            for writer in 0..<10 {
                group.addTask {
                    var ids: [String] = []
                    for index in 0..<perWriter {
                        let event = context.event("w\(writer)", index)
                        while true {
                            if writer >= 8 {
                                try await store.append([event], to: order, expectedVersion: .any)
                                break
                            }
                            let version = try await store.version(of: order)
                            do {
                                try await store.append([event], to: order, expectedVersion: .exactly(version))
                                break
                            } catch let error as EventStoreError where error.code == .conflict {
                                conflicts.append(writer)
                            }
                        }
                        ids.append(event.id)
                    }
                    return ids
                }
            }
            var all: [String] = []
            for try await ids in group { all += ids }
            return all
        }
        let history = try await store.load(order)
        #expect(history.map(\.version) == Array(1...UInt64(10 * perWriter)), "versions are not 1...\(10 * perWriter): \(history.map(\.version))")
        #expect(history.map(\.event.id).sorted() == written.sorted(), "each written event once: \(history.count) stored, \(written.count) written")
        for writer in 0..<10 {
            let mine = history.filter { $0.event.type == "w\(writer)" }.compactMap { Int($0.event.extensions["seq"] ?? "") }
            #expect(mine == Array(0..<perWriter), "writer \(writer)'s events out of order: \(mine)")
        }
    }

    static let batchIsAllOrNothing = Check(
        "batchIsAllOrNothing",
        "a batch gets consecutive versions; a batch refused (conflict, a repeated id, empty, over 1,000) stores none of its events"
    ) { context in
        let store = context.store
        let order = try context.aggregate("batch")
        try await store.append([context.event("placed", 0)], to: order, expectedVersion: .noEvents)
        await expectStoreError(.conflict, "a batch expecting version 0") {
            try await store.append((1...5).map { context.event("line", $0) }, to: order, expectedVersion: .noEvents)
        }
        let repeated = context.event("line", 9)
        await expectStoreError(.invalidEvent, "a batch with one id twice") {
            try await store.append([context.event("line", 8), repeated, repeated], to: order, expectedVersion: .exactly(1))
        }
        await expectStoreError(.invalidArgument, "an empty batch") {
            try await store.append([], to: order, expectedVersion: .any)
        }
        await expectStoreError(.invalidArgument, "1,001 events") {
            try await store.append((0...1_000).map { context.event("line", $0) }, to: order, expectedVersion: .any)
        }
        #expect(try await store.version(of: order) == 1, "a refused batch stored events")
        let batch = (1...100).map { context.event("line", $0) }
        let result = try await store.append(batch, to: order, expectedVersion: .exactly(1))
        #expect(result.firstVersion == 2 && result.version == 101, "batch result \(result)")
        let loaded = try await store.load(order, from: 2)
        #expect(loaded.map(\.event.id) == batch.map(\.id), "the batch came back out of order or incomplete")
        #expect(loaded.map(\.version) == Array(2...101))
    }

    static let retriedAppendIsStoredOnce = Check(
        "retriedAppendIsStoredOnce",
        "repeating an append that was stored (same event ids; its outcome was unknown to the caller) returns the earlier result marked wasAlreadyStored and stores nothing"
    ) { context in
        let store = context.store
        let order = try context.aggregate("retry")
        let batch = (1...3).map { context.event("placed", $0) }
        let first = try await store.append(batch, to: order, expectedVersion: .noEvents)
        let again = try await store.append(batch, to: order, expectedVersion: .noEvents)
        #expect(again.wasAlreadyStored, "the retry was not recognised: \(again)")
        #expect(again.firstVersion == first.firstVersion && again.version == first.version, "retry \(again), first \(first)")
        let single = context.event("paid", 4)
        try await store.append([single], to: order, expectedVersion: .any)
        let anyAgain = try await store.append([single], to: order, expectedVersion: .any)
        #expect(anyAgain.wasAlreadyStored && anyAgain.version == 4, "an .any retry: \(anyAgain)")
        // A retry that arrives after another append: the aggregate is past the expected version, and
        // the events there are these, so this is still the earlier attempt, not a conflict.
        let late = try await store.append(batch, to: order, expectedVersion: .noEvents)
        #expect(late.wasAlreadyStored && late.firstVersion == 1 && late.version == 3, "a late retry: \(late)")
        #expect(try await store.load(order).map(\.event.id) == batch.map(\.id) + [single.id], "something was stored twice")
        // The same ids at other versions are not an earlier attempt of this append.
        await expectStoreError(.conflict, "a batch expecting version 2 whose events sit at 1...3") {
            try await store.append(batch, to: order, expectedVersion: .exactly(2))
        }
    }

    static let queryByTypeTimeAndCorrelation = Check(
        "queryByTypeTimeAndCorrelation",
        "query and count by category, type, time range and correlation id, oldest first, honouring the limit; a bad query is refused"
    ) { context in
        let store = context.store
        let otherCategory = context.category + "x"
        let a = try context.aggregate("q1")
        let b = try context.aggregate("q2")
        let c = try context.aggregate("q3", category: otherCategory)
        try await store.append([context.event("placed", 1, correlation: "k1"), context.event("paid", 2, correlation: "k1")], to: a, expectedVersion: .noEvents)
        try await store.append([context.event("placed", 3, correlation: "k2")], to: b, expectedVersion: .noEvents)
        try await store.append([context.event("placed", 4, correlation: "k1")], to: c, expectedVersion: .noEvents)
        // Stored times have millisecond precision or better; step well past it.
        try await Task.sleep(for: .milliseconds(50))
        let middle = Date()
        try await Task.sleep(for: .milliseconds(50))
        try await store.append([context.event("shipped", 5, correlation: "k2")], to: a, expectedVersion: .exactly(2))

        func seqs(_ query: EventQuery) async throws -> [String] {
            try await store.query(query).map { $0.event.extensions["seq"] ?? "?" }
        }
        #expect(try await seqs(EventQuery(category: context.category)) == ["1", "2", "3", "5"])
        #expect(try await seqs(EventQuery(category: context.category, types: ["placed"])) == ["1", "3"])
        #expect(try await seqs(EventQuery(category: context.category, from: middle)) == ["5"])
        #expect(try await seqs(EventQuery(category: context.category, until: middle)) == ["1", "2", "3"])
        #expect(try await seqs(EventQuery(correlationID: "k1")).filter { ["1", "2", "4"].contains($0) } == ["1", "2", "4"])
        #expect(try await seqs(EventQuery(category: otherCategory, correlationID: "k1")) == ["4"])
        #expect(try await seqs(EventQuery(category: context.category, limit: 2)) == ["1", "2"])
        #expect(try await store.count(EventQuery(category: context.category, types: ["placed", "shipped"])) == 3)
        #expect(try await store.count(EventQuery(category: context.category, correlationID: "k2")) == 2)
        await expectStoreError(.invalidArgument, "limit 0") { _ = try await store.query(EventQuery(limit: 0)) }
        await expectStoreError(.invalidArgument, "an empty time range") {
            _ = try await store.query(EventQuery(from: middle, until: middle))
        }
        await expectStoreError(.invalidAggregate, "a category with a dot") {
            _ = try await store.query(EventQuery(category: "a.b"))
        }
    }

    static let subscribeCatchesUpThenFollowsLive = Check(
        "subscribeCatchesUpThenFollowsLive",
        "subscribe(from:) returns the stored events, then events appended while it catches up and after, in version order, none missing or twice"
    ) { context in
        let store = context.store
        let order = try context.aggregate("live")
        let stored = 60
        let live = 60
        try await store.append((1...stored).map { context.event("old", $0) }, to: order, expectedVersion: .noEvents)
        let subscription = try await store.subscribe(to: order, from: 1)
        let seen = Recorder<UInt64>()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                for try await recorded in subscription {
                    seen.append(recorded.version)
                    if seen.count == stored + live { break }
                }
            }
            // Appends race the catch-up: some land before the reader reaches the end, some after.
            for batch in 0..<(live / 5) {
                try await store.append((1...5).map { context.event("new", batch * 5 + $0) }, to: order, expectedVersion: .any)
                if batch % 3 == 0 { try await Task.sleep(for: .milliseconds(5)) }
            }
            let done = try await waitUntil(timeout: context.harness.stepTimeout) { seen.count >= stored + live }
            #expect(done, "the subscription returned \(seen.count) of \(stored + live)")
            // A reader still short of the count would wait for appends that never come.
            if !done { await subscription.cancel() }
            try await group.waitForAll()
        }
        #expect(seen.all == Array(1...UInt64(stored + live)), "versions out of order, missing or repeated")
        await subscription.cancel()

        let fromMiddle = try await store.subscribe(to: order, from: 100)
        var iterator = fromMiddle.makeAsyncIterator()
        let first = try await withTimeLimit(context.harness.stepTimeout, "the first next() from version 100") {
            [iterator] in
            var iterator = iterator
            return try await iterator.next()
        }
        #expect(first?.version == 100, "subscribe from 100 began at \(String(describing: first?.version))")
        await fromMiddle.cancel()
        let afterCancel = try await withTimeLimit(context.harness.stepTimeout, "next() after cancel") { [iterator] in
            var iterator = iterator
            return try await iterator.next()
        }
        #expect(afterCancel == nil, "next() after cancel() returned \(String(describing: afterCancel?.version)), not nil")
    }

    static let snapshotPlusTailEqualsFullLoad = Check(
        "snapshotPlusTailEqualsFullLoad",
        "a snapshot and the events after it rebuild the same state as the whole history; a snapshot past the version is refused"
    ) { context in
        let store = context.store
        let order = try context.aggregate("snap")
        let lines = (1...14).map { context.event("line", $0) }
        try await store.append(Array(lines[0..<10]), to: order, expectedVersion: .noEvents)
        // The state: the sum of the line numbers.
        func fold(_ start: Int, _ events: [RecordedEvent]) -> Int {
            events.reduce(start) { $0 + Int($1.event.extensions["seq"] ?? "0")! }
        }
        #expect(try await store.snapshot(of: order) == nil)
        let atSix = fold(0, Array(try await store.load(order).prefix(6)))
        try await store.saveSnapshot(AggregateSnapshot(aggregate: order, version: 6, state: Array(String(atSix).utf8)))
        try await store.append(Array(lines[10...]), to: order, expectedVersion: .exactly(10))
        let loaded = try await store.loadFromSnapshot(order)
        #expect(loaded.snapshot?.version == 6, "snapshot \(String(describing: loaded.snapshot))")
        #expect(loaded.events.map(\.version) == Array(7...14))
        #expect(loaded.version == 14)
        let fromSnapshot = fold(Int(String(decoding: loaded.snapshot?.state ?? [], as: UTF8.self)) ?? -1, loaded.events)
        #expect(fromSnapshot == fold(0, try await store.load(order)), "snapshot + tail \(fromSnapshot) differs from the full load")
        await expectStoreError(.invalidArgument, "a snapshot at version 15 of an aggregate at 14") {
            try await store.saveSnapshot(AggregateSnapshot(aggregate: order, version: 15, state: []))
        }
        await expectStoreError(.invalidArgument, "a snapshot at version 0") {
            try await store.saveSnapshot(AggregateSnapshot(aggregate: order, version: 0, state: []))
        }
        try await store.saveSnapshot(AggregateSnapshot(aggregate: order, version: 14, state: Array("105".utf8)))
        #expect(try await store.snapshot(of: order)?.version == 14, "a later snapshot replaces the earlier one")
    }

    static let historySurvivesARestart = Check(
        "historySurvivesARestart",
        "after the backend restarts, an aggregate loads the same, its snapshot is there, and an append expecting its version succeeds"
    ) { context in
        guard context.harness.restart != nil else {
            Issue.record("skipped: the harness cannot restart this backend", severity: .warning)
            return
        }
        let order = try context.aggregate("durable")
        try await context.store.append((1...20).map { context.event("line", $0) }, to: order, expectedVersion: .noEvents)
        try await context.store.saveSnapshot(AggregateSnapshot(aggregate: order, version: 20, state: [1, 2, 3]))
        let before = try await context.store.load(order)
        try await context.restart()
        let after = try await context.store.load(order)
        #expect(
            after.count == before.count && zip(after, before).allSatisfy { sameEvent($0.event, $1.event) }
                && after.map(\.version) == before.map(\.version), "history changed across the restart")
        #expect(try await context.store.snapshot(of: order)?.state == [1, 2, 3])
        let next = try await context.store.append([context.event("line", 21)], to: order, expectedVersion: .exactly(20))
        #expect(next.version == 21)
    }

    static let deleteRemovesHistoryAndSnapshot = Check(
        "deleteRemovesHistoryAndSnapshot",
        "delete removes an aggregate's events and snapshot, leaves others alone; a stale writer then conflicts and a new history starts at 1"
    ) { context in
        let store = context.store
        let gone = try context.aggregate("gone")
        let kept = try context.aggregate("kept")
        try await store.append((1...3).map { context.event("line", $0) }, to: gone, expectedVersion: .noEvents)
        try await store.append([context.event("line", 9)], to: kept, expectedVersion: .noEvents)
        try await store.saveSnapshot(AggregateSnapshot(aggregate: gone, version: 3, state: [7]))
        #expect(try await store.delete(gone) == 3)
        #expect(try await store.load(gone).isEmpty)
        #expect(try await store.version(of: gone) == 0)
        #expect(try await store.snapshot(of: gone) == nil)
        #expect(try await store.load(kept).count == 1, "delete touched another aggregate")
        let stale = await expectStoreError(.conflict, "a writer expecting version 3 after the delete") {
            try await store.append([context.event("line", 4)], to: gone, expectedVersion: .exactly(3))
        }
        #expect(stale?.currentVersion == 0)
        let fresh = try await store.append([context.event("line", 5)], to: gone, expectedVersion: .noEvents)
        #expect(fresh.version == 1)
        #expect(try await store.delete(try context.aggregate("never")) == 0)
    }

    static let invalidInputIsRefused = Check(
        "invalidInputIsRefused",
        "bad aggregate names, version 0 and events that cannot be stored are refused with a typed error naming the value"
    ) { context in
        let bad: [(category: String, id: String, named: String)] = [
            ("or.der", "1", "or.der"), ("order", "a b", "a b"), ("", "1", "category"), ("order", "*", "*"),
            ("order", ">", ">"), ("order", String(repeating: "x", count: 129), "128"),
        ]
        for (category, id, named) in bad {
            do throws(EventStoreError) {
                _ = try AggregateID(category: category, id: id)
                Issue.record("AggregateID(category: \(category), id: \(id)) was accepted")
            } catch {
                #expect(error.code == .invalidAggregate)
                #expect(error.message.contains(named), "the message does not name '\(named)': \(error.message)")
            }
        }
        let order = try context.aggregate("bad")
        await expectStoreError(.invalidArgument, "load from version 0") { _ = try await context.store.load(order, from: 0) }
        await expectStoreError(.invalidArgument, "subscribe from version 0") { _ = try await context.store.subscribe(to: order, from: 0) }
        await expectStoreError(.invalidEvent, "a type with a line feed") {
            try await context.store.append(
                [Event(subject: "store.bad", type: "a\nb", source: "/s")], to: order, expectedVersion: .any)
        }
        await expectStoreError(.invalidEvent, "an empty id") {
            try await context.store.append(
                [Event(id: "", subject: "store.bad", type: "t", source: "/s")], to: order, expectedVersion: .any)
        }
        #expect(try await context.store.version(of: order) == 0, "a refused append stored something")
    }

    static let closeEndsSubscriptions = Check(
        "closeEndsSubscriptions",
        "closing the store ends a waiting subscription and refuses later calls with closed"
    ) { context in
        let store = context.store
        let order = try context.aggregate("closing")
        try await store.append([context.event("line", 1)], to: order, expectedVersion: .noEvents)
        let subscription = try await store.subscribe(to: order, from: 1)
        let received = Recorder<UInt64>()
        let ended = Recorder<Bool>()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                defer { ended.append(true) }
                do {
                    for try await recorded in subscription { received.append(recorded.version) }
                } catch {
                    // Ending with an error is allowed; it must end.
                }
            }
            #expect(try await waitUntil(timeout: context.harness.stepTimeout) { received.count == 1 }, "the stored event never came")
            // Now the reader waits for an append that will not come.
            try await Task.sleep(for: .milliseconds(200))
            await store.close()
            let endedAfterClose = try await waitUntil(timeout: context.harness.stepTimeout) { ended.count == 1 }
            #expect(endedAfterClose, "the subscription did not end within \(context.harness.stepTimeout) after close")
            if !endedAfterClose { group.cancelAll() }
            try await group.waitForAll()
        }
        #expect(received.all == [1], "the subscription returned \(received.all) before it ended")
        await expectStoreError(.closed, "append after close") {
            try await store.append([context.event("line", 2)], to: order, expectedVersion: .any)
        }
        await expectStoreError(.closed, "load after close") { _ = try await store.load(order) }
    }
}

/// Whether two events are the same: every attribute equal, the time within a millisecond (a backend
/// may store it as text with less precision than `Date` holds).
func sameEvent(_ a: Event, _ b: Event) -> Bool {
    var a = a
    var b = b
    let close: Bool
    switch (a.time, b.time) {
    case (nil, nil): close = true
    case (let x?, let y?): close = abs(x.timeIntervalSince(y)) < 0.001
    default: close = false
    }
    a.time = nil
    b.time = nil
    return close && a == b
}

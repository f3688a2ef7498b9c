import Benchmark
import BenchmarkSupport
import CNATSRaw
import EventBus
import EventBusJetStream
import NATS

// The event store (ES1-ES3): `JetStreamEventStore` with its defaults (stream `EVENTSTORE` on
// `store.>`, file storage, allow_atomic) against raw cnats sending the same messages (a benchmark
// event's CloudEvents headers, a 36-character id, `EventStore-Version`, 128 bytes of data) to the
// same kind of stream, which the raw setup creates with the store's settings.
//
// ES1: 10,000 appends of one event to one aggregate, each expecting the version the previous one
//   returned (`.exactly(version)`; `.noEvents` first). Raw: js_PublishMsg with
//   jsPubOptions.ExpectLastSubjectSeq set to the previous ack's sequence. Every append is timed
//   (building the event or message included): p50 and p99.
// ES2: 10,000 events in 100 appends of 100, each one atomic batch expecting the previous version.
//   Raw: the batch by hand, natsConnection_PublishMsg for 99 members and natsConnection_RequestMsg for
//   the commit, the first member carrying Nats-Expected-Last-Subject-Sequence.
// ES3: `load` of an aggregate of 10,000 events (stored by the setup in batches of 100). Raw: an
//   ordered consumer (js_SubscribeSync, jsSubOptions.Ordered) on the aggregate's subject reading
//   10,000 messages, checking each one's version header, then unsubscribing (which deletes the
//   consumer, as the store's load does).
//
// ES1 and ES2 append to a new aggregate every iteration, so no aggregate grows across iterations.

func registerEventStore() {
    registerES1()
    registerES2()
    registerES3()
}

/// The store and its connection for the Swift variants.
private struct StoreFixture {
    let connection: NATSConnection
    let store: JetStreamEventStore
    let iterations = IterationCounter()

    static func open(_ server: BenchmarkServer) async throws -> StoreFixture {
        let connection = try await NATSConnection.connectForBenchmark(server)
        let store = try await JetStreamEventStore.open(on: connection, logger: benchmarkLogger)
        return StoreFixture(connection: connection, store: store)
    }

    func close() async {
        await store.close()
        await connection.close()
    }
}

/// The raw context with the store's stream for the raw variants.
private struct RawStoreFixture {
    let js: RawJetStream
    let iterations = IterationCounter()

    static func open(_ server: BenchmarkServer) throws(RawFailure) -> RawStoreFixture {
        let js = try RawJetStream(server)
        try js.addEventStoreStream()
        return RawStoreFixture(js: js)
    }
}

private func expected(_ version: UInt64) -> ExpectedVersion {
    version == 0 ? .noEvents : .exactly(version)
}

private func registerES1() {
    let configuration = BenchmarkSettings.live(metrics: BenchmarkMetrics.latencyWorkload)
    let events = Workload.eventStoreEvents

    liveBenchmark("ES1 raw", configuration: configuration) { benchmark, raw throws(RawFailure) in
        let iteration = raw.iterations.next()
        let messages = RawEventStoreMessages(aggregateID: "raw-\(iteration)")
        var options = jsPubOptions()
        try rawCheck(jsPubOptions_Init(&options), "jsPubOptions_Init")
        benchmark.startMeasurement()
        var recorder = LatencyRecorder(capacity: events)
        var errorCode = jsErrCode(0)
        var lastSequence: UInt64 = 0
        let failure: natsStatus = Workload.payload.withUnsafeBytes { payload in
            for index in 0..<events {
                let start = Clocks.monotonicNanos()
                var (message, status) = messages.message(
                    payload: payload, iteration: iteration, index: index, expectedLastSequence: nil, batch: nil)
                if status != NATS_OK { return status }
                // 0 (the first append) sends no expectation: cnats adds the header only when set.
                options.ExpectLastSubjectSeq = lastSequence
                var ack: UnsafeMutablePointer<jsPubAck>?
                status = js_PublishMsg(&ack, raw.js.pointer, message, &options, &errorCode)
                if status == NATS_OK { lastSequence = ack!.pointee.Sequence }
                // The ack and the message are ours to free.
                jsPubAck_Destroy(ack)
                natsMsg_Destroy(message)
                if status != NATS_OK { return status }
                recorder.record(nanos: Clocks.monotonicNanos() - start)
            }
            return NATS_OK
        }
        recorder.stop()
        benchmark.stopMeasurement()
        try rawCheck(failure, "js_PublishMsg (error code \(errorCode.rawValue))")
        recorder.finish(benchmark)
    } setup: { server in
        try RawStoreFixture.open(server)
    }

    liveBenchmark("ES1 EventStore", configuration: configuration) { benchmark, fixture in
        let aggregate = try AggregateID(category: Workload.eventStoreCategory, id: "swift-\(fixture.iterations.next())")
        benchmark.startMeasurement()
        var recorder = LatencyRecorder(capacity: events)
        var version: UInt64 = 0
        for _ in 0..<events {
            let start = Clocks.monotonicNanos()
            let event = benchmarkEvent()
            version = try await fixture.store.append([event], to: aggregate, expectedVersion: expected(version)).version
            recorder.record(nanos: Clocks.monotonicNanos() - start)
        }
        recorder.stop()
        benchmark.stopMeasurement()
        if version != UInt64(events) { benchmark.error("\(aggregate) is at version \(version), expected \(events)") }
        recorder.finish(benchmark)
    } setup: { server in
        try await StoreFixture.open(server)
    } teardown: { fixture in
        await fixture.close()
    }
}

private func registerES2() {
    let configuration = BenchmarkSettings.live(metrics: BenchmarkMetrics.throughputWorkload, scalingFactor: .kilo)
    let events = Workload.eventStoreEvents
    let batch = Workload.eventStoreBatch

    liveBenchmark("ES2 raw", configuration: configuration) { benchmark, raw throws(RawFailure) in
        let iteration = raw.iterations.next()
        let messages = RawEventStoreMessages(aggregateID: "raw-\(iteration)")
        benchmark.startMeasurement()
        let meter = ThroughputMeter()
        let lastSequence = try rawAppendBatches(messages, connection: raw.js.connection, iteration: iteration)
        meter.finish(benchmark, operations: events)
        benchmark.stopMeasurement()
        if lastSequence == 0 { throw RawFailure(description: "no batch was stored") }
    } setup: { server in
        try RawStoreFixture.open(server)
    }

    liveBenchmark("ES2 EventStore", configuration: configuration) { benchmark, fixture in
        let aggregate = try AggregateID(category: Workload.eventStoreCategory, id: "swift-\(fixture.iterations.next())")
        benchmark.startMeasurement()
        let meter = ThroughputMeter()
        let version = try await appendBatches(fixture.store, to: aggregate, batch: batch)
        meter.finish(benchmark, operations: events)
        benchmark.stopMeasurement()
        if version != UInt64(events) { benchmark.error("\(aggregate) is at version \(version), expected \(events)") }
    } setup: { server in
        try await StoreFixture.open(server)
    } teardown: { fixture in
        await fixture.close()
    }
}

/// Raw ES2 (and ES3's preload): the iteration's 10,000 events as atomic batches of 100, each
/// expecting the sequence the previous batch's ack returned. Returns the last event's sequence.
private func rawAppendBatches(
    _ messages: RawEventStoreMessages, connection: RawConnection, iteration: Int
) throws(RawFailure) -> UInt64 {
    let batch = Workload.eventStoreBatch
    let result: Result<UInt64, RawFailure> = Workload.payload.withUnsafeBytes { payload in
        var lastSequence: UInt64 = 0
        do throws(RawFailure) {
            for number in 0..<(Workload.eventStoreEvents / batch) {
                lastSequence = try messages.appendBatch(
                    connection: connection, payload: payload, iteration: iteration, batch: number, first: number * batch,
                    count: batch, after: lastSequence)
            }
        } catch {
            return .failure(error)
        }
        return .success(lastSequence)
    }
    return try result.get()
}

/// Swift ES2 (and ES3's preload): 10,000 new benchmark events appended in batches of `batch`, each
/// expecting the version the previous append returned. Returns the aggregate's version.
private func appendBatches(_ store: JetStreamEventStore, to aggregate: AggregateID, batch: Int) async throws -> UInt64 {
    var version: UInt64 = 0
    for _ in 0..<(Workload.eventStoreEvents / batch) {
        var events: [Event] = []
        events.reserveCapacity(batch)
        for _ in 0..<batch { events.append(benchmarkEvent()) }
        version = try await store.append(events, to: aggregate, expectedVersion: expected(version)).version
    }
    return version
}

/// The C string of the version header, for raw ES3's check of every message.
private let versionHeaderName = RawCString(Workload.eventStoreVersionHeader)

private func registerES3() {
    let configuration = BenchmarkSettings.live(metrics: BenchmarkMetrics.throughputWorkload, scalingFactor: .kilo)
    let events = Workload.eventStoreEvents

    liveBenchmark("ES3 raw", configuration: configuration) { benchmark, raw throws(RawFailure) in
        let (fixture, subject) = raw
        var options = jsSubOptions()
        try rawCheck(jsSubOptions_Init(&options), "jsSubOptions_Init")
        let stream = RawCString(Workload.eventStoreStream)
        options.Stream = UnsafePointer(stream.pointer)
        options.Ordered = true
        benchmark.startMeasurement()
        let meter = ThroughputMeter()
        var subscription: OpaquePointer?
        var errorCode = jsErrCode(0)
        try rawCheck(
            js_SubscribeSync(&subscription, fixture.js.pointer, subject.pointer, nil, &options, &errorCode),
            "js_SubscribeSync (error code \(errorCode.rawValue))")
        var received = 0
        var failure: String?
        while received < events {
            var message: OpaquePointer?
            let status = natsSubscription_NextMsg(&message, subscription, 5_000)
            if status != NATS_OK {
                failure = "natsSubscription_NextMsg after \(received): \(String(cString: natsStatus_GetText(status)))"
                break
            }
            // What a loader reads of each event: its version (checked) and its data.
            var value: UnsafePointer<CChar>?
            let version = natsMsgHeader_Get(message, versionHeaderName.pointer, &value) == NATS_OK && value != nil ? strtoull(value!, nil, 10) : 0
            blackHole(natsMsg_GetData(message))
            // The message is ours once received.
            natsMsg_Destroy(message)
            received += 1
            if version != UInt64(received) {
                failure = "message \(received) has version \(version)"
                break
            }
        }
        // Deletes the consumer cnats created (the store's load deletes its consumer too).
        rawUnsubscribe(subscription)
        meter.finish(benchmark, operations: events)
        benchmark.stopMeasurement()
        withExtendedLifetime(stream) {}
        if let failure { throw RawFailure(description: failure) }
    } setup: { server -> (fixture: RawStoreFixture, subject: RawCString) in
        let fixture = try RawStoreFixture.open(server)
        let messages = RawEventStoreMessages(aggregateID: "load")
        _ = try rawAppendBatches(messages, connection: fixture.js.connection, iteration: 0)
        return (fixture: fixture, subject: RawCString("store.\(Workload.eventStoreCategory).load"))
    }

    let aggregate = try! AggregateID(category: Workload.eventStoreCategory, id: "load")
    liveBenchmark("ES3 EventStore", configuration: configuration) { benchmark, fixture in
        benchmark.startMeasurement()
        let meter = ThroughputMeter()
        let loaded = try await fixture.store.load(aggregate)
        meter.finish(benchmark, operations: events)
        benchmark.stopMeasurement()
        if loaded.count != events || loaded.last?.version != UInt64(events) {
            benchmark.error("loaded \(loaded.count) events of \(events), the last at version \(loaded.last?.version ?? 0)")
        }
        blackHole(loaded)
    } setup: { server -> StoreFixture in
        let fixture = try await StoreFixture.open(server)
        _ = try await appendBatches(fixture.store, to: aggregate, batch: Workload.eventStoreBatch)
        return fixture
    } teardown: { fixture in
        await fixture.close()
    }
}

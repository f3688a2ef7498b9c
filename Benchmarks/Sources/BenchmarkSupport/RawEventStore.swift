import CNATSRaw
import EventBus

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// The raw baselines of the event-store workloads (ES1-ES3): what `JetStreamEventStore` sends, done
// by hand with cnats. The stream is the store's (`EVENTSTORE` on `store.>`, file storage,
// `allow_atomic`), each event a message on `store.<category>.<id>` with the CloudEvents headers
// of a benchmark event, its id in `ce-id` and `Nats-Msg-Id` and its version in
// `EventStore-Version`; an append of several events is one JetStream atomic batch.

extension Workload {
    /// ES1-ES3: events appended to (and loaded from) one aggregate per iteration.
    public static let eventStoreEvents = 10_000
    /// ES2: events per append (one atomic batch each).
    public static let eventStoreBatch = 100
    /// The event store's stream, as `JetStreamEventStore` provisions it by default.
    public static let eventStoreStream = "EVENTSTORE"
    /// The category of every benchmark aggregate (subjects `store.bench.<id>`).
    public static let eventStoreCategory = "bench"
    /// The version header the store writes on every event.
    public static let eventStoreVersionHeader = "EventStore-Version"
}

extension RawJetStream {
    /// Creates the event store's stream as `JetStreamEventStore.open` provisions it: file storage,
    /// subjects `store.>`, no age limit, a 2-minute duplicate window, direct gets and atomic batches.
    /// cnats 3.4.1's `jsStreamConfig` has no `allow_atomic`, so this sends the JetStream API request
    /// with the JSON itself.
    public func addEventStoreStream() throws(RawFailure) {
        let name = Workload.eventStoreStream
        let body = """
            {"name":"\(name)","subjects":["store.>"],"storage":"file","retention":"limits","max_age":0,\
            "duplicate_window":120000000000,"num_replicas":1,"allow_direct":true,"allow_atomic":true}
            """
        var reply: OpaquePointer?
        let status = "$JS.API.STREAM.CREATE.\(name)".withCString { subject in
            body.withCString { natsConnection_RequestString(&reply, connection.pointer, subject, $0, 5_000) }
        }
        // The reply is ours to free.
        defer { natsMsg_Destroy(reply) }
        try rawCheck(status, "creating stream \(name)")
        let answer = String(cString: natsMsg_GetData(reply))
        if answer.contains("\"error\"") { throw RawFailure(description: "creating stream \(name): \(answer)") }
    }
}

/// Builds the messages of raw event-store appends: a benchmark event's CloudEvents headers
/// prepared once as C strings, the id (`ce-id`, `Nats-Msg-Id`) and the version per message, and the
/// batch headers of an atomic batch. Numbers are formatted in place, as a C program would.
public final class RawEventStoreMessages: @unchecked Sendable {
    // @unchecked: immutable after init; the scratch buffers belong to the one benchmark thread
    // that calls the methods (iterations run one after another).
    private let fixed: [(RawCString, RawCString)]
    private let idNames: [RawCString]
    private let versionName = RawCString(Workload.eventStoreVersionHeader)
    private let expectedSequenceName = RawCString("Nats-Expected-Last-Subject-Sequence")
    private let batchIDName = RawCString("Nats-Batch-Id")
    private let batchSequenceName = RawCString("Nats-Batch-Sequence")
    private let batchCommitName = RawCString("Nats-Batch-Commit")
    private let one = RawCString("1")
    private let id = UnsafeMutableBufferPointer<CChar>.allocate(capacity: 40)
    private let batchID = UnsafeMutableBufferPointer<CChar>.allocate(capacity: 40)
    private let number = UnsafeMutableBufferPointer<CChar>.allocate(capacity: 24)
    private let subject: RawCString
    /// The aggregate's subject, `store.bench.<id>`.
    public var subjectPointer: UnsafePointer<CChar> { UnsafePointer(subject.pointer) }

    /// Messages for aggregate `bench/<aggregateID>`.
    public init(aggregateID: String) {
        let idHeaders: Set<String> = ["ce-id", "Nats-Msg-Id"]
        let template = benchmarkEventHeaders(0)
        fixed = template.filter { !idHeaders.contains($0.0) }.map { (RawCString($0.0), RawCString($0.1)) }
        idNames = template.filter { idHeaders.contains($0.0) }.map { RawCString($0.0) }
        subject = RawCString("store.\(Workload.eventStoreCategory).\(aggregateID)")
    }

    deinit {
        id.deallocate()
        batchID.deallocate()
        number.deallocate()
    }

    /// Where an event sits in an atomic batch.
    public struct BatchPosition {
        /// The batch's number within the iteration (for its id).
        public var batch: Int
        /// 1 for the first member.
        public var sequence: Int
        /// The last member: it carries the commit.
        public var isLast: Bool

        /// A position in a batch.
        public init(batch: Int, sequence: Int, isLast: Bool) {
            self.batch = batch
            self.sequence = sequence
            self.isLast = isLast
        }
    }

    /// A new message for event `index` (version `index + 1`) of `iteration`, with the expected last
    /// subject sequence when given and the batch headers when `batch` is given. The caller publishes
    /// it and destroys it.
    public func message(
        payload: UnsafeRawBufferPointer, iteration: Int, index: Int, expectedLastSequence: UInt64?, batch: BatchPosition?
    ) -> (OpaquePointer?, natsStatus) {
        var message: OpaquePointer?
        var status = natsMsg_Create(
            &message, subject.pointer, nil, payload.baseAddress?.assumingMemoryBound(to: CChar.self), Int32(payload.count))
        if status != NATS_OK { return (nil, status) }
        for (name, value) in fixed where status == NATS_OK {
            status = natsMsgHeader_Add(message, name.pointer, value.pointer)
        }
        formatEventID(into: id, iteration: iteration, index: index)
        // cnats copies header values, so the scratch buffers can be reused at once.
        for name in idNames where status == NATS_OK { status = natsMsgHeader_Add(message, name.pointer, id.baseAddress) }
        if status == NATS_OK {
            formatDecimal(UInt64(index + 1), into: number)
            status = natsMsgHeader_Add(message, versionName.pointer, number.baseAddress)
        }
        if status == NATS_OK, let expectedLastSequence {
            formatDecimal(expectedLastSequence, into: number)
            status = natsMsgHeader_Add(message, expectedSequenceName.pointer, number.baseAddress)
        }
        if status == NATS_OK, let batch {
            // The batch id has the shape of the store's (a 36-character event id), distinct from
            // every event id of the iteration.
            formatEventID(into: batchID, iteration: iteration, index: 0x8000_0000 + batch.batch)
            status = natsMsgHeader_Add(message, batchIDName.pointer, batchID.baseAddress)
            if status == NATS_OK {
                formatDecimal(UInt64(batch.sequence), into: number)
                status = natsMsgHeader_Add(message, batchSequenceName.pointer, number.baseAddress)
            }
            if status == NATS_OK, batch.isLast { status = natsMsgHeader_Add(message, batchCommitName.pointer, one.pointer) }
        }
        if status != NATS_OK {
            natsMsg_Destroy(message)
            return (nil, status)
        }
        return (message, status)
    }

    /// Appends events `first..<first + count` of `iteration` as one atomic batch: every member but the
    /// last a core publish, the last (with `Nats-Batch-Commit: 1`) a request whose answer is the
    /// batch's ack; the first carries the expected last subject sequence `after`. Returns the stream
    /// sequence of the last event.
    public func appendBatch(
        connection: RawConnection, payload: UnsafeRawBufferPointer, iteration: Int, batch: Int, first: Int, count: Int,
        after: UInt64
    ) throws(RawFailure) -> UInt64 {
        for offset in 0..<count {
            let isLast = offset == count - 1
            let (message, status) = message(
                payload: payload, iteration: iteration, index: first + offset, expectedLastSequence: offset == 0 ? after : nil,
                batch: BatchPosition(batch: batch, sequence: offset + 1, isLast: isLast))
            defer { natsMsg_Destroy(message) }
            try rawCheck(status, "building batch member \(offset + 1)")
            if !isLast {
                try rawCheck(natsConnection_PublishMsg(connection.pointer, message), "natsConnection_PublishMsg")
                continue
            }
            var reply: OpaquePointer?
            try rawCheck(natsConnection_RequestMsg(&reply, connection.pointer, message, 5_000), "natsConnection_RequestMsg (batch commit)")
            // The reply is ours to free.
            defer { natsMsg_Destroy(reply) }
            let data = UnsafeRawBufferPointer(start: natsMsg_GetData(reply), count: Int(natsMsg_GetDataLength(reply)))
            guard let sequence = ackSequence(data) else {
                throw RawFailure(description: "batch commit refused: \(String(decoding: data, as: UTF8.self))")
            }
            return sequence
        }
        throw RawFailure(description: "empty batch")
    }
}

/// The `seq` of a JetStream publish ack (`{"stream":"S","seq":N,...}`), or nil for an error answer;
/// read in place, as a C program would, without a JSON parser.
func ackSequence(_ data: UnsafeRawBufferPointer) -> UInt64? {
    guard find("\"error\"", in: data) == nil, var index = find("\"seq\":", in: data) else { return nil }
    var value: UInt64 = 0
    var digits = 0
    while index < data.count, data[index] >= UInt8(ascii: "0"), data[index] <= UInt8(ascii: "9") {
        value = value * 10 + UInt64(data[index] - UInt8(ascii: "0"))
        index += 1
        digits += 1
    }
    return digits > 0 ? value : nil
}

/// The offset just past the first occurrence of `key` in `data`, or nil.
private func find(_ key: StaticString, in data: UnsafeRawBufferPointer) -> Int? {
    let length = key.utf8CodeUnitCount
    guard let base = data.baseAddress, data.count >= length else { return nil }
    for start in 0...(data.count - length) where memcmp(base + start, key.utf8Start, length) == 0 {
        return start + length
    }
    return nil
}

/// Writes `value` in decimal and a NUL into `buffer` (at least 21 bytes), without allocating.
@inline(__always)
public func formatDecimal(_ value: UInt64, into buffer: UnsafeMutableBufferPointer<CChar>) {
    var digits = 0
    var rest = value
    repeat {
        digits += 1
        rest /= 10
    } while rest > 0
    rest = value
    for position in stride(from: digits - 1, through: 0, by: -1) {
        buffer[position] = CChar(UInt8(ascii: "0") + UInt8(rest % 10))
        rest /= 10
    }
    buffer[digits] = 0
}

import Foundation
import Testing

@testable import NATS
import NATSTestSupport

@Suite("Payloads, headers and the subscription buffer")
struct NATSPayloadAndBufferTests {
    @Test func payloadBasics() {
        let payload = NATSPayload("héllo")
        #expect(payload.count == 6)
        #expect(payload.string == "héllo")
        #expect(payload == NATSPayload(Array("héllo".utf8)))
        #expect(NATSPayload().isEmpty)
        #expect(NATSPayload([1, 2, 3]).bytes == [1, 2, 3])
        #expect(Array(NATSPayload([0, 255])) == [0, 255])
    }

    @Test func slabPayloadsDoNotOverlap() {
        var writer = PayloadSlabWriter()
        var payloads: [NATSPayload] = []
        // Enough to fill several slabs, plus one large enough for its own allocation.
        for index in 0..<5_000 {
            let bytes = [UInt8](repeating: UInt8(index % 251), count: index % 97)
            payloads.append(bytes.withUnsafeBytes { writer.copy($0) })
        }
        let large = [UInt8](repeating: 7, count: PayloadSlabWriter.slabSize)
        let largePayload = large.withUnsafeBytes { writer.copy($0) }
        for (index, payload) in payloads.enumerated() {
            #expect(payload.bytes == [UInt8](repeating: UInt8(index % 251), count: index % 97))
        }
        #expect(largePayload.bytes == large)
    }

    @Test func headersKeepOrderAndRepeatedNames() {
        var headers = NATSHeaders()
        headers.add("1", for: "X-A")
        headers.add("2", for: "X-B")
        headers.add("3", for: "X-A")
        #expect(headers.values(for: "X-A") == ["1", "3"])
        #expect(headers["X-A"] == "1")
        #expect(headers.names == ["X-A", "X-B"])
        #expect(headers["x-a"] == nil, "names are case-sensitive")
        headers["X-A"] = "only"
        #expect(headers.values(for: "X-A") == ["only"])
        headers["X-B"] = nil
        #expect(headers.count == 1)
        #expect(headers.encodedSize == "NATS/1.0\r\nX-A: only\r\n\r\n".utf8.count)
    }

    @Test func bufferHandsOverBatchesAndEnds() async throws {
        let buffer = BoundedBatchBuffer<Int>(limits: .init(messages: 1_000, bytes: .max))
        for value in 0..<10 { #expect(buffer.append(value, size: 1)) }
        var batch: [Int] = []
        #expect(try await buffer.takeBatch(into: &batch) == .took)
        #expect(batch == Array(0..<10))
        buffer.finish()
        #expect(!buffer.append(99, size: 1), "appending after finish is refused")
        batch.removeAll()
        #expect(try await buffer.takeBatch(into: &batch) == .finished)
    }

    @Test func fullBufferBlocksTheProducerUntilTheConsumerTakes() async throws {
        let buffer = BoundedBatchBuffer<Int>(limits: .init(messages: 10, bytes: .max))
        let produced = ManagedCounter()
        let producer = Thread {
            for value in 0..<100 {
                buffer.append(value, size: 1)
                produced.increment()
            }
        }
        producer.start()
        try await Task.sleep(for: .milliseconds(200))
        // The producer is stuck after filling the buffer: the limit holds.
        #expect(produced.value <= 11)
        var received: [Int] = []
        var batch: [Int] = []
        while received.count < 100 {
            batch.removeAll(keepingCapacity: true)
            #expect(try await buffer.takeBatch(into: &batch) == .took)
            #expect(batch.count <= 10)
            received += batch
        }
        #expect(received == Array(0..<100))
    }

    @Test func cancellationEndsAWaitingConsumer() async throws {
        let buffer = BoundedBatchBuffer<Int>(limits: .init(messages: 10, bytes: .max))
        let consumer = Task {
            var batch: [Int] = []
            return try await buffer.takeBatch(into: &batch)
        }
        try await Task.sleep(for: .milliseconds(50))
        consumer.cancel()
        let result = try await withDeadline(.seconds(30), "takeBatch after its task was cancelled", onTimeout: { buffer.finish() }) {
            try await consumer.value
        }
        #expect(result == .cancelled)
    }

    @Test func deferredWakeUpsStillHandOverABurstAndALateSingleMessage() async throws {
        let buffer = BoundedBatchBuffer<Int>(limits: .init(messages: 100_000, bytes: .max))
        let received = ManagedCounter()
        let takes = ManagedCounter()
        let consumer = Task {
            var all: [Int] = []
            var batch: [Int] = []
            while all.count < 1_001 {
                batch.removeAll(keepingCapacity: true)
                guard try await buffer.takeBatch(into: &batch) == .took else { break }
                takes.increment()
                all += batch
                for _ in batch { received.increment() }
            }
            return all
        }
        #expect(await eventually { buffer.hasWaitingConsumer })
        let burst = Thread {
            // A producer that always has more coming until the last of the burst.
            for value in 0..<1_000 { buffer.append(value, size: 1) { value < 999 } }
        }
        burst.start()
        #expect(await eventually { received.value == 1_000 && buffer.hasWaitingConsumer })
        // Wake-ups were batched: one per wakeBatch while more was coming, plus the last.
        #expect(takes.value <= 1_000 / BoundedBatchBuffer<Int>.wakeBatch.messages + 2)
        // A single message long after the burst, with nothing behind it: the append itself
        // resumes the waiting consumer (it is not left for a later message or a timer).
        buffer.append(1_000, size: 1) { false }
        #expect(!buffer.hasWaitingConsumer)
        let all = try await withDeadline(.seconds(30), "the 1,001 elements", onTimeout: { consumer.cancel() }) {
            try await consumer.value
        }
        #expect(all == Array(0...1_000))
    }

    @Test func aDeferredWakeUpIsGivenByFinish() async throws {
        let buffer = BoundedBatchBuffer<Int>(limits: .init(messages: 1_000, bytes: .max))
        let consumer = Task {
            var batch: [Int] = []
            let first = try await buffer.takeBatch(into: &batch)
            return (first, batch)
        }
        try await Task.sleep(for: .milliseconds(50))
        // The producer claims more is coming, then the subscription ends instead.
        buffer.append(7, size: 1) { true }
        buffer.finish()
        let (first, batch) = try await withDeadline(.seconds(30), "the element appended before finish()", onTimeout: { consumer.cancel() }) {
            try await consumer.value
        }
        #expect(first == .took)
        #expect(batch == [7])
    }

    @Test func aFullBufferWakesAConsumerLeftWaitingByADeferredWakeUp() async throws {
        // 600-byte elements against a 1,000-byte limit: the second append finds the buffer full
        // while the consumer still waits for the first (its wake-up was deferred).
        let buffer = BoundedBatchBuffer<Int>(limits: .init(messages: 1_000, bytes: 1_000))
        let consumer = Task {
            var received: [Int] = []
            var batch: [Int] = []
            while received.count < 20 {
                batch.removeAll(keepingCapacity: true)
                guard try await buffer.takeBatch(into: &batch) == .took else { break }
                received += batch
            }
            return received
        }
        try await Task.sleep(for: .milliseconds(50))
        let producer = Thread {
            for value in 0..<20 { buffer.append(value, size: 600) { value < 19 } }
        }
        producer.start()
        let received = try await withDeadline(.seconds(30), "the 20 elements of 600 bytes", onTimeout: { consumer.cancel() }) {
            try await consumer.value
        }
        #expect(received == Array(0..<20))
    }

    @Test func timedTakeReturnsWhenNothingArrives() async throws {
        let buffer = BoundedBatchBuffer<Int>(limits: .init(messages: 10, bytes: .max))
        var batch: [Int] = []
        let started = ContinuousClock.now
        #expect(try await buffer.takeBatch(into: &batch, timeout: .milliseconds(100)) == .wokenUp)
        #expect(ContinuousClock.now - started >= .milliseconds(90))
        buffer.append(1, size: 1)
        #expect(try await buffer.takeBatch(into: &batch, timeout: .seconds(5)) == .took)
        #expect(batch == [1])
    }

    /// Timed waits share scheduled wake-ups: a shorter wait after a longer one still ends on
    /// time, and a wake-up scheduled for an earlier wait does not cut a later, longer one short.
    @Test func timedTakesKeepTheirOwnDeadlines() async throws {
        let buffer = BoundedBatchBuffer<Int>(limits: .init(messages: 10, bytes: .max))
        var batch: [Int] = []
        // The producer runs on a dispatch thread, not a task: under a full parallel run the
        // cooperative pool can be busy for seconds, which would make the deadlines below race it.
        func appendSoon(_ value: Int) -> Task<Void, Never> {
            Task {
                await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
                    DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(50)) {
                        buffer.append(value, size: 1)
                        done.resume()
                    }
                }
            }
        }
        // Answered before its 5 s deadline: that wake-up stays scheduled.
        var producer = appendSoon(1)
        #expect(try await buffer.takeBatch(into: &batch, timeout: .seconds(5)) == .took)
        await producer.value
        batch.removeAll()
        var started = ContinuousClock.now
        #expect(try await buffer.takeBatch(into: &batch, timeout: .milliseconds(100)) == .wokenUp)
        var waited = ContinuousClock.now - started
        #expect(waited >= .milliseconds(90) && waited < .seconds(3), "\(waited)")
        // Answered before its 1 s deadline (wide: under a full parallel test run the 50 ms
        // producer can take a few hundred); the next wait (2 s) outlasts that wake-up.
        producer = appendSoon(2)
        #expect(try await buffer.takeBatch(into: &batch, timeout: .seconds(1)) == .took)
        await producer.value
        batch.removeAll()
        started = ContinuousClock.now
        #expect(try await buffer.takeBatch(into: &batch, timeout: .seconds(2)) == .wokenUp)
        waited = ContinuousClock.now - started
        #expect(waited >= .milliseconds(1_990) && waited < .seconds(5), "\(waited)")
        // Elements still end a timed wait at once.
        producer = appendSoon(3)
        #expect(try await buffer.takeBatch(into: &batch, timeout: .seconds(5)) == .took)
        #expect(batch == [3])
    }
}

/// A counter shared with a plain thread.
final class ManagedCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    func increment() { lock.withLock { count += 1 } }
    var value: Int { lock.withLock { count } }
}

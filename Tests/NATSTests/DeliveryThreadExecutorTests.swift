import Foundation
import Synchronization
import Testing

@testable import NATS
import NATSTestSupport

/// The buffer's consumer executor: a consumer task that prefers it runs the step a producer's
/// append resumes on that producer's thread, and nothing else there.
@Suite("Running a resumed consumer on the delivery thread")
struct DeliveryThreadExecutorTests {
    @Test func aConsumerPreferringTheExecutorRunsOnTheAppendingThreadBeforeAppendReturns() async throws {
        let buffer = BoundedBatchBuffer<Int>(limits: .init(messages: 1_000, bytes: .max))
        let steps = ThreadRecord()
        let consumer = takingPreferringTheExecutor(3, from: buffer) { _ in steps.record() }
        let producerThread = ThreadRecord()
        let seenWhenAppendReturned = Mutex<[Int]>([])
        for value in 0..<3 {
            #expect(await eventually { buffer.hasWaitingConsumer })
            let producer = Thread {
                producerThread.record()
                buffer.append(value, size: 1) { false }
                seenWhenAppendReturned.withLock { $0.append(steps.count) }
            }
            producer.start()
            #expect(await eventually { seenWhenAppendReturned.withLock { $0.count } == value + 1 })
        }
        let received = try await withDeadline(.seconds(30), "three single appends", onTimeout: { consumer.cancel() }) {
            try await consumer.value
        }
        #expect(received == [0, 1, 2])
        // Each step ran inside the append that resumed it, on that producer's thread.
        #expect(seenWhenAppendReturned.withLock { $0 } == [1, 2, 3])
        #expect(steps.threads == producerThread.threads)
    }

    @Test func aStepResumedByAnotherThreadRunsOnThePool() async throws {
        let buffer = BoundedBatchBuffer<Int>(limits: .init(messages: 1_000, bytes: .max))
        let producerThread = ThreadRecord()
        let inline = ThreadRecord()
        let afterSleep = ThreadRecord()
        let consumer = Task {
            try await withTaskExecutorPreference(buffer.consumerExecutor) {
                var batch: [Int] = []
                let result = try await buffer.takeBatch(into: &batch)
                inline.record()
                // Resumed by the timer's thread: queued here, passed on to the global executor.
                try await Task.sleep(for: .milliseconds(5))
                afterSleep.record()
                return (result, batch)
            }
        }
        await appendFromAThreadOfItsOwn(42, to: buffer, recordingIn: producerThread)
        let (result, batch) = try await withDeadline(.seconds(30), "the consumer's steps", onTimeout: { consumer.cancel() }) {
            try await consumer.value
        }
        #expect(result == .took)
        #expect(batch == [42])
        let producerID = try #require(producerThread.threads.first)
        #expect(inline.threads == [producerID])
        #expect(afterSleep.threads.count == 1 && afterSleep.threads != [producerID])
        #expect(buffer.consumerExecutor.forwardedJobCount >= 1)
    }

    @Test func aTaskThatKeepsQueuingItselfGetsOnlyABoundedRunOnTheDeliveryThread() async throws {
        let buffer = BoundedBatchBuffer<Int>(limits: .init(messages: 1_000, bytes: .max))
        let producerThread = ThreadRecord()
        let yields = ThreadRecord()
        let consumer = Task {
            try await withTaskExecutorPreference(buffer.consumerExecutor) {
                var batch: [Int] = []
                _ = try await buffer.takeBatch(into: &batch)
                for _ in 0..<100 {
                    // Each yield queues the task here again, from the thread it runs on.
                    await Task.yield()
                    yields.record()
                }
            }
        }
        await appendFromAThreadOfItsOwn(1, to: buffer, recordingIn: producerThread)
        try await withDeadline(.seconds(30), "100 yields", onTimeout: { consumer.cancel() }) {
            try await consumer.value
        }
        let producerID = try #require(producerThread.threads.first)
        #expect(yields.count == 100)
        let onProducer = yields.threads.filter { $0 == producerID }.count
        #expect(onProducer >= 1 && onProducer < DeliveryThreadExecutor.stepsPerResume)
    }

    @Test func aStepQueuedHereFromTheDeliveryThreadRunsThereToo() async throws {
        // A hop back to the executor made while running on the delivery thread (a yield here;
        // a switch back from other isolation in a handler) continues there, up to the bound.
        let buffer = BoundedBatchBuffer<Int>(limits: .init(messages: 1_000, bytes: .max))
        let afterWait = ThreadRecord()
        let afterYield = ThreadRecord()
        let consumer = Task {
            try await withTaskExecutorPreference(buffer.consumerExecutor) {
                var batch: [Int] = []
                let result = try await buffer.takeBatch(into: &batch)
                afterWait.record()
                await Task.yield()
                afterYield.record()
                return (result, batch)
            }
        }
        #expect(await eventually { buffer.hasWaitingConsumer })
        // Entering the preference from a pool thread is the one job passed on.
        let forwardedBeforeResume = buffer.consumerExecutor.forwardedJobCount
        #expect(forwardedBeforeResume <= 1)
        let producerThread = ThreadRecord()
        await appendFromAThreadOfItsOwn(5, to: buffer, recordingIn: producerThread)
        let (result, batch) = try await withDeadline(.seconds(30), "the consumer's steps", onTimeout: { consumer.cancel() }) {
            try await consumer.value
        }
        #expect(result == .took && batch == [5])
        #expect(afterWait.threads == producerThread.threads)
        #expect(afterYield.threads == producerThread.threads)
        #expect(buffer.consumerExecutor.forwardedJobCount == forwardedBeforeResume)
    }

    @Test func aConsumerWithoutThePreferenceNeverRunsOnTheAppendingThread() async throws {
        let buffer = BoundedBatchBuffer<Int>(limits: .init(messages: 1_000, bytes: .max))
        let steps = ThreadRecord()
        let consumer = Task {
            var batch: [Int] = []
            let result = try await buffer.takeBatch(into: &batch)
            steps.record()
            return (result, batch)
        }
        let producerThread = ThreadRecord()
        await appendFromAThreadOfItsOwn(7, to: buffer, recordingIn: producerThread)
        let (result, batch) = try await withDeadline(.seconds(30), "the consumer's step", onTimeout: { consumer.cancel() }) {
            try await consumer.value
        }
        #expect(result == .took && batch == [7])
        #expect(await eventually { producerThread.threads.count == 1 })
        #expect(steps.threads.count == 1 && steps.threads != producerThread.threads)
    }

    @Test func aFullBufferStillHandsEverythingOverToAConsumerPreferringTheExecutor() async throws {
        // A producer that finds the buffer full resumes the consumer the ordinary way before it
        // blocks: the step cannot run on the thread that is about to wait for it.
        let buffer = BoundedBatchBuffer<Int>(limits: .init(messages: 10, bytes: .max))
        let consumer = takingPreferringTheExecutor(1_000, from: buffer) { batch in #expect(batch.count <= 10) }
        let producer = Thread {
            // "More coming" for most appends (deferred wake-ups), never for the last.
            for value in 0..<1_000 { buffer.append(value, size: 1) { value % 7 != 0 && value < 999 } }
        }
        producer.start()
        let received = try await withDeadline(.seconds(30), "1,000 elements through a buffer of 10", onTimeout: { consumer.cancel() }) {
            try await consumer.value
        }
        #expect(received == Array(0..<1_000))
    }
}

/// Appends `value`, with nothing more coming, from a thread of its own once `buffer`'s consumer
/// waits; `producer` records that thread.
/// A consumer task preferring the buffer's executor that takes batches until it holds `count`
/// elements (or the buffer ends), calling `onBatch` in the step that took each.
private func takingPreferringTheExecutor(
    _ count: Int, from buffer: BoundedBatchBuffer<Int>, onBatch: @escaping @Sendable ([Int]) -> Void
) -> Task<[Int], any Error> {
    Task {
        try await withTaskExecutorPreference(buffer.consumerExecutor) {
            var received: [Int] = []
            var batch: [Int] = []
            while received.count < count {
                batch.removeAll(keepingCapacity: true)
                guard try await buffer.takeBatch(into: &batch) == .took else { break }
                onBatch(batch)
                received += batch
            }
            return received
        }
    }
}

private func appendFromAThreadOfItsOwn(_ value: Int, to buffer: BoundedBatchBuffer<Int>, recordingIn producer: ThreadRecord) async {
    #expect(await eventually { buffer.hasWaitingConsumer })
    let thread = Thread {
        producer.record()
        buffer.append(value, size: 1) { false }
    }
    thread.start()
}

import Foundation
import Synchronization
import Testing

@testable import NATS
import NATSTestSupport

/// Where `NATSInlineDeliveryExecutor` runs a resumed task: on the delivering thread only when the
/// resumption comes from inside a delivery, and never two tasks nested on one thread.
@Suite("Inline delivery executor")
struct InlineDeliveryExecutorTests {
    /// The calling thread's identity.
    private static func currentThread() -> UInt { UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(bitPattern: UInt(pthread_self())))) }

    /// Runs `body` on a new thread (not one of the cooperative pool) and returns its result.
    private static func onNewThread<Result: Sendable>(_ body: @escaping @Sendable () -> Result) async -> Result {
        await withCheckedContinuation { continuation in
            let thread = Thread { continuation.resume(returning: body()) }
            thread.start()
        }
    }

    /// A task that waits for one element of `buffer` and returns the thread it was resumed on.
    private static func waiter(
        on buffer: BoundedBatchBuffer<Int>, preferInline: Bool, then: @escaping @Sendable () -> Void = {}
    ) -> Task<UInt, any Error> {
        let body: @Sendable () async throws -> UInt = {
            var batch: [Int] = []
            let result = try await buffer.takeBatch(into: &batch)
            guard case .took = result, batch == [1] else { throw NATSError(.invalidArgument, "unexpected \(result) \(batch)") }
            let thread = currentThread()
            then()
            return thread
        }
        if preferInline {
            return Task(executorPreference: NATSInlineDeliveryExecutor.shared, operation: body)
        }
        return Task(operation: body)
    }

    private static func waitUntilWaiting(_ buffer: BoundedBatchBuffer<Int>) async throws {
        try await withDeadline(.seconds(10), "the task to wait on the buffer") {
            while !buffer.hasWaitingConsumer { try await Task.sleep(for: .milliseconds(1)) }
        }
    }

    private static func makeBuffer() -> BoundedBatchBuffer<Int> {
        BoundedBatchBuffer<Int>(limits: .init(messages: 16, bytes: 1_024))
    }

    @Test func aTaskResumedFromADeliveryRunsOnTheDeliveringThreadBeforeTheDeliveryReturns() async throws {
        let buffer = Self.makeBuffer()
        let ran = Atomic<Bool>(false)
        let task = Self.waiter(on: buffer, preferInline: true) { ran.store(true, ordering: .releasing) }
        try await Self.waitUntilWaiting(buffer)
        let (producer, ranDuringDelivery) = await Self.onNewThread {
            _ = NATSInlineDeliveryExecutor.allowingInlineRun { buffer.append(1, size: 1) }
            return (Self.currentThread(), ran.load(ordering: .acquiring))
        }
        #expect(ranDuringDelivery, "the task ran to its end inside the delivery")
        #expect(try await task.value == producer)
    }

    @Test func withoutThePreferenceTheTaskRunsOnThePool() async throws {
        let buffer = Self.makeBuffer()
        let task = Self.waiter(on: buffer, preferInline: false)
        try await Self.waitUntilWaiting(buffer)
        let producer = await Self.onNewThread {
            _ = NATSInlineDeliveryExecutor.allowingInlineRun { buffer.append(1, size: 1) }
            return Self.currentThread()
        }
        #expect(try await task.value != producer)
    }

    @Test func aResumptionOutsideADeliveryGoesToThePool() async throws {
        let buffer = Self.makeBuffer()
        let task = Self.waiter(on: buffer, preferInline: true)
        try await Self.waitUntilWaiting(buffer)
        let producer = await Self.onNewThread {
            buffer.append(1, size: 1)
            return Self.currentThread()
        }
        #expect(try await task.value != producer)
    }

    /// A task running inline that wakes another task preferring the executor does not run it
    /// nested on its own stack: the second one goes to the pool.
    @Test func aTaskRunningInlineDoesNotRunAnotherOneNested() async throws {
        let first = Self.makeBuffer()
        let second = Self.makeBuffer()
        let inner = Self.waiter(on: second, preferInline: true)
        try await Self.waitUntilWaiting(second)
        let outer = Self.waiter(on: first, preferInline: true) {
            _ = NATSInlineDeliveryExecutor.allowingInlineRun { second.append(1, size: 1) }
        }
        try await Self.waitUntilWaiting(first)
        let producer = await Self.onNewThread {
            _ = NATSInlineDeliveryExecutor.allowingInlineRun { first.append(1, size: 1) }
            return Self.currentThread()
        }
        #expect(try await outer.value == producer)
        #expect(try await inner.value != producer)
    }
}

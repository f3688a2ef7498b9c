#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import EventBus
import Synchronization
import Testing

extension EventBusConformance {
    static let deadLetterQueueChecks: [Check] = [deadLetterQueueListInspectRequeuePurge]

    /// A queue that fails its `failOnCall`-th single requeue: a requeue of many that stops in the
    /// middle, as a lost connection would stop it.
    final class FailingRequeueQueue: DeadLetterQueue {
        let base: any DeadLetterQueue
        let failOnCall: Int
        let calls = Atomic<Int>(0)

        init(base: any DeadLetterQueue, failOnCall: Int) {
            self.base = base
            self.failOnCall = failOnCall
        }

        func list(_ filter: DeadLetterFilter, limit: Int) async throws -> [DeadLetterEntry] {
            try await base.list(filter, limit: limit)
        }

        func inspect(sequence: UInt64) async throws -> DeadLetterRecord {
            try await base.inspect(sequence: sequence)
        }

        func requeue(sequence: UInt64, options: DeadLetterRequeueOptions) async throws -> DeadLetterRequeueOutcome {
            if calls.wrappingAdd(1, ordering: .relaxed).newValue == failOnCall {
                throw EventBusError(.backendUnavailable, "injected failure requeueing \(sequence)")
            }
            return try await base.requeue(sequence: sequence, options: options)
        }

        func remove(sequence: UInt64) async throws -> Bool {
            try await base.remove(sequence: sequence)
        }

        func purge(_ filter: DeadLetterFilter) async throws -> Int {
            try await base.purge(filter)
        }
    }

    static let deadLetterQueueListInspectRequeuePurge = Check(
        "deadLetterQueueListInspectRequeuePurge",
        requires: [.deadLetter, .deadLetterQueue, .consumerGroups],
        "dead letters are listed oldest first with their origin and reason, inspected with payload and extensions, requeued to the original subject as a new first attempt (twice is stored once, an interrupted requeue of many continues after its last sequence), and purged by filter"
    ) { context in
        let queue = try context.bus.deadLetterQueue()
        let everything = DeadLetterFilter(subjects: try context.pattern("dlq.>"))
        let handled = Recorder<String>()  // "<event id>@<attempt>" of each acked delivery
        let accepting = Recorder<Bool>()  // empty: terminate every delivery
        let ended = Recorder<Bool>()
        let subscription = try await context.bus.subscribe(context.pattern("dlq.>"), options: .init(group: "dlq-workers"))
        try await withThrowingTaskGroup(of: Void.self) { group in
            iterate(subscription, in: &group, ended: ended) { delivery in
                if accepting.count == 0 {
                    try await delivery.term(reason: "rejected \(delivery.event.id)")
                } else {
                    handled.append("\(delivery.event.id)@\(delivery.deliveryCount)")
                    try await delivery.ack()
                }
            }
            var originals: [Event] = []
            var receipts: [PublishReceipt] = []
            for (index, tail) in ["dlq.orders", "dlq.orders", "dlq.orders", "dlq.payments"].enumerated() {
                var event = context.event(tail, index)
                event.extensions["tenant"] = "acme"
                originals.append(event)
                receipts.append(try await context.bus.publish(event))
            }
            let deadline = ContinuousClock.now + context.timing.stepTimeout
            while try await queue.list(everything, limit: 10).count < 4 {
                guard ContinuousClock.now < deadline else {
                    Issue.record("4 dead letters were not listed within \(context.timing.stepTimeout)")
                    throw EventBusError(.timeout, "dead letters did not arrive")
                }
                try await Task.sleep(for: .milliseconds(20))
            }

            // List: oldest first, each naming its origin.
            let listed = try await queue.list(everything, limit: 10)
            #expect(listed.map(\.sequence) == listed.map(\.sequence).sorted(), "not oldest first: \(listed.map(\.sequence))")
            #expect(Set(listed.map(\.eventID)) == Set(originals.map(\.id)))
            for entry in listed {
                let index = try #require(originals.firstIndex { $0.id == entry.eventID })
                #expect(entry.originalSubject == originals[index].subject)
                #expect(entry.deadLetterSubject == DeadLetter.defaultSubject(for: originals[index].subject))
                #expect(entry.eventType == originals[index].type && entry.eventSource == originals[index].source)
                #expect(entry.reason.contains("rejected \(entry.eventID)"), "reason: \(entry.reason)")
                #expect(entry.attempts == 1)
                #expect(entry.originalSequence == receipts[index].sequence)
                #expect(entry.group == "dlq-workers")
                let time = try #require(entry.time, "no time for dead letter \(entry.sequence)")
                #expect(abs(time.timeIntervalSinceNow) < 120, "dead-letter time \(time) is not now")
            }
            let orders = DeadLetterFilter(subjects: try context.pattern("dlq.orders"))
            #expect(try await queue.list(orders, limit: 10).count == 3)
            #expect(try await queue.list(DeadLetterFilter(subjects: everything.subjects, group: "someone-else"), limit: 10).isEmpty)
            #expect(try await queue.list(DeadLetterFilter(subjects: everything.subjects, since: Date() + 3600), limit: 10).isEmpty)
            #expect(try await queue.list(DeadLetterFilter(subjects: everything.subjects, until: Date() - 3600), limit: 10).isEmpty)
            let firstPage = try await queue.list(everything, limit: 2)
            var next = everything
            next.after = try #require(firstPage.last).sequence
            let secondPage = try await queue.list(next, limit: 10)
            #expect((firstPage + secondPage).map(\.sequence) == listed.map(\.sequence), "paging with after lost or repeated entries")
            await #expect(throws: EventBusError.self) { try await queue.list(everything, limit: 0) }

            // Inspect: the original event, without the dead-letter extensions.
            let first = listed[0]
            let record = try await queue.inspect(sequence: first.sequence)
            let original = try #require(originals.first { $0.id == first.eventID })
            #expect(record.entry.sequence == first.sequence && record.entry.eventID == first.eventID)
            #expect(record.entry.reason == first.reason && record.entry.originalSequence == first.originalSequence)
            #expect(record.event.subject == original.subject && record.event.id == original.id)
            #expect(record.event.data == original.data && record.event.type == original.type)
            #expect(record.event.extensions == ["tenant": "acme"], "extensions: \(record.event.extensions)")
            let notADeadLetter = receipts[0].sequence
            await #expect(throws: EventBusError.self) { try await queue.inspect(sequence: notADeadLetter) }

            // Requeue one: processed once, as a first attempt; a second requeue is a duplicate.
            accepting.append(true)
            let outcome = try await queue.requeue(sequence: first.sequence, options: .init())
            #expect(!outcome.receipt.duplicate && outcome.eventID == original.id && outcome.subject == original.subject)
            try await context.expectEventually("the requeued event was handled") { handled.count >= 1 }
            let again = try await queue.requeue(sequence: first.sequence, options: .init())
            #expect(again.receipt.duplicate, "requeueing the same dead letter twice stored it twice")
            #expect(again.receipt.sequence == outcome.receipt.sequence)
            try await Task.sleep(for: context.timing.quietPeriod)
            #expect(handled.all == ["\(original.id)@1"], "handled: \(handled.all)")

            // Requeue many, interrupted at the second: the error says how far it got; a rerun after
            // that sequence requeues the rest; a rerun from the start stores nothing new.
            var rest = everything
            rest.after = first.sequence
            let failing = FailingRequeueQueue(base: queue, failOnCall: 2)
            var stopped: DeadLetterRequeueError?
            do throws(DeadLetterRequeueError) {
                try await failing.requeue(rest)
                Issue.record("the injected failure did not stop the requeue")
            } catch {
                stopped = error
            }
            let progress = try #require(stopped).progress
            #expect(progress.requeued == 1 && progress.lastSequence == listed[1].sequence, "\(progress)")
            #expect(stopped?.failedSequence == listed[2].sequence)
            rest.after = try #require(progress.lastSequence)
            let resumed = try await queue.requeue(rest)
            #expect(resumed.requeued == 2 && resumed.duplicates == 0, "\(resumed)")
            #expect(resumed.lastSequence == listed[3].sequence)
            let rerun = try await queue.requeue(everything)
            #expect(rerun.requeued == 0 && rerun.duplicates == 4, "a rerun from the start stored again: \(rerun)")
            try await context.expectEventually("every requeued event was handled") { handled.count >= 4 }
            try await Task.sleep(for: context.timing.quietPeriod)
            #expect(
                handled.all.sorted() == originals.map { "\($0.id)@1" }.sorted(),
                "each requeued event must be handled once, as a first attempt: \(handled.all)")

            // Purge by filter: payments only, then the rest by group; nothing else is touched.
            let payments = DeadLetterFilter(subjects: try context.pattern("dlq.payments"))
            #expect(try await queue.purge(payments) == 1)
            let ordersLeft = listed.filter { $0.originalSubject != context.subject("dlq.payments") }.map(\.sequence)
            #expect(try await queue.list(everything, limit: 10).map(\.sequence) == ordersLeft)
            #expect(try await queue.purge(DeadLetterFilter(subjects: everything.subjects, group: "dlq-workers")) == 3)
            #expect(try await queue.list(everything, limit: 10).isEmpty)
            #expect(try await queue.remove(sequence: first.sequence) == false, "a purged dead letter was removed again")
            await #expect(throws: EventBusError.self) { try await queue.remove(sequence: notADeadLetter) }
            try await context.closeAndAwaitEnd([subscription], ended: ended, expected: 1, group: &group)
        }
    }
}

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import EventBus
import Testing

extension EventBusConformance {
    static let deadLetterChecks: [Check] = [maxDeliverMovesToDeadLetter, termStopsRedeliveryAndDeadLetters, undecodableEventGoesToDeadLetter]

    /// Collects the dead letters arriving on `pattern` while `body` runs.
    static func collectingDeadLetters(
        _ context: CheckContext,
        on pattern: SubjectPattern,
        _ body: @escaping @Sendable (Recorder<Event>) async throws -> Void
    ) async throws {
        let deadLetters = Recorder<Event>()
        let ended = Recorder<Bool>()
        let subscription = try await context.bus.subscribe(pattern, options: .init())
        try await withThrowingTaskGroup(of: Void.self) { group in
            iterate(subscription, in: &group, ended: ended) { delivery in
                deadLetters.append(delivery.event)
                try await delivery.ack()
            }
            try await body(deadLetters)
            try await context.closeAndAwaitEnd([subscription], ended: ended, expected: 1, group: &group)
        }
    }

    static let maxDeliverMovesToDeadLetter = Check(
        "maxDeliverMovesToDeadLetter",
        requires: .deadLetter,
        "after maxDeliver failed attempts the event moves to the dead-letter subject with headers naming its origin, attempts and last error"
    ) { context in
        let subject = context.subject("dl.orders")
        try await collectingDeadLetters(context, on: try SubjectPattern(DeadLetter.defaultSubject(for: subject))) { deadLetters in
            let attempts = Recorder<Int>()
            let consumer = try await context.connect()
            let ended = Recorder<Bool>()
            let probes = Recorder<Bool>()
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask(operation: {
                    defer { ended.append(true) }
                    try await consumer.consume(
                        SubjectPattern(subject), options: .init(group: "dlgroup", maxDeliver: 3)
                    ) { delivery in
                        if CheckContext.isProbe(delivery.event) {
                            probes.append(true)
                            return
                        }
                        attempts.append(delivery.deliveryCount)
                        throw IntendedFailure(text: "boom on attempt \(delivery.deliveryCount)")
                    }
                })
                try await context.awaitConsumerReady("dl.orders", probesSeen: probes)
                var event = context.event("dl.orders", 7)
                event.extensions["tenant"] = "acme"
                event.correlationID = "corr-dl"
                let receipt = try await context.bus.publish(event)
                try await context.expectEventually("the dead letter arrived") { deadLetters.count >= 1 }
                try await Task.sleep(for: context.timing.quietPeriod)
                #expect(attempts.all == [1, 2, 3], "the handler saw attempts \(attempts.all), expected [1, 2, 3]")
                #expect(deadLetters.count == 1, "\(deadLetters.count) dead letters for one event")
                if let dead = deadLetters.all.first {
                    #expect(dead.id == event.id && dead.type == event.type && dead.source == event.source)
                    #expect(dead.data == event.data && dead.correlationID == "corr-dl")
                    #expect(dead.subject == DeadLetter.defaultSubject(for: subject))
                    #expect(dead.extensions["tenant"] == "acme", "the original extensions were lost")
                    #expect(dead.extensions[DeadLetter.subjectHeader] == subject)
                    #expect(dead.extensions[DeadLetter.attemptsHeader] == "3")
                    #expect(dead.extensions[DeadLetter.errorHeader]?.contains("boom on attempt 3") == true,
                            "last error header: \(dead.extensions[DeadLetter.errorHeader] ?? "missing")")
                    #expect(dead.extensions[DeadLetter.streamSequenceHeader] == String(receipt.sequence))
                    #expect(dead.extensions[DeadLetter.groupHeader] == "dlgroup")
                }
                await consumer.close()
                if !(try await context.expectEventually("consume() ended after close") { ended.count == 1 }) {
                    group.cancelAll()
                }
            }
        }
    }

    static let termStopsRedeliveryAndDeadLetters = Check(
        "termStopsRedeliveryAndDeadLetters",
        requires: .deadLetter,
        "term(reason:) stops redelivery and sends the event to the configured dead-letter subject with the reason"
    ) { context in
        let custom = context.subject("graveyard")
        try await collectingDeadLetters(context, on: try SubjectPattern(custom)) { deadLetters in
            let received = Recorder<Delivery>()
            let ended = Recorder<Bool>()
            let subscription = try await context.bus.subscribe(
                context.pattern("term"), options: .init(ackWait: context.timing.ackWait, deadLetterSubject: custom)
            )
            try await withThrowingTaskGroup(of: Void.self) { group in
                iterate(subscription, in: &group, ended: ended) { delivery in
                    received.append(delivery)
                    try await delivery.term(reason: "unknown customer 42")
                }
                try await context.bus.publish(context.event("term"))
                try await context.expectEventually("the terminated event reached \(custom)") { deadLetters.count >= 1 }
                try await Task.sleep(for: context.timing.ackWait + context.timing.quietPeriod)
                #expect(received.count == 1, "a terminated event was delivered \(received.count) times")
                let dead = try #require(deadLetters.all.first)
                #expect(dead.extensions[DeadLetter.errorHeader]?.contains("unknown customer 42") == true)
                #expect(dead.extensions[DeadLetter.attemptsHeader] == "1")
                #expect(dead.extensions[DeadLetter.subjectHeader] == context.subject("term"))
                #expect(dead.extensions[DeadLetter.groupHeader] == nil, "no group, so no group header")
                try await context.closeAndAwaitEnd([subscription], ended: ended, expected: 1, group: &group)
            }
        }
    }

    struct Order: Codable, Sendable, Equatable {
        var number: Int
        var customer: String
    }

    static let undecodableEventGoesToDeadLetter = Check(
        "undecodableEventGoesToDeadLetter",
        requires: .deadLetter,
        "a typed subscription dead-letters an event that does not decode and goes on with the next"
    ) { context in
        let subject = context.subject("typed")
        try await collectingDeadLetters(context, on: try SubjectPattern(DeadLetter.defaultSubject(for: subject))) { deadLetters in
            let typed = try await context.bus.subscribe(subject, as: Order.self)
            try await context.bus.publish(Order(number: 1, customer: "ada"), subject: subject, type: "order", source: CheckContext.source)
            try await context.bus.publish(Event(subject: subject, type: "order", source: CheckContext.source, data: Array("not json".utf8)))
            try await context.bus.publish(Order(number: 2, customer: "bob"), subject: subject, type: "order", source: CheckContext.source)
            let orders = try await withTimeLimit(context.timing.stepTimeout, "two decodable orders", onTimeout: { await typed.close() }) {
                var orders: [Order] = []
                for try await delivery in typed {
                    orders.append(delivery.value)
                    try await delivery.ack()
                    if orders.count == 2 { break }
                }
                return orders
            }
            #expect(orders == [Order(number: 1, customer: "ada"), Order(number: 2, customer: "bob")])
            try await context.expectEventually("the undecodable event was dead-lettered") { deadLetters.count >= 1 }
            #expect(deadLetters.all.first.map { payloadText($0) } == "not json")
            #expect(deadLetters.all.first?.extensions[DeadLetter.errorHeader]?.contains("decode") == true)
            await typed.close()
        }
    }
}

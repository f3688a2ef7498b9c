#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import EventBus
import Testing

extension EventBusConformance {
    static let publishSubscribeChecks: [Check] = [
        publishSubscribePreservesEverything, concurrentPublishersAndSubscribers, manySubjectsNoCrossTalk,
        wildcardPatterns, perSubjectOrder, duplicateIDSuppressed, publishBatch,
    ]

    static let publishSubscribePreservesEverything = Check(
        "publishSubscribePreservesEverything",
        "every CloudEvents attribute, extension, trace header and payload byte arrives unchanged; receipts carry rising sequences"
    ) { context in
        let subscription = try await context.bus.subscribe(context.pattern("attributes.>"), options: .init())
        var full = Event(
            id: "id-\(UUID().uuidString)", subject: context.subject("attributes.full"), type: "com.example.order.created",
            source: "/orders/eu", time: Date(timeIntervalSince1970: 1_760_000_000.123),
            dataContentType: "application/octet-stream", data: (0...255).map(UInt8.init) + Array(repeating: 7, count: 1000),
            extensions: ["tenant": "acme", "region": "eu-1", "x-priority": "high"],
            correlationID: "corr-1", causationID: "cause-1",
            traceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", traceState: "vendor=value"
        )
        full.extensions["unicode"] = "grüße ✓"
        let minimal = Event(subject: context.subject("attributes.minimal"), type: "t", source: "/s", time: nil)
        let first = try await context.bus.publish(full)
        let second = try await context.bus.publish(minimal)
        #expect(!first.duplicate && !second.duplicate)
        #expect(first.sequence > 0 && second.sequence > first.sequence, "receipt sequences must rise: \(first), \(second)")

        let received = try await withTimeLimit(
            context.timing.stepTimeout, "receiving 2 events", onTimeout: { await subscription.close() }
        ) {
            var deliveries: [Delivery] = []
            for try await delivery in subscription {
                try await delivery.ack()
                deliveries.append(delivery)
                if deliveries.count == 2 { break }
            }
            return deliveries
        }
        try #require(received.count == 2, "expected 2 deliveries, got \(received.count)")
        let got = try #require(received.first { $0.event.id == full.id }, "the full event did not arrive")
        #expect(got.event.subject == full.subject && got.subject == full.subject)
        #expect(got.event.type == full.type)
        #expect(got.event.source == full.source)
        #expect(got.event.dataContentType == full.dataContentType)
        #expect(got.event.data == full.data, "payload bytes changed")
        #expect(got.event.extensions == full.extensions)
        #expect(got.event.correlationID == full.correlationID)
        #expect(got.event.causationID == full.causationID)
        #expect(got.event.traceParent == full.traceParent)
        #expect(got.event.traceState == full.traceState)
        let sentTime = try #require(full.time)
        let gotTime = try #require(got.event.time, "time was lost")
        #expect(abs(gotTime.timeIntervalSince(sentTime)) < 0.001, "time changed: sent \(sentTime), got \(gotTime)")
        #expect(got.deliveryCount == 1)
        #expect(got.sequence == first.sequence, "delivery sequence \(got.sequence) differs from receipt \(first.sequence)")
        #expect(!got.isRequest)

        let gotMinimal = try #require(received.first { $0.event.id == minimal.id }, "the minimal event did not arrive")
        #expect(gotMinimal.event.data.isEmpty)
        #expect(gotMinimal.event.time == nil && gotMinimal.event.dataContentType == nil)
        #expect(gotMinimal.event.extensions.isEmpty && gotMinimal.event.correlationID == nil)
        #expect(gotMinimal.event.traceParent == nil && gotMinimal.event.traceState == nil)
        await subscription.close()
    }

    static let concurrentPublishersAndSubscribers = Check(
        "concurrentPublishersAndSubscribers",
        "many publishers and independent subscribers at once: every subscriber gets every event exactly once"
    ) { context in
        let publishers = context.scaled(short: 4, long: 8)
        let perPublisher = context.scaled(short: 50, long: 1000)
        let subscriberCount = context.scaled(short: 3, long: 4)
        let total = publishers * perPublisher
        let received = (0..<subscriberCount).map { _ in Recorder<String>() }
        let ended = Recorder<Bool>()
        var subscriptions: [EventSubscription] = []
        for _ in 0..<subscriberCount {
            subscriptions.append(try await context.bus.subscribe(context.pattern("load.>"), options: .init()))
        }
        let published = Recorder<String>()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (index, subscription) in subscriptions.enumerated() {
                iterate(subscription, in: &group, ended: ended) { delivery in
                    received[index].append(delivery.event.id)
                    try await delivery.ack()
                }
            }
            try await withThrowingTaskGroup(of: Void.self) { publishing in
                for publisher in 0..<publishers {
                    publishing.addTask(operation: {
                        for index in 0..<perPublisher {
                            let event = context.event("load.p\(publisher)", index)
                            try await context.bus.publish(event)
                            published.append(event.id)
                        }
                    })
                }
                try await publishing.waitForAll()
            }
            #expect(published.count == total)
            for (index, recorder) in received.enumerated() {
                try await context.expectEventually("subscriber \(index) received \(recorder.count) of \(total)") {
                    recorder.count >= total
                }
            }
            try await Task.sleep(for: context.timing.quietPeriod)
            let expected = Set(published.all)
            for (index, recorder) in received.enumerated() {
                let ids = recorder.all
                #expect(ids.count == total, "subscriber \(index) got \(ids.count) deliveries for \(total) events")
                let complete = Set(ids) == expected
                #expect(complete, "subscriber \(index): \(describeMissing(expected, from: ids))")
            }
            try await context.closeAndAwaitEnd(subscriptions, ended: ended, expected: subscriberCount, group: &group)
        }
    }

    static let manySubjectsNoCrossTalk = Check(
        "manySubjectsNoCrossTalk",
        "a subscriber of one subject among many gets exactly that subject's events"
    ) { context in
        let subjects = context.scaled(short: 20, long: 200)
        let perSubject = context.scaled(short: 5, long: 20)
        let received = (0..<subjects).map { _ in Recorder<String>() }
        let ended = Recorder<Bool>()
        var subscriptions: [EventSubscription] = []
        for index in 0..<subjects {
            subscriptions.append(try await context.bus.subscribe(context.pattern("many.s\(index).created"), options: .init()))
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (index, subscription) in subscriptions.enumerated() {
                iterate(subscription, in: &group, ended: ended) { delivery in
                    received[index].append(delivery.event.subject)
                    try await delivery.ack()
                }
            }
            for round in 0..<perSubject {
                for index in 0..<subjects {
                    try await context.bus.publish(context.event("many.s\(index).created", round))
                }
            }
            try await context.expectEventually("every subject's subscriber got its \(perSubject) events") {
                received.allSatisfy { $0.count >= perSubject }
            }
            try await Task.sleep(for: context.timing.quietPeriod)
            for (index, recorder) in received.enumerated() {
                let subjectsSeen = recorder.all
                #expect(subjectsSeen.count == perSubject, "subject \(index): \(subjectsSeen.count) deliveries, expected \(perSubject)")
                #expect(
                    subjectsSeen.allSatisfy { $0 == context.subject("many.s\(index).created") },
                    "subject \(index) received another subject's events: \(Set(subjectsSeen))"
                )
            }
            try await context.closeAndAwaitEnd(subscriptions, ended: ended, expected: subjects, group: &group)
        }
    }

    static let wildcardPatterns = Check(
        "wildcardPatterns",
        "'*' matches exactly one token and '>' one or more trailing tokens"
    ) { context in
        let subjects = ["a.b.c", "a.b.d", "a.x.c", "a.b", "a.b.c.d", "b.b.c", "a"]
        let expectations: [(String, Set<String>)] = [
            ("a.*.c", ["a.b.c", "a.x.c"]),
            ("a.>", ["a.b.c", "a.b.d", "a.x.c", "a.b", "a.b.c.d"]),
            ("a.b.*", ["a.b.c", "a.b.d"]),
            ("*.b.c", ["a.b.c", "b.b.c"]),
            ("a.b", ["a.b"]),
            ("a.*", ["a.b"]),
            ("*.*.*", ["a.b.c", "a.b.d", "a.x.c", "b.b.c"]),
            ("a.b.>", ["a.b.c", "a.b.d", "a.b.c.d"]),
            ("*.>", ["a.b.c", "a.b.d", "a.x.c", "a.b", "a.b.c.d", "b.b.c"]),
            ("*", ["a"]),
        ]
        let received = expectations.map { _ in Recorder<String>() }
        let ended = Recorder<Bool>()
        var subscriptions: [EventSubscription] = []
        for (pattern, _) in expectations {
            subscriptions.append(try await context.bus.subscribe(context.pattern("wild.\(pattern)"), options: .init()))
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (index, subscription) in subscriptions.enumerated() {
                iterate(subscription, in: &group, ended: ended) { delivery in
                    received[index].append(String(delivery.event.subject.dropFirst(context.prefix.count + ".wild.".count)))
                    try await delivery.ack()
                }
            }
            for subject in subjects {
                try await context.bus.publish(context.event("wild.\(subject)"))
            }
            try await context.expectEventually("every pattern got its matching subjects") {
                zip(received, expectations).allSatisfy { $0.count >= $1.1.count }
            }
            try await Task.sleep(for: context.timing.quietPeriod)
            for (index, (pattern, expected)) in expectations.enumerated() {
                let got = received[index].all
                let matchedRight = Set(got) == expected
                #expect(matchedRight, "pattern '\(pattern)' matched \(Set(got).sorted()), expected \(expected.sorted())")
                #expect(got.count == expected.count, "pattern '\(pattern)' got \(got.count) deliveries, expected \(expected.count)")
            }
            try await context.closeAndAwaitEnd(subscriptions, ended: ended, expected: subscriptions.count, group: &group)
        }
    }

    static let perSubjectOrder = Check(
        "perSubjectOrder",
        "one subscriber with maxInFlight 1 sees each subject's events in publish order"
    ) { context in
        let subjects = 4
        let perSubject = context.scaled(short: 50, long: 500)
        let received = Recorder<(String, Int)>()
        let ended = Recorder<Bool>()
        let subscription = try await context.bus.subscribe(context.pattern("ordered.*"), options: .init(maxInFlight: 1))
        try await withThrowingTaskGroup(of: Void.self) { group in
            iterate(subscription, in: &group, ended: ended) { delivery in
                let index = Int(payloadText(delivery.event).split(separator: "#").last ?? "") ?? -1
                received.append((delivery.event.subject, index))
                try await delivery.ack()
            }
            try await withThrowingTaskGroup(of: Void.self) { publishing in
                for subject in 0..<subjects {
                    publishing.addTask(operation: {
                        for index in 0..<perSubject {
                            try await context.bus.publish(context.event("ordered.s\(subject)", index))
                        }
                    })
                }
                try await publishing.waitForAll()
            }
            try await context.expectEventually("received \(received.count) of \(subjects * perSubject)") {
                received.count >= subjects * perSubject
            }
            var bySubject: [String: [Int]] = [:]
            for (subject, index) in received.all {
                bySubject[subject, default: []].append(index)
            }
            for subject in 0..<subjects {
                let indexes = bySubject[context.subject("ordered.s\(subject)")] ?? []
                let inOrder = indexes == Array(0..<perSubject)
                #expect(
                    inOrder,
                    "subject s\(subject): \(indexes.count) events, first out of place (got, expected): \(Array(zip(indexes, 0..<perSubject).filter { $0 != $1 }.prefix(5)))"
                )
            }
            try await context.closeAndAwaitEnd([subscription], ended: ended, expected: 1, group: &group)
        }
    }

    static let duplicateIDSuppressed = Check(
        "duplicateIDSuppressed",
        "publishing an event id again inside the duplicate window stores it once and says so"
    ) { context in
        let subscription = try await context.bus.subscribe(context.pattern("dedup"), options: .init())
        let received = Recorder<String>()
        let ended = Recorder<Bool>()
        try await withThrowingTaskGroup(of: Void.self) { group in
            iterate(subscription, in: &group, ended: ended) { delivery in
                received.append(delivery.event.id)
                try await delivery.ack()
            }
            let event = context.event("dedup", id: "dup-\(UUID().uuidString)")
            let first = try await context.bus.publish(event)
            let again = try await context.bus.publish(event)
            var changedPayload = event
            changedPayload.data = Array("changed".utf8)
            let third = try await context.bus.publish(changedPayload)
            let other = try await context.bus.publish(context.event("dedup", 1))
            #expect(!first.duplicate, "the first publish was reported as a duplicate")
            #expect(again.duplicate && third.duplicate, "republishing id \(event.id) was not reported as a duplicate")
            #expect(again.sequence == first.sequence && third.sequence == first.sequence, "a duplicate's receipt must carry the original sequence")
            #expect(!other.duplicate && other.sequence > first.sequence)
            try await context.expectEventually("both distinct events arrived") { received.count >= 2 }
            try await Task.sleep(for: context.timing.quietPeriod)
            #expect(received.all.filter { $0 == event.id }.count == 1, "the duplicated id was delivered \(received.all.filter { $0 == event.id }.count) times")
            #expect(received.count == 2)
            try await context.closeAndAwaitEnd([subscription], ended: ended, expected: 1, group: &group)
        }
    }

    static let publishBatch = Check(
        "publishBatch",
        "publish(contentsOf:) stores a batch and returns receipts in order; a repeated id is a duplicate; an invalid event stores nothing"
    ) { context in
        let subscription = try await context.bus.subscribe(context.pattern("batch"), options: .init())
        let received = Recorder<String>()
        let ended = Recorder<Bool>()
        try await withThrowingTaskGroup(of: Void.self) { group in
            iterate(subscription, in: &group, ended: ended) { delivery in
                received.append(delivery.event.id)
                try await delivery.ack()
            }
            // An invalid event anywhere in a batch fails it before anything is stored.
            var invalid = context.event("batch", 0)
            invalid.extensions["Not Valid"] = "x"
            await expectEventBusError(.invalidEvent, "a batch with an invalid event") {
                _ = try await context.bus.publish(contentsOf: [context.event("batch", 1), invalid])
            }
            let count = context.scaled(short: 300, long: 3_000)
            var events = (0..<count).map { context.event("batch", $0) }
            events.append(events[0])  // the same id again: stored once
            let receipts = try await context.bus.publish(contentsOf: events)
            try #require(receipts.count == events.count, "\(receipts.count) receipts for \(events.count) events")
            let stored = receipts.dropLast()
            #expect(stored.allSatisfy { !$0.duplicate }, "a new event was reported as a duplicate")
            #expect(zip(stored, stored.dropFirst()).allSatisfy { $0.sequence < $1.sequence }, "receipts are not in publish order")
            #expect(receipts.last?.duplicate == true && receipts.last?.sequence == receipts.first?.sequence, "the repeated id was stored again")
            #expect(try await context.bus.publish(contentsOf: []).isEmpty)
            try await context.expectEventually("every batch event arrived") { received.count >= count }
            try await Task.sleep(for: context.timing.quietPeriod)
            #expect(received.count == count, "\(received.count) deliveries for \(count) distinct events (the invalid batch stores nothing)")
            #expect(Set(received.all) == Set(events.map(\.id)))
            try await context.closeAndAwaitEnd([subscription], ended: ended, expected: 1, group: &group)
        }
    }
}

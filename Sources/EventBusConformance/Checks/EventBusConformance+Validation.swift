import EventBus
import Testing

extension EventBusConformance {
    static let validationChecks: [Check] = [invalidInputRejectedBeforeAnythingHappens]

    static let invalidInputRejectedBeforeAnythingHappens = Check(
        "invalidInputRejectedBeforeAnythingHappens",
        "bad subjects, patterns, events and options fail with a typed error and nothing is stored or delivered"
    ) { context in
        let received = Recorder<String>()
        let ended = Recorder<Bool>()
        let watcher = try await context.bus.subscribe(context.pattern("invalid.>"), options: .init())
        try await withThrowingTaskGroup(of: Void.self) { group in
            iterate(watcher, in: &group, ended: ended) { delivery in
                received.append(delivery.event.subject)
                try await delivery.ack()
            }
            let base = context.subject("invalid")
            for subject in ["\(base)..x", "\(base).*", "\(base).>", "\(base).a b", "\(base).tab\t", "\(base).", "\(base).x*y"] {
                await expectEventBusError(.invalidSubject, "publish on '\(subject.debugDescription)'") {
                    try await context.bus.publish(Event(subject: subject, type: "t", source: "/s"))
                }
            }
            await expectEventBusError(.invalidSubject, "publish on an empty subject") {
                try await context.bus.publish(Event(subject: "", type: "t", source: "/s"))
            }
            var badEvents: [(String, Event)] = []
            badEvents.append(("empty id", Event(id: "", subject: "\(base).e", type: "t", source: "/s")))
            badEvents.append(("empty type", Event(subject: "\(base).e", type: "", source: "/s")))
            badEvents.append(("empty source", Event(subject: "\(base).e", type: "t", source: "")))
            badEvents.append(("upper-case extension", Event(subject: "\(base).e", type: "t", source: "/s", extensions: ["Tenant": "x"])))
            badEvents.append(("reserved extension", Event(subject: "\(base).e", type: "t", source: "/s", extensions: ["id": "x"])))
            badEvents.append(("newline in extension value", Event(subject: "\(base).e", type: "t", source: "/s", extensions: ["a": "x\r\ny"])))
            badEvents.append(("NUL in correlation id", Event(subject: "\(base).e", type: "t", source: "/s", correlationID: "a\0b")))
            badEvents.append(("newline in type", Event(subject: "\(base).e", type: "t\n", source: "/s")))
            for (what, event) in badEvents {
                await expectEventBusError(.invalidEvent, "publish with \(what)") { try await context.bus.publish(event) }
            }
            for pattern in ["\(base).>.x", "\(base).a*", "\(base)..a", "", "\(base).>x", "\(base). "] {
                await expectEventBusError(.invalidPattern, "subscribe to '\(pattern.debugDescription)'") {
                    _ = try await context.bus.subscribe(pattern, options: .init())
                }
            }
            let badOptions: [(String, SubscriptionOptions)] = [
                ("maxInFlight 0", .init(maxInFlight: 0)),
                ("ackWait 0", .init(ackWait: .zero)),
                ("maxDeliver 0", .init(maxDeliver: 0)),
                ("group with a dot", .init(group: "a.b")),
                ("empty group", .init(group: "")),
                ("start sequence 0", .init(start: .sequence(0))),
                ("negative backoff", .init(backoff: [.seconds(-1)])),
                ("more backoff steps than deliveries", .init(maxDeliver: 1, backoff: [.seconds(1), .seconds(2)])),
            ]
            for (what, options) in badOptions {
                await expectEventBusError(.invalidOption, "subscribe with \(what)") {
                    _ = try await context.bus.subscribe(context.pattern("invalid.options"), options: options)
                }
            }
            await expectEventBusError(.invalidSubject, "subscribe with a wildcard dead-letter subject") {
                _ = try await context.bus.subscribe(context.pattern("invalid.options"), options: .init(deadLetterSubject: "dead.*"))
            }
            try await Task.sleep(for: context.timing.quietPeriod)
            #expect(received.all.isEmpty, "rejected publishes were delivered: \(received.all)")
            try await context.bus.publish(context.event("invalid.ok"))
            try await context.expectEventually("a valid event still arrives") { received.count == 1 }
            try await context.closeAndAwaitEnd([watcher], ended: ended, expected: 1, group: &group)
        }
    }
}

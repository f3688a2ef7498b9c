import EventBus
import Testing

extension EventBusConformance {
    static let requestReplyChecks: [Check] = [requestReply, requestTimeoutAndNoResponders]

    static let requestReply = Check(
        "requestReply",
        requires: .requestReply,
        "each request gets its own reply, also with many in flight and a group of responders"
    ) { context in
        let responder = try await context.connect()
        let answered = Recorder<Int>()
        let ended = Recorder<Bool>()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for member in 0..<2 {
                let subscription = try await responder.subscribe(context.pattern("rpc.echo"), options: .init(group: context.bus.capabilities.contains(.consumerGroups) ? "echo" : nil))
                iterate(subscription, in: &group, ended: ended) { delivery in
                    #expect(delivery.isRequest)
                    var reply = Event(
                        subject: context.subject("rpc.echo.reply"), type: "echo.reply", source: CheckContext.source,
                        data: Array(delivery.event.data.reversed())
                    )
                    reply.correlationID = delivery.event.id
                    answered.append(member)
                    try await delivery.respond(reply)
                    try await delivery.ack()
                }
            }
            let requests = context.scaled(short: 20, long: 200)
            try await withThrowingTaskGroup(of: Void.self) { requesting in
                for index in 0..<requests {
                    requesting.addTask(operation: {
                        let request = context.event("rpc.echo", index)
                        let reply = try await context.bus.request(request, timeout: context.timing.stepTimeout)
                        #expect(reply.correlationID == request.id, "reply to another request")
                        #expect(reply.data == Array(request.data.reversed()))
                        #expect(reply.type == "echo.reply")
                    })
                }
                try await requesting.waitForAll()
            }
            if context.bus.capabilities.contains(.consumerGroups) {
                #expect(answered.count == requests, "\(answered.count) answers for \(requests) requests to one group")
            }
            await responder.close()
            if !(try await context.expectEventually("responders ended") { ended.count == 2 }) {
                group.cancelAll()
            }
        }
    }

    static let requestTimeoutAndNoResponders = Check(
        "requestTimeoutAndNoResponders",
        requires: .requestReply,
        "a request nobody answers times out in time; a request nobody subscribes to fails with noResponders"
    ) { context in
        let silent = try await context.bus.subscribe(context.pattern("rpc.silent"), options: .init())
        let ended = Recorder<Bool>()
        try await withThrowingTaskGroup(of: Void.self) { group in
            iterate(silent, in: &group, ended: ended) { try await $0.ack() }
            let timeout = context.timing.ackWait / 2
            let clock = ContinuousClock()
            let start = clock.now
            await expectEventBusError(.timeout, "request nobody answers") {
                _ = try await context.bus.request(context.event("rpc.silent"), timeout: timeout)
            }
            let took = start.duration(to: clock.now)
            #expect(took >= timeout * 0.9 && took < timeout + context.timing.stepTimeout / 4, "timed out after \(took), timeout \(timeout)")
            await expectEventBusError(.noResponders, "request nobody subscribes to") {
                _ = try await context.bus.request(context.event("rpc.nobody"), timeout: context.timing.stepTimeout)
            }
            try await context.closeAndAwaitEnd([silent], ended: ended, expected: 1, group: &group)
        }
    }
}

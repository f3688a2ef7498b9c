import EventBus
import EventBusConformance
import MyBus
import Testing

@Suite("MyBus conformance")
struct MyBusConformanceTests {
    static let harness = EventBusConformanceHarness(
        // Timing checks scale with the ack wait; every other wait ends after the step timeout.
        timing: ConformanceTiming(ackWait: .seconds(1), quietPeriod: .milliseconds(300), stepTimeout: .seconds(20)),
        // A fresh, empty bus for every check: here a new stream on the server.
        makeBus: { try await MyBus.connect(stream: "conformance-\(UInt64.random(in: 0...UInt64.max))") },
        // A second client of the same backend, as a second process would connect.
        connect: { bus in try await (bus as! MyBus).connectAnotherClient() },
        // Releases what makeBus set up.
        teardown: { bus in
            await bus.close()
            try await (bus as! MyBus).deleteStream()
        }
    )
}

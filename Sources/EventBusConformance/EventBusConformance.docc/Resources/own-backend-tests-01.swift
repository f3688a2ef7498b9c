import EventBus
import EventBusConformance
import MyBus
import Testing

@Suite("MyBus conformance")
struct MyBusConformanceTests {
    static let harness = EventBusConformanceHarness(
        // A fresh, empty bus for every check: here a new stream on the server.
        makeBus: { try await MyBus.connect(stream: "conformance-\(UInt64.random(in: 0...UInt64.max))") },
        // A second client of the same backend, as a second process would connect.
        connect: { bus in try await (bus as! MyBus).connectAnotherClient() }
    )
}

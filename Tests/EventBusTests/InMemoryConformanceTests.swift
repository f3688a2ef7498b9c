import EventBus
import EventBusConformance
import Testing

/// The in-memory bus against the whole conformance suite, at both sizes.
@Suite("InMemoryEventBus conformance")
struct InMemoryConformanceTests {
    static let harness = EventBusConformanceHarness(
        timing: ConformanceTiming(ackWait: .seconds(1), quietPeriod: .milliseconds(100), stepTimeout: .seconds(20)),
        makeBus: { try InMemoryEventBus() },
        connect: { bus in
            guard let memory = bus as? InMemoryEventBus else {
                throw EventBusError(.invalidOption, "the in-memory harness got a \(type(of: bus))")
            }
            return memory.newClient()
        }
    )

    @Test(arguments: EventBusConformance.checks)
    func conformance(_ check: EventBusConformance.Check) async throws {
        try await EventBusConformance.run(check, harness: Self.harness, size: .long)
    }

    /// The size slow backends use; cheap here, and it keeps the short counts exercised.
    @Test(arguments: EventBusConformance.checks)
    func conformanceShort(_ check: EventBusConformance.Check) async throws {
        try await EventBusConformance.run(check, harness: Self.harness, size: .short)
    }
}

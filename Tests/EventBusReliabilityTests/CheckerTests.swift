import EventBusReliabilitySupport
import Testing

/// The checker must find each kind of violation, or a green fault test would mean nothing.
@Suite("Consistency checker")
struct CheckerTests {
    func acked(_ id: String, _ sequence: UInt64, duplicate: Bool = false, attempts: Int = 1) -> PublishRecord {
        PublishRecord(id: id, outcome: .acked(sequence: sequence, duplicate: duplicate), attempts: attempts, startedAt: 0, completedAt: 0)
    }

    func unknown(_ id: String) -> PublishRecord {
        PublishRecord(id: id, outcome: .unknown(reason: "timeout"), attempts: 3, startedAt: 0, completedAt: 0)
    }

    func failed(_ id: String) -> PublishRecord {
        PublishRecord(id: id, outcome: .failed(reason: "no responders"), attempts: 1, startedAt: 0, completedAt: 0)
    }

    @Test func consistentHistoryPasses() {
        let report = ConsistencyChecker.check(
            published: [acked("a", 1), acked("b", 2, duplicate: true, attempts: 2), unknown("c"), unknown("d"), failed("e")],
            stored: [.init(id: "a", sequence: 1), .init(id: "b", sequence: 2), .init(id: "c", sequence: 3)],
            deliveries: [
                .init(id: "a", sequence: 1, deliveryCount: 1, receiver: "w1", at: 0),
                .init(id: "b", sequence: 2, deliveryCount: 1, receiver: "w2", at: 0),
                .init(id: "b", sequence: 2, deliveryCount: 2, receiver: "w1", at: 0),
                .init(id: "c", sequence: 3, deliveryCount: 1, receiver: "w1", at: 0),
            ])
        #expect(report.isValid, "\(report)")
        #expect(report.acked == 2 && report.unknown == 2 && report.failed == 1)
        #expect(report.recoveredUnknown == 1 && report.unknownNotStored == 1)
        #expect(report.acksMarkedDuplicate == 1 && report.retried == 3)
        #expect(report.redeliveries == 1 && report.deliveredToSeveralReceivers == 1)
    }

    @Test func findsLostAckedPublish() {
        let report = ConsistencyChecker.check(published: [acked("a", 1), acked("b", 2)], stored: [.init(id: "a", sequence: 1)])
        #expect(report.lost == ["b"])
        #expect(!report.isValid)
    }

    @Test func findsDuplicatesUnexpectedMisplacedAndFailedButStored() {
        let report = ConsistencyChecker.check(
            published: [acked("a", 1), acked("b", 5), failed("f")],
            stored: [.init(id: "a", sequence: 1), .init(id: "a", sequence: 2), .init(id: "b", sequence: 3), .init(id: "x", sequence: 4), .init(id: "f", sequence: 6)])
        #expect(report.duplicated == ["a": 2])
        #expect(report.unexpected == ["x"])
        #expect(report.misplaced.count == 1)
        #expect(report.failedButStored == ["f"])
        #expect(report.violations.count == 4)
    }

    @Test func findsStoredEventsNoConsumerSaw() {
        let report = ConsistencyChecker.check(
            published: [acked("a", 1), acked("b", 2)],
            stored: [.init(id: "a", sequence: 1), .init(id: "b", sequence: 2)],
            deliveries: [.init(id: "a", sequence: 1, deliveryCount: 1, receiver: "w", at: 0)])
        #expect(report.notConsumed == ["b"])
        #expect(!report.isValid)
    }

    @Test func availabilityGapsAfterFaults() {
        // Acks every 0.1 s, except a hole from 10.0 to 16.5 after a fault at 10.02.
        let acks = stride(from: 0.0, through: 10.0, by: 0.1).map { $0 } + stride(from: 16.5, through: 20.0, by: 0.1).map { $0 }
        let gap = AvailabilityTimeline(ackTimes: acks).unavailability(after: 10.02, within: 30)
        #expect(abs(gap - 6.48) < 0.01, "gap \(gap)")
        let none = AvailabilityTimeline(ackTimes: acks).unavailability(after: 2.0, within: 1)
        #expect(none < 0.2)
        // A later fault's hole is not blamed on an earlier one: fault at 5.0 sees 0.1 s gaps only
        // (the next fault, at 10.02, bounds its horizon); the fault at 10.02 sees the hole.
        let perFault = AvailabilityTimeline(ackTimes: acks).unavailability(after: [FaultEvent("a", at: 5.0), FaultEvent("b", at: 10.02)])
        #expect(perFault[0] < 0.2 && abs(perFault[1] - 6.48) < 0.01, "\(perFault)")
    }
}

import Foundation
import NATS
import NATSTestSupport
import Testing

/// `accountInfo()` and `streamNames(subject:)`: reading what an account holds, writing nothing.
@Suite("JetStream account and stream names", .tags(.server))
struct JetStreamAccountTests {
    @Test func accountInfoCountsWhatTheAccountHolds() async throws {
        let server = try await NATSServerProcess.started()
        defer { server.kill() }
        let connection = try await connect(to: server)
        let js = connection.jetStream()
        let empty = try await js.accountInfo()
        #expect(empty.streams == 0 && empty.consumers == 0 && empty.storage == 0)
        #expect(empty.limits.maxStreams == -1, "a server without account limits: \(empty.limits)")
        try await js.createStream(NATSStreamConfiguration(name: "ORDERS", subjects: ["orders.>"]))
        _ = try await js.publish(subject: "orders.created", payload: Array("one".utf8))
        let used = try await js.accountInfo()
        #expect(used.streams == 1 && used.storage > 0, "\(used)")
        #expect(try await js.accountInfo().streams == 1, "reading wrote nothing")
        await connection.close()
    }

    @Test func streamNamesAllOrThoseOverlappingASubject() async throws {
        let server = try await NATSServerProcess.started()
        defer { server.kill() }
        let connection = try await connect(to: server)
        let js = connection.jetStream()
        #expect(try await js.streamNames().isEmpty)
        try await js.createStream(NATSStreamConfiguration(name: "ORDERS", subjects: ["orders.>"]))
        try await js.createStream(NATSStreamConfiguration(name: "AUDIT", subjects: ["audit.*"]))
        #expect(try await js.streamNames() == ["AUDIT", "ORDERS"])
        #expect(try await js.streamNames(subject: "orders.created") == ["ORDERS"])
        #expect(try await js.streamNames(subject: ">") == ["AUDIT", "ORDERS"])
        #expect(try await js.streamNames(subject: "payments.>").isEmpty)
        let invalid = await #expect(throws: NATSError.self) { try await js.streamNames(subject: "orders..x") }
        #expect(invalid?.code == .invalidSubject)
        await connection.close()
    }
}

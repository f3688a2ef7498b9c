import Foundation
import NATS
import NATSTestSupport
import Testing

/// `eventbus doctor` makes the bus's start-time stream check: a stream the bus cannot use fails it
/// (exit 1); differences the bus works with are `info` lines (exit 0).
@Suite("StreamPolicy: eventbus doctor", .serialized)
struct StreamPolicyDoctorTests {
    static func createRaw(_ connection: NATSConnection, _ name: String, _ config: String) async throws {
        let reply = try await connection.request(subject: "$JS.API.STREAM.CREATE.\(name)", payload: Array(config.utf8), timeout: .seconds(10))
        #expect(!reply.payload.string.contains("\"error\""), "\(reply.payload.string)")
    }

    @Test func doctorFailsOnAStreamTheBusCannotUseAndReportsHarmlessDifferences() async throws {
        let server = try await NATSServerProcess.started()
        defer { server.kill() }
        let admin = try await NATSConnection.connect(configuration: try NATSConnectionConfiguration(servers: [server.url]))
        let environment = ["EVENT_BUS_BACKEND": "jetstream", "EVENT_BUS_NATS_SERVERS": server.url]

        // Subjects that miss the bus's prefix: unusable. Before, the doctor said "ok" and exited 0.
        try await Self.createRaw(admin, "EVENTS", #"{"name":"EVENTS","subjects":["orders.>"],"num_replicas":1}"#)
        let (unusable, unusableOutput) = try await CLIProcessTests.run(["doctor"], environment: environment)
        #expect(unusable == 2, "a failed check: \(unusableOutput)")
        #expect(unusableOutput.contains("FAIL  stream EVENTS"), "\(unusableOutput)")
        #expect(unusableOutput.contains("subjects is [orders.>]"), "\(unusableOutput)")

        // With the update policy the bus would fix the subjects at start: not a failure, but said.
        var updating = environment
        updating["EVENT_BUS_JETSTREAM_STREAM_UPDATE"] = "update"
        let (fixable, fixableOutput) = try await CLIProcessTests.run(["doctor"], environment: updating)
        #expect(fixableOutput.contains("ok    stream EVENTS"), "\(fixableOutput)")
        #expect(fixableOutput.contains("info  stream EVENTS: the bus will update subjects"), "\(fixableOutput)")
        // The doctor changes nothing, so it does not start a bus that would update the stream.
        #expect(fixableOutput.contains("info  health: not checked"), "\(fixableOutput)")
        #expect(!fixableOutput.contains("FAIL"), "\(fixableOutput)")
        #expect(fixable == 0, "\(fixableOutput)")
        let unchanged = try await admin.jetStream().streamInfo("EVENTS")
        #expect(unchanged.configuration.subjects == ["orders.>"], "the doctor left the stream as it was")

        // A usable stream that differs from the configuration in ways the bus works with.
        _ = try await admin.request(subject: "$JS.API.STREAM.DELETE.EVENTS", timeout: .seconds(10))
        try await Self.createRaw(
            admin, "EVENTS", #"{"name":"EVENTS","subjects":["events.>"],"num_replicas":1,"max_age":0,"compression":"s2","deny_delete":true}"#)
        let (usable, usableOutput) = try await CLIProcessTests.run(["doctor"], environment: environment)
        #expect(usable == 0, "\(usableOutput)")
        #expect(!usableOutput.contains("FAIL"), "\(usableOutput)")
        #expect(usableOutput.contains("info  stream EVENTS: compression s2 kept as it is"), "\(usableOutput)")
        #expect(usableOutput.contains("info  stream EVENTS: max_age unlimited (configured"), "\(usableOutput)")
        #expect(usableOutput.contains("info  stream EVENTS: deny_delete true"), "\(usableOutput)")
        await admin.close()
    }
}

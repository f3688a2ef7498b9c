import Foundation
import NATSTestSupport
import Testing

/// `eventbus doctor` at trace level prints and logs the configuration, the servers and the
/// connection: none of it may show a password from the server URL.
@Suite("eventbus CLI never prints URL credentials", .serialized)
struct CLISecretTests {
    @Test func doctorAtTraceLevelHidesAPasswordOnlyURL() async throws {
        let server = try await NATSServerProcess.started()
        defer { server.kill() }
        let (_, output) = try await CLIProcessTests.run(
            ["doctor", "--log-level", "trace"],
            environment: ["EVENT_BUS_BACKEND": "jetstream", "EVENT_BUS_NATS_SERVERS": "nats://:S3cretPW@127.0.0.1:\(server.port)"])
        #expect(output.contains("ok    connect"), "\(output)")
        #expect(output.contains("NATS connected"), "\(output)")
        #expect(!output.contains("S3cretPW"), "\(output)")
    }

    @Test func doctorExplainsACommaInAPassword() async throws {
        let port = try NATSServerProcess.freePort()
        let (status, output) = try await CLIProcessTests.run(
            ["doctor", "--log-level", "trace"],
            environment: ["EVENT_BUS_BACKEND": "jetstream", "EVENT_BUS_NATS_SERVERS": "nats://alice:Qx7,Zw9@127.0.0.1:\(port)"])
        #expect(status != 0)
        #expect(output.contains("%2C"), "\(output)")
        #expect(!output.contains("Qx7") && !output.contains("Zw9"), "\(output)")
    }
}

import Foundation
import NATSTestSupport
import Testing

/// Runs the `eventbus` command-line tool against a real server.
@Suite("eventbus CLI", .serialized)
struct CLIProcessTests {
    static func run(_ arguments: [String], environment: [String: String]) async throws -> (Int32, String) {
        let root = NATSServerProcess.projectRoot()
        let process = try DemoProcess(executable: "\(root)/.build/debug/eventbus", arguments: arguments, environment: environment)
        let status = try await process.waitForExit(timeout: .seconds(60))
        return (status, process.output)
    }

    @Test func doctorPublishAndInspect() async throws {
        let server = try await NATSServerProcess.started()
        defer { server.stop() }
        let environment = ["EVENT_BUS_BACKEND": "jetstream", "EVENT_BUS_NATS_SERVERS": server.url]
        // The stream is created by the first bus that starts (publish does).
        let (published, publishOutput) = try await Self.run(["publish", "orders.created", "hello", "--id", "cli-1"], environment: environment)
        #expect(published == 0, "\(publishOutput)")
        #expect(publishOutput.contains("stream EVENTS sequence 1"))
        let (_, again) = try await Self.run(["publish", "orders.created", "hello", "--id", "cli-1"], environment: environment)
        #expect(again.contains("duplicate, not stored again"))
        let (doctor, doctorOutput) = try await Self.run(["doctor"], environment: environment)
        #expect(doctor == 0, "\(doctorOutput)")
        #expect(doctorOutput.contains("ok    stream EVENTS"))
        #expect(!doctorOutput.contains("FAIL"))
        let (_, subscribed) = try await Self.run(["subscribe", "orders.>", "--all", "--count", "1"], environment: environment)
        #expect(subscribed.contains("orders.created id=cli-1"))
        #expect(subscribed.contains("data=hello"))
        // A wrong server: the doctor says which check failed and exits non-zero.
        let port = try NATSServerProcess.freePort()
        let (failed, failedOutput) = try await Self.run(
            ["doctor"], environment: ["EVENT_BUS_BACKEND": "jetstream", "EVENT_BUS_NATS_SERVERS": "nats://127.0.0.1:\(port)", "EVENT_BUS_NATS_CONNECT_TIMEOUT_MS": "300"])
        #expect(failed != 0)
        #expect(failedOutput.contains("FAIL  connect"), "\(failedOutput)")
        let (invalid, invalidOutput) = try await Self.run(["doctor"], environment: ["EVENT_BUS_BACKEND": "kafka"])
        #expect(invalid != 0)
        #expect(invalidOutput.contains("EVENT_BUS_BACKEND"), "\(invalidOutput)")
    }
}

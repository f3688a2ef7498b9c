import Foundation
import NATS
import NATSTestSupport
import Testing

/// The demo's operations endpoint and the doctor's health check, as processes against a real
/// server.
@Suite("operations endpoint and doctor health", .serialized)
struct OperationsEndpointTests {
    static func get(_ port: Int, _ path: String) async throws -> (status: Int, body: String)? {
        try await offCooperativePool { NATSClusterProcess.httpGet(port: port, path: path, timeout: .seconds(5)) }
    }

    @Test func theDemoServesLivenessReadinessAndPrometheusMetrics() async throws {
        let server = try await NATSServerProcess.started()
        defer { server.kill() }
        let opsPort = try NATSServerProcess.freePort()
        let demo = try DemoProcess(
            arguments: ["notifications", "--ops-port", "\(opsPort)"],
            environment: [
                "EVENT_BUS_BACKEND": "jetstream", "EVENT_BUS_NATS_SERVERS": server.url,
                "EVENT_BUS_NATS_RECONNECT_WAIT_MS": "100",
            ])
        defer { demo.terminate() }
        #expect(await demo.waitForLine(timeout: .seconds(30)) { $0.contains("READY") }, "\(demo.output)")
        #expect(demo.output.contains("operations endpoint listening on http://127.0.0.1:\(opsPort)"), "\(demo.output)")

        let live = try #require(try await Self.get(opsPort, "/health/live"))
        #expect(live.status == 200)
        let ready = try #require(try await Self.get(opsPort, "/health/ready"))
        #expect(ready.status == 200, "\(ready.body)")
        let health = try #require(try JSONSerialization.jsonObject(with: Data(ready.body.utf8)) as? [String: Any])
        #expect(health["status"] as? String == "healthy")
        #expect(health["connection"] as? String == "connected")
        let subscriptions = try #require(health["subscriptions"] as? [[String: Any]])
        #expect(subscriptions.contains { $0["group"] as? String == "notifications" && $0["state"] as? String == "running" })

        let metrics = try #require(try await Self.get(opsPort, "/metrics"))
        #expect(metrics.status == 200)
        #expect(metrics.body.contains("# TYPE nats_disconnections_total counter"), "\(metrics.body)")
        #expect(metrics.body.contains("nats_slow_consumer_events_total{"), "\(metrics.body)")
        let missing = try #require(try await Self.get(opsPort, "/nope"))
        #expect(missing.status == 404)

        // The server goes away: not ready (503, with the reason in the body), still live.
        await server.stopped()
        var notReady: (status: Int, body: String)?
        #expect(
            await eventually(timeout: .seconds(10)) {
                notReady = try? await Self.get(opsPort, "/health/ready")
                return notReady?.status == 503
            }, "\(String(describing: notReady))")
        #expect(notReady?.body.contains(#""connection":"reconnecting""#) == true, "\(String(describing: notReady))")
        #expect(try await Self.get(opsPort, "/health/live")?.status == 200)
        try await server.restarted()
        #expect(await eventually(timeout: .seconds(20)) { (try? await Self.get(opsPort, "/health/ready"))?.status == 200 })
    }

    @Test func theEndpointIsOffByDefault() async throws {
        let demo = try DemoProcess(arguments: ["all", "--orders", "2"], environment: [:])
        let status = try await demo.waitForExit(timeout: .seconds(60))
        #expect(status == 0, "\(demo.output)")
        #expect(!demo.output.contains("operations endpoint"))
    }

    @Test func doctorFailsOnABusThatCannotBeReady() async throws {
        let server = try await NATSServerProcess.started(jetStream: false)
        defer { server.kill() }
        let (status, output) = try await CLIProcessTests.run(
            ["doctor"], environment: ["EVENT_BUS_BACKEND": "jetstream", "EVENT_BUS_NATS_SERVERS": server.url])
        #expect(status == 69, "EX_UNAVAILABLE: \(output)")
        #expect(output.contains("ok    connect"), "\(output)")
        // Without JetStream the doctor stops at the check that says so, rather than failing
        // every later one for the same reason.
        #expect(output.contains("FAIL  jetstream: reading the JetStream account: no JetStream API answered"), "\(output)")
        #expect(output.split(separator: "\n").filter { $0.hasPrefix("FAIL") }.count == 1, "\(output)")
    }

    @Test func doctorPrintsHealthAndConsumersOfAHealthyBus() async throws {
        let server = try await NATSServerProcess.started()
        defer { server.kill() }
        let environment = ["EVENT_BUS_BACKEND": "jetstream", "EVENT_BUS_NATS_SERVERS": server.url]
        let (published, publishOutput) = try await CLIProcessTests.run(["publish", "orders.created", "hello"], environment: environment)
        #expect(published == 0, "\(publishOutput)")
        let (subscribed, subscribeOutput) = try await CLIProcessTests.run(
            ["subscribe", "orders.>", "--group", "billing", "--count", "1", "--all"], environment: environment)
        #expect(subscribed == 0, "\(subscribeOutput)")
        let (status, output) = try await CLIProcessTests.run(["doctor"], environment: environment)
        #expect(status == 0, "\(output)")
        #expect(output.contains("ok    health: healthy, connection connected"), "\(output)")
        #expect(output.contains("ok    consumers: 1 on stream EVENTS"), "\(output)")
        #expect(output.contains("info  consumer billing-"), "\(output)")
    }
}

import Foundation
import Logging
import NATSTestSupport
import Testing

@testable import NATS

/// `close()` racing `connect()` (issue 15): whatever the timing, the connection ends closed,
/// refuses every later operation with `.connectionClosed`, and leaves no client connection on
/// the server.
@Suite("Close racing connect", .tags(.server))
struct ConnectCloseRaceTests {
    @Test func closeRacingConnectAlwaysEndsClosed() async throws {
        let monitoringPort = try NATSServerProcess.freePort()
        let server = try await NATSServerProcess.started(jetStream: false, arguments: ["-m", "\(monitoringPort)"])
        defer { server.kill() }
        var configuration = try NATSConnectionConfiguration(servers: [server.url])
        configuration.name = "race"
        var logger = Logger(label: "test.race")
        logger.logLevel = .warning

        // The delays before the close spread over about twice the time a connect takes here (at
        // most 3 ms, so that a loaded machine does not stretch the test), so that many closes
        // land while connect() runs.
        let started = ContinuousClock.now
        let probe = try await NATSConnection.connect(configuration: configuration, logger: logger)
        let connectTime = ContinuousClock.now - started
        await probe.close()
        let spread = min(3_000, max(100, Int(connectTime / .microseconds(1)) * 2))

        // Every connection stays referenced until the end: releasing one would destroy its cnats
        // connection and hide a leak from the server's count.
        var connections: [NATSConnection] = []
        var connectedFirst = 0
        var stoppedWhileConnecting = 0
        for round in 0..<1_000 {
            let connection = NATSConnection(configuration: configuration, logger: logger)
            connections.append(connection)
            let connecting = Task { () -> NATSError? in
                do throws(NATSError) {
                    try await connection.connect()
                    return nil
                } catch {
                    return error
                }
            }
            switch round % 4 {
            case 0: break  // at once: often before connect() began
            case 1: await Task.yield()
            default: try await Task.sleep(for: .microseconds(Int.random(in: 0..<spread)))
            }
            await connection.close()
            if let failure = await connecting.value {
                #expect(failure.code == .connectionClosed, "round \(round): \(failure)")
                stoppedWhileConnecting += 1
            } else {
                connectedFirst += 1
            }

            #expect(connection.isClosed, "round \(round)")
            #expect(connection.connectedServer == nil, "round \(round)")
            let published = #expect(throws: NATSError.self, "round \(round)") {
                try connection.publish(subject: "race.after", payload: "x")
            }
            #expect(published?.code == .connectionClosed, "round \(round): \(String(describing: published))")
            if round % 10 == 0 {
                let subscribed = await #expect(throws: NATSError.self) { _ = try await connection.subscribe(to: "race.>") }
                #expect(subscribed?.code == .connectionClosed, "round \(round)")
                let requested = await #expect(throws: NATSError.self) {
                    _ = try await connection.request(subject: "race.request", timeout: .milliseconds(100))
                }
                #expect(requested?.code == .connectionClosed, "round \(round)")
            }
        }
        // Both sides of the race were run (a test where every close came too late, or too early,
        // would prove nothing).
        #expect(connectedFirst > 0, "no connect finished before its close")
        #expect(stoppedWhileConnecting > 0, "no close came while connecting")
        print("close racing connect: \(connectedFirst) connected first, \(stoppedWhileConnecting) stopped (connect took \(connectTime))")

        // The server holds no client connection from any of them.
        var last = -1
        let drained = await eventually(timeout: .seconds(10)) {
            last = (try? await Self.connectionCount(monitoringPort: monitoringPort)) ?? -1
            return last == 0
        }
        #expect(drained, "the server still holds \(last) client connections")
        withExtendedLifetime(connections) {}
    }

    /// The number of client connections the server reports on its monitoring endpoint (`/connz`).
    static func connectionCount(monitoringPort: Int) async throws -> Int {
        let response = try await offCooperativePool { NATSClusterProcess.httpGet(port: monitoringPort, path: "/connz", timeout: .seconds(2)) }
        guard let body = response?.body, response?.status == 200 else {
            throw NATSServerProcess.Failure(description: "no answer from the monitoring port \(monitoringPort)")
        }
        let parsed = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]
        guard let count = parsed?["num_connections"] as? Int else {
            throw NATSServerProcess.Failure(description: "no num_connections in /connz: \(body.prefix(300))")
        }
        return count
    }
}

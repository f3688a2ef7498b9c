import EventBusReliabilitySupport
import Foundation
import NATSTestSupport

/// Six "hosts" in network namespaces on 10.213.7.0/24 (traffic stays inside the namespaces):
/// `nats-1..3` run a JetStream cluster (R3, `sync_interval: always`), `orders`, `billing-a` and
/// `billing-b` run services configured only by `EVENT_BUS_*` variables that list the three
/// servers.
final class MultiHostLab: Sendable {
    static let prefix = "nebr"
    static let subnet = "10.213.7"
    static let serverHosts = ["nats-1", "nats-2", "nats-3"]

    let lab: NetworkNamespaceLab
    let servers: [LabProcess]

    /// Why multi-host tests cannot run here (not root, no `ip`, namespaces refused), or nil.
    static var unavailableReason: String? { NetworkNamespaceLab.unavailableReason() }

    /// Builds the hosts and starts the cluster; tears everything down if any step fails.
    init() async throws {
        let lab = try await offPool {
            try NetworkNamespaceLab(
                prefix: MultiHostLab.prefix, subnet: MultiHostLab.subnet,
                hosts: [("nats-1", 11), ("nats-2", 12), ("nats-3", 13), ("orders", 21), ("billing-a", 22), ("billing-b", 23)])
        }
        do {
            let server = try NATSServerProcess.locateExecutable()
            let routes = MultiHostLab.serverHosts.map { "    nats-route://\(lab.host($0).address):6222" }.joined(separator: "\n")
            var started: [LabProcess] = []
            for name in MultiHostLab.serverHosts {
                let address = lab.host(name).address
                let configuration = """
                    server_name: \(name)
                    listen: \(address):4222
                    http: \(address):8222
                    jetstream {
                      store_dir: "\(lab.workDirectory)/\(name)"
                      sync_interval: always
                    }
                    cluster {
                      name: eventbus
                      listen: \(address):6222
                      routes: [
                    \(routes)
                      ]
                    }
                    """
                let path = "\(lab.workDirectory)/\(name).conf"
                try configuration.write(toFile: path, atomically: true, encoding: .utf8)
                started.append(try lab.start(on: name, executable: server, arguments: ["-c", path], logFile: "\(lab.workDirectory)/\(name).log"))
            }
            self.lab = lab
            servers = started
            try await waitUntilHealthy(timeout: .seconds(60))
        } catch {
            lab.teardown()
            throw error
        }
    }

    /// `nats://10.213.7.11:4222,...`: what every service gets in `EVENT_BUS_NATS_SERVERS`.
    var serverList: String {
        MultiHostLab.serverHosts.map { "nats://\(lab.host($0).address):4222" }.joined(separator: ",")
    }

    /// Every server answers `/healthz` with ok (asked from inside its own host).
    func waitUntilHealthy(timeout: Duration) async throws {
        let deadline = ContinuousClock.now + timeout
        var problem = ""
        while ContinuousClock.now < deadline {
            problem = ""
            for name in MultiHostLab.serverHosts {
                let url = "http://\(lab.host(name).address):8222/healthz"
                let answer = try await offPool { self.lab.run(on: name, ["curl", "-fsS", "--max-time", "2", url]) }
                if answer.status != 0 {
                    problem = "\(name): \(answer.output)"
                    break
                }
            }
            if problem.isEmpty { return }
            try await Task.sleep(for: .milliseconds(250))
        }
        throw NetworkNamespaceLab.Failure(description: "cluster in the lab not healthy within \(timeout): \(problem)")
    }

    /// The variables a service on `host` gets: the three servers, the R3 stream, and `extra`.
    func environment(name: String, _ extra: [String: String] = [:]) -> [String: String] {
        var environment = [
            "EVENT_BUS_BACKEND": "jetstream",
            "EVENT_BUS_NATS_SERVERS": serverList,
            "EVENT_BUS_NATS_NAME": name,
            "EVENT_BUS_NATS_RECONNECT_MAX_ATTEMPTS": "-1",
            "EVENT_BUS_NATS_RECONNECT_WAIT_MS": "500",
            "EVENT_BUS_JETSTREAM_STREAM": "ORDERS",
            "EVENT_BUS_JETSTREAM_REPLICAS": "3",
        ]
        for (key, value) in extra { environment[key] = value }
        return environment
    }

    /// Starts a program on a host; its output goes to `<work>/<label>.log`.
    func start(_ program: String, _ arguments: [String], on host: String, label: String, environment: [String: String]) throws -> LabProcess {
        try lab.start(
            on: host, executable: program, arguments: arguments, environment: environment, logFile: "\(lab.workDirectory)/\(label).log")
    }

    /// Runs the agent's audit on the orders host and returns its records.
    func audit(_ arguments: [String] = [], label: String = "audit") async throws -> [AgentRecord] {
        let log = "\(lab.workDirectory)/\(label)-\(UUID().uuidString.prefix(6)).jsonl"
        let process = try start(
            try ServicePrograms.agent(), ["audit", "--log", log] + arguments, on: "orders", label: label,
            environment: environment(name: label))
        let ended = try await offPool { process.waitForExit(timeout: .seconds(90)) }
        if !ended { process.kill() }
        let records = readAgentLog(log)
        guard ended, process.exitStatus == 0, records.contains(where: { $0.kind == "done" }) else {
            throw NetworkNamespaceLab.Failure(description: "audit failed: \(records.filter { $0.kind == "error" }.map { $0.detail ?? "" }) \(process.tailOfLog())")
        }
        return records
    }

    /// Runs `body`, then tears the lab down (off the cooperative pool: it waits for processes to
    /// exit), whether `body` succeeded or threw.
    func use(_ body: () async throws -> Void) async throws {
        do {
            try await body()
        } catch {
            _ = try? await offPool { self.teardown() }
            throw error
        }
        _ = try await offPool { self.teardown() }
    }

    /// Removes everything; with `EVENTBUS_KEEP_LAB_LOGS=<folder>` the logs are copied there first.
    func teardown() {
        if let keep = ProcessInfo.processInfo.environment["EVENTBUS_KEEP_LAB_LOGS"] {
            let target = "\(keep)/\(MultiHostLab.prefix)-\(Int(Date().timeIntervalSince1970))"
            try? FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: true)
            for entry in (try? FileManager.default.contentsOfDirectory(atPath: lab.workDirectory)) ?? []
            where entry.hasSuffix(".log") || entry.hasSuffix(".jsonl") || entry.hasSuffix(".conf") {
                try? FileManager.default.copyItem(atPath: "\(lab.workDirectory)/\(entry)", toPath: "\(target)/\(entry)")
            }
        }
        lab.teardown()
    }
}

/// The programs that play the services. eventbus-demo (main's `orders`, `billing`, `inventory`
/// roles) where its behaviour is what the test needs; the reliability agent where the test needs
/// control the demo does not offer (slow billing, per-publish outcome records) and for the audit.
enum ServicePrograms {
    /// The folder the test bundle was built into (where `swift test` also built the executables).
    static var productsDirectory: String {
        let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var url = URL(fileURLWithPath: executable).deletingLastPathComponent()
        // Inside an .xctest bundle on other platforms: walk up to the folder that holds it.
        while url.path.contains(".xctest") { url = url.deletingLastPathComponent() }
        return url.path
    }

    static func locate(_ name: String, override variable: String) throws -> String {
        if let path = ProcessInfo.processInfo.environment[variable], FileManager.default.isExecutableFile(atPath: path) { return path }
        let root = NATSServerProcess.projectRoot()
        for directory in [productsDirectory, "\(root)/.build/debug", "\(root)/.build/release"] {
            let path = "\(directory)/\(name)"
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        throw NetworkNamespaceLab.Failure(description: "\(name) is not built (swift test builds it; or set \(variable))")
    }

    /// `eventbus-demo`.
    static func demo() throws -> String { try locate("eventbus-demo", override: "EVENTBUS_DEMO_BIN") }

    /// The reliability agent (Tests/EventBusReliabilityAgent).
    static func agent() throws -> String { try locate("EventBusReliabilityAgent", override: "EVENTBUS_AGENT_BIN") }
}

/// The lines a service wrote so far.
func logLines(_ process: LabProcess) -> [String] {
    ((try? String(contentsOfFile: process.logFile, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
}

import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A JetStream cluster of real `nats-server` processes on 127.0.0.1 for fault tests: each node has
/// its own free client, route and monitoring port, its own temporary store directory and a
/// configuration file written here (`sync_interval: always`, routes to every node).
///
/// Nodes are numbered from 0 and controlled by PID through ``NATSServerProcess`` (SIGKILL,
/// SIGTERM, SIGSTOP/SIGCONT). Everything is killed and removed when this object goes away.
public final class NATSClusterProcess: @unchecked Sendable {
    // @unchecked: the nodes are thread-safe themselves; the rest is immutable.

    /// The cluster name in the configuration.
    public let name: String
    /// The nodes, index 0 first.
    public let nodes: [NATSServerProcess]
    /// Each node's `server_name` (`<name>-1`, `<name>-2`, ...).
    public let serverNames: [String]
    /// Each node's monitoring (HTTP) port.
    public let monitoringPorts: [Int]
    /// Each node's route (cluster) port.
    public let routePorts: [Int]
    /// The folder holding every node's store, configuration and log.
    public let baseDirectory: String
    /// Whether the nodes fsync every write before acknowledging (`sync_interval: always`).
    public let syncAlways: Bool

    /// Every node's client URL, index order.
    public var urls: [String] { nodes.map(\.url) }

    /// Starts `size` nodes and waits until JetStream is healthy on all of them (a meta leader is
    /// elected and every node is current).
    ///
    /// - Parameters:
    ///   - size: Nodes (3 for the usual R3 cluster).
    ///   - syncAlways: Write `sync_interval: always` (the deploy/ configs do).
    ///   - extraConfiguration: More configuration text for every node.
    ///   - readyTimeout: How long to wait for the cluster to become healthy.
    public init(
        size: Int = 3,
        name: String = "eventbus-test",
        syncAlways: Bool = true,
        extraConfiguration: String = "",
        readyTimeout: Duration = .seconds(45)
    ) throws {
        precondition(size >= 1, "a cluster needs at least one node")
        self.name = name
        self.syncAlways = syncAlways
        baseDirectory = try NATSServerProcess.makeTemporaryDirectory(prefix: "nats-cluster")
        var clientPorts: [Int] = []
        var routePorts: [Int] = []
        var monitoringPorts: [Int] = []
        var taken: Set<Int> = []
        func distinctFreePort() throws -> Int {
            for _ in 0..<50 {
                let port = try NATSServerProcess.freePort()
                if taken.insert(port).inserted { return port }
            }
            throw NATSServerProcess.Failure(description: "could not find distinct free ports")
        }
        for _ in 0..<size {
            clientPorts.append(try distinctFreePort())
            routePorts.append(try distinctFreePort())
            monitoringPorts.append(try distinctFreePort())
        }
        self.routePorts = routePorts
        self.monitoringPorts = monitoringPorts
        serverNames = (1...size).map { "\(name)-\($0)" }
        let routes = routePorts.map { "    nats-route://127.0.0.1:\($0)" }.joined(separator: "\n")
        var nodes: [NATSServerProcess] = []
        do {
            for index in 0..<size {
                // The store directory and JetStream itself come from NATSServerProcess's `-js -sd`;
                // the `jetstream` block adds what has no command-line flag.
                let configuration = """
                    server_name: \(serverNames[index])
                    http: 127.0.0.1:\(monitoringPorts[index])
                    jetstream {
                      \(syncAlways ? "sync_interval: always" : "# sync_interval: default (2 min)")
                    }
                    cluster {
                      name: \(name)
                      listen: 127.0.0.1:\(routePorts[index])
                      routes: [
                    \(routes)
                      ]
                    }
                    \(extraConfiguration)
                    """
                nodes.append(
                    try NATSServerProcess(
                        jetStream: true, port: clientPorts[index], storeDirectory: "\(baseDirectory)/node-\(index + 1)",
                        configuration: configuration))
            }
        } catch {
            for node in nodes { node.kill() }
            try? FileManager.default.removeItem(atPath: baseDirectory)
            throw error
        }
        self.nodes = nodes
        do {
            try waitUntilHealthy(timeout: readyTimeout)
            // The fault tests' figures are only meaningful with the setting they claim.
            for index in nodes.indices {
                let config = (monitoring(index, path: "/varz")?["jetstream"] as? [String: Any])?["config"] as? [String: Any]
                let syncs = config?["sync_always"] as? Bool ?? false
                if syncs != syncAlways {
                    throw NATSServerProcess.Failure(description: "\(serverNames[index]) runs with sync_always=\(syncs), expected \(syncAlways)")
                }
            }
        } catch {
            killAll()
            try? FileManager.default.removeItem(atPath: baseDirectory)
            throw error
        }
    }

    deinit {
        killAll()
        try? FileManager.default.removeItem(atPath: baseDirectory)
    }

    // MARK: Faults, each by PID

    /// SIGKILLs node `index`.
    public func kill(_ index: Int) { nodes[index].kill() }
    /// Stops node `index` gracefully (SIGTERM; SIGKILL after 10 s).
    public func stop(_ index: Int) { nodes[index].stop() }
    /// Freezes node `index` (SIGSTOP).
    public func pause(_ index: Int) { nodes[index].pause() }
    /// Resumes node `index` (SIGCONT).
    public func resume(_ index: Int) { nodes[index].resume() }
    /// Starts node `index` again on its ports and store (waits for it to accept connections, not
    /// for JetStream to catch up: see ``waitUntilHealthy(timeout:)``).
    public func start(_ index: Int) throws { try nodes[index].start() }

    /// SIGKILLs every node, all at nearly the same instant.
    public func killAll() {
        // Signal every PID first, then reap each: no node outlives another by more than a moment.
        for node in nodes {
            if let pid = node.pid { _ = Glibc.kill(pid, SIGKILL) }
        }
        for node in nodes { node.kill() }
    }

    /// Stops every node gracefully, concurrently.
    public func stopAll() {
        DispatchQueue.concurrentPerform(iterations: nodes.count) { nodes[$0].stop() }
    }

    /// Starts every stopped node (then waits until the cluster is healthy).
    public func startAll(timeout: Duration = .seconds(45)) throws {
        for node in nodes where node.pid == nil { try node.start() }
        try waitUntilHealthy(timeout: timeout)
    }

    /// Whether node `index` runs (it may be paused).
    public func isRunning(_ index: Int) -> Bool { nodes[index].pid != nil }

    /// The index of the node with this `server_name`.
    public func index(ofServerName serverName: String) -> Int? {
        serverNames.firstIndex(of: serverName)
    }

    /// The index of the node whose client URL this is (as cnats reports it, `nats://127.0.0.1:port`).
    public func index(ofURL url: String) -> Int? {
        nodes.firstIndex { url.hasSuffix(":\($0.port)") || url.hasSuffix(":\($0.port)/") }
    }

    // MARK: Health and leaders, from the monitoring endpoints

    /// Waits until `/healthz` answers `ok` on every running node (or on `only`), that is:
    /// JetStream has a meta leader and every stream and consumer on the node is current.
    public func waitUntilHealthy(only: [Int]? = nil, timeout: Duration = .seconds(45)) throws {
        let deadline = ContinuousClock.now + timeout
        let indices = only ?? Array(nodes.indices)
        var lastProblem = ""
        while ContinuousClock.now < deadline {
            lastProblem = ""
            for index in indices where isRunning(index) {
                guard let answer = NATSClusterProcess.httpGet(port: monitoringPorts[index], path: "/healthz", timeout: .seconds(2)) else {
                    lastProblem = "\(serverNames[index]): no answer from /healthz"
                    break
                }
                if answer.status != 200 {
                    lastProblem = "\(serverNames[index]): \(answer.body.prefix(200))"
                    break
                }
            }
            if lastProblem.isEmpty { return }
            usleep(100_000)
        }
        throw NATSServerProcess.Failure(description: "cluster not healthy within \(timeout): \(lastProblem)")
    }

    /// The `server_name` of the leader of `stream`, as the first running node that knows it says
    /// (monitoring `/jsz`). Tests that need the authoritative answer ask `$JS.API.STREAM.INFO`.
    public func streamLeaderName(_ stream: String, account: String = "$G") -> String? {
        for index in nodes.indices where isRunning(index) {
            let path = "/jsz?accounts=true&streams=true&acc=\(account)"
            guard let answer = NATSClusterProcess.httpGet(port: monitoringPorts[index], path: path, timeout: .seconds(2)),
                answer.status == 200,
                let object = try? JSONSerialization.jsonObject(with: Data(answer.body.utf8)) as? [String: Any],
                let accounts = object["account_details"] as? [[String: Any]]
            else { continue }
            for account in accounts {
                for detail in account["stream_detail"] as? [[String: Any]] ?? [] where detail["name"] as? String == stream {
                    if let leader = (detail["cluster"] as? [String: Any])?["leader"] as? String, !leader.isEmpty {
                        return leader
                    }
                }
            }
        }
        return nil
    }

    /// The JetStream meta leader's `server_name`, as the first running node that knows it says.
    public func metaLeaderName() -> String? {
        for index in nodes.indices where isRunning(index) {
            guard let answer = NATSClusterProcess.httpGet(port: monitoringPorts[index], path: "/jsz", timeout: .seconds(2)),
                answer.status == 200,
                let object = try? JSONSerialization.jsonObject(with: Data(answer.body.utf8)) as? [String: Any],
                let leader = (object["meta_cluster"] as? [String: Any])?["leader"] as? String, !leader.isEmpty
            else { continue }
            return leader
        }
        return nil
    }

    /// The JSON of a monitoring endpoint of node `index`, or `nil` when it does not answer.
    public func monitoring(_ index: Int, path: String, timeout: Duration = .seconds(2)) -> [String: Any]? {
        guard let answer = NATSClusterProcess.httpGet(port: monitoringPorts[index], path: path, timeout: timeout),
            answer.status == 200
        else { return nil }
        return try? JSONSerialization.jsonObject(with: Data(answer.body.utf8)) as? [String: Any]
    }

    /// A minimal HTTP/1.0 GET to 127.0.0.1:`port`, bounded by `timeout` (a paused server accepts
    /// the TCP connection but never answers).
    public static func httpGet(port: Int, path: String, timeout: Duration) -> (status: Int, body: String)? {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { return nil }
        defer { close(descriptor) }
        let seconds = Int(timeout.components.seconds)
        let microseconds = Int(timeout.components.attoseconds / 1_000_000_000_000)
        var interval = timeval(tv_sec: seconds, tv_usec: microseconds)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &interval, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(descriptor, SOL_SOCKET, SO_SNDTIMEO, &interval, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { return nil }
        let request = Array("GET \(path) HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".utf8)
        guard request.withUnsafeBytes({ send(descriptor, $0.baseAddress, $0.count, 0) }) == request.count else { return nil }
        let deadline = ContinuousClock.now + timeout
        var response: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while ContinuousClock.now < deadline {
            let received = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
            if received > 0 {
                response.append(contentsOf: buffer[0..<received])
            } else if received == 0 {
                break
            } else {
                return nil  // timed out or failed
            }
        }
        let text = String(decoding: response, as: UTF8.self)
        guard let headerEnd = text.range(of: "\r\n\r\n") else { return nil }
        let statusLine = text[..<headerEnd.lowerBound].prefix { $0 != "\r" }
        let parts = statusLine.split(separator: " ")
        guard parts.count >= 2, let status = Int(parts[1]) else { return nil }
        return (status, String(text[headerEnd.upperBound...]))
    }
}

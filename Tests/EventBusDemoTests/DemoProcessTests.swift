import Foundation
import NATSTestSupport
import Testing

/// Runs `eventbus-demo` itself, as a user would: in one process, and as one process per role.
@Suite("eventbus-demo", .serialized)
struct DemoProcessTests {
    /// The built demo executable (the test target does not link it, so build it first: `swift build`).
    static func demoExecutable() throws -> String {
        try builtExecutable("eventbus-demo")
    }

    /// An executable of the package: beside the test bundle first (so that a build with another
    /// `--scratch-path`, such as the sanitizer builds, runs its own), then in `.build`.
    static func builtExecutable(_ name: String) throws -> String {
        let root = NATSServerProcess.projectRoot()
        let bundle = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var products = URL(fileURLWithPath: bundle).deletingLastPathComponent()
        while products.path.contains(".xctest") { products = products.deletingLastPathComponent() }
        for directory in [products.path, "\(root)/.build/debug", "\(root)/.build/release"] {
            let path = "\(directory)/\(name)"
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        throw NATSServerProcess.Failure(description: "\(name) is not built: run `swift build` first (make test does)")
    }

    @Test func runsInMemoryWithNoSetup() async throws {
        let demo = try DemoProcess(arguments: ["--orders", "30"], environment: ["EVENT_BUS_BACKEND": "memory"])
        let status = try await demo.waitForExit(timeout: .seconds(60))
        let output = demo.output
        #expect(status == 0, "\(output)")
        #expect(output.contains("eventbus-demo summary (backend: memory)"))
        #expect(output.contains("orders published     30"))
        #expect(output.contains("dead-lettered        3"))
        #expect(output.contains("billed               27"))
        // The summary's example is a declined order: placed, then dead-lettered, in its history.
        #expect(
            output.contains("v1 com.example.order.created, v2 com.example.order.dead-lettered"),
            "no history line with placed and dead-lettered: \(output)")
    }

    @Test(arguments: ["billing", "notifications", "inventory"])
    func aRoleStoppedBySIGTERMExitsCleanly(role: String) async throws {
        let server = try await NATSServerProcess.started()
        defer { server.kill() }
        let environment = ["EVENT_BUS_BACKEND": "jetstream", "EVENT_BUS_NATS_SERVERS": server.url]
        let process = try DemoProcess(arguments: [role, "--max-seconds", "60"], environment: environment)
        defer { process.terminate() }
        #expect(await process.waitForLine(timeout: .seconds(30)) { $0 == "READY" }, "\(process.output)")
        process.terminate()
        let status = try await process.waitForExit(timeout: .seconds(30))
        #expect(status == 0, "\(process.output)")
        #expect(!process.output.contains("Error"), "\(process.output)")
    }

    @Test func rolesAsSeparateProcessesOnJetStream() async throws {
        let server = try await NATSServerProcess.started()
        defer { server.kill() }
        let environment = [
            "EVENT_BUS_BACKEND": "jetstream",
            "EVENT_BUS_NATS_SERVERS": server.url,
            "EVENT_BUS_NATS_NAME": "demo-test",
        ]
        let inventory = try DemoProcess(arguments: ["inventory", "--max-seconds", "120"], environment: environment)
        let billing1 = try DemoProcess(arguments: ["billing", "--worker", "billing-1", "--idle-exit", "4", "--max-seconds", "120"], environment: environment)
        let billing2 = try DemoProcess(
            arguments: ["billing", "--worker", "billing-2", "--flaky", "--idle-exit", "4", "--max-seconds", "120"], environment: environment)
        let notifications = try DemoProcess(arguments: ["notifications", "--idle-exit", "4", "--max-seconds", "120"], environment: environment)
        let services = [inventory, billing1, billing2, notifications]
        defer { for service in services { service.terminate() } }
        for service in services {
            #expect(await service.waitForLine(timeout: .seconds(30)) { $0 == "READY" }, "\(service.output)")
        }
        let orderCount = 60
        let orders = try DemoProcess(arguments: ["orders", "--count", "\(orderCount)"], environment: environment)
        #expect(try await orders.waitForExit(timeout: .seconds(60)) == 0, "\(orders.output)")
        let poison = (0..<orderCount).filter { $0 % 10 == 7 }.map(orderID)
        let good = (0..<orderCount).filter { $0 % 10 != 7 }.map(orderID)
        // Wait until every order is accounted for, then let the workers go idle and exit.
        let accounted = await eventually(timeout: .seconds(60)) {
            let lines = notifications.lines
            return lines.filter { $0.hasPrefix("NOTIFIED ") }.count >= good.count
                && lines.filter { $0.hasPrefix("DEAD-LETTERED ") }.count >= poison.count
        }
        #expect(accounted, "notifications saw: \(notifications.output)")
        for worker in [billing1, billing2, notifications] {
            _ = try await worker.waitForExit(timeout: .seconds(30))
        }

        func ids(_ lines: [String], _ prefix: String) -> [String] {
            lines.filter { $0.hasPrefix(prefix) }.map { String($0.split(separator: " ")[1]) }
        }
        let billedBy1 = ids(billing1.lines, "BILLED ")
        let billedBy2 = ids(billing2.lines, "BILLED ")
        let billed = billedBy1 + billedBy2
        #expect(billed.sorted() == good.sorted(), "every good order billed exactly once across the workers")
        #expect(!billedBy1.isEmpty && !billedBy2.isEmpty, "each worker got a share: \(billedBy1.count) and \(billedBy2.count)")
        #expect(!billing2.lines.filter { $0.hasPrefix("RETRY ") }.isEmpty, "the flaky worker failed some first attempts")
        let deadLettered = ids(notifications.lines, "DEAD-LETTERED ")
        #expect(deadLettered.sorted() == poison.sorted(), "the declined orders, and only they, were dead-lettered once each")
        #expect(Set(ids(notifications.lines, "NOTIFIED ")) == Set(good))
        print("multi-process demo: billed \(billedBy1.count) + \(billedBy2.count), dead-lettered \(deadLettered.count)")

        // The orders' histories, written by three processes into the event store, read by a fourth.
        let histories = orders.lines.filter { $0.hasPrefix("PUBLISHED ") }.compactMap { line in
            line.split(separator: " ").first { $0.hasPrefix("history=") }.map { String($0.dropFirst("history=".count)) }
        }
        #expect(histories.count == orderCount, "PUBLISHED lines name the history: \(orders.output)")
        for (number, expected) in [(1, "com.example.payment.settled"), (7, "com.example.order.dead-lettered")] {
            let id = try #require(histories.first { $0.hasPrefix(orderID(number) + "-") })
            let history = try DemoProcess(arguments: ["history", id], environment: environment)
            #expect(try await history.waitForExit(timeout: .seconds(30)) == 0, "\(history.output)")
            let types = history.lines.filter { $0.hasPrefix("v") }.map { $0.split(separator: " ")[2] }
            #expect(types == ["com.example.order.created", Substring(expected)], "history of \(id): \(history.output)")
        }
        let missing = try DemoProcess(arguments: ["history", "order-9999-none"], environment: environment)
        #expect(try await missing.waitForExit(timeout: .seconds(30)) == 66, "an unknown order: \(missing.output)")
        let bad = try DemoProcess(arguments: ["history", "order 1"], environment: environment)
        #expect(try await bad.waitForExit(timeout: .seconds(30)) == 64, "a bad id: \(bad.output)")
        #expect(bad.output.contains("order 1"), "the error names the id: \(bad.output)")
    }

    /// One trace crosses the processes: orders publishes, billing (another process) handles the order and
    /// publishes the payment, notifications (a third) handles that; `--trace-to-stderr` prints each
    /// process's spans, and the parent links join them.
    @Test func oneTraceCrossesProcessesOnJetStream() async throws {
        let server = try await NATSServerProcess.started()
        defer { server.kill() }
        let environment = [
            "EVENT_BUS_BACKEND": "jetstream",
            "EVENT_BUS_NATS_SERVERS": server.url,
            "EVENT_BUS_NATS_NAME": "demo-trace-test",
        ]
        let inventory = try DemoProcess(arguments: ["inventory", "--max-seconds", "120"], environment: environment)
        let billing = try DemoProcess(
            arguments: ["billing", "--trace-to-stderr", "--idle-exit", "4", "--max-seconds", "120"], environment: environment)
        let notifications = try DemoProcess(
            arguments: ["notifications", "--trace-to-stderr", "--idle-exit", "4", "--max-seconds", "120"], environment: environment)
        let services = [inventory, billing, notifications]
        defer { for service in services { service.terminate() } }
        for service in services {
            #expect(await service.waitForLine(timeout: .seconds(30)) { $0 == "READY" }, "\(service.output)")
        }
        let orders = try DemoProcess(arguments: ["orders", "--count", "3", "--trace-to-stderr"], environment: environment)
        #expect(try await orders.waitForExit(timeout: .seconds(60)) == 0, "\(orders.output)")

        struct PrintedSpan: Decodable {
            var trace: String
            var span: String
            var parent: String?
            var name: String
        }
        func spans(_ process: DemoProcess) -> [PrintedSpan] {
            process.lines.filter { $0.hasPrefix("{") }.compactMap { try? JSONDecoder().decode(PrintedSpan.self, from: Data($0.utf8)) }
        }
        let joined = await eventually(timeout: .seconds(60)) {
            spans(notifications).contains { $0.name.hasPrefix("process payments") }
        }
        #expect(joined, "notifications printed no process span: \(notifications.output)")
        let published = spans(orders).filter { $0.name == "publish orders.created" }
        #expect(!published.isEmpty, "\(orders.output)")
        var complete = 0
        for publish in published {
            guard let handled = spans(billing).first(where: { $0.name.hasPrefix("process orders") && $0.parent == publish.span }),
                let payment = spans(billing).first(where: { $0.name == "publish payments.settled" && $0.parent == handled.span }),
                let notified = spans(notifications).first(where: { $0.name.hasPrefix("process payments") && $0.parent == payment.span })
            else { continue }
            #expect(Set([publish.trace, handled.trace, payment.trace, notified.trace]).count == 1)
            complete += 1
        }
        #expect(complete >= 1, "no trace runs orders → billing → notifications: \(billing.output) \(notifications.output)")
        for worker in [billing, notifications] {
            _ = try await worker.waitForExit(timeout: .seconds(30))
        }
    }

    func orderID(_ number: Int) -> String {
        "order-\(String(repeating: "0", count: max(0, 4 - String(number).count)))\(number)"
    }
}

/// A running demo process whose output lines are collected.
final class DemoProcess: @unchecked Sendable {
    // @unchecked: `collected` is guarded by `lock`; `process` is only read after start.
    private let process = Process()
    private let lock = NSLock()
    private var collected = ""
    private var collectedErrors = ""
    private var openPipes = 1
    private var endedPipes: Set<ObjectIdentifier> = []

    convenience init(arguments: [String], environment: [String: String]) throws {
        try self.init(executable: try DemoProcessTests.demoExecutable(), arguments: arguments, environment: environment)
    }

    /// Starts `executable`; its standard output and error go to one pipe (``output``), or with
    /// `separateErrors` standard error to another (``errors``).
    init(executable: String, arguments: [String], environment: [String: String], separateErrors: Bool = false) throws {
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        var merged = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("EVENT_BUS_") }
        merged.merge(environment) { $1 }
        process.environment = merged
        let pipe = Pipe()
        process.standardOutput = pipe
        pipe.fileHandleForReading.readabilityHandler = { [weak self] handle in
            self?.read(handle) { $0.collected += $1 }
        }
        if separateErrors {
            openPipes = 2
            let errorPipe = Pipe()
            process.standardError = errorPipe
            errorPipe.fileHandleForReading.readabilityHandler = { [weak self] handle in
                self?.read(handle) { $0.collectedErrors += $1 }
            }
        } else {
            process.standardError = pipe
        }
        try process.run()
    }

    /// Appends what `handle` has; at its end, stops reading it.
    private func read(_ handle: FileHandle, into append: (DemoProcess, String) -> Void) {
        let data = handle.availableData
        guard !data.isEmpty else {
            handle.readabilityHandler = nil
            // The end may be reported more than once; count each pipe once.
            lock.withLock { if endedPipes.insert(ObjectIdentifier(handle)).inserted { openPipes -= 1 } }
            return
        }
        let text = String(decoding: data, as: UTF8.self)
        lock.withLock { append(self, text) }
    }

    var output: String { lock.withLock { collected } }
    /// Standard error, when it was kept apart.
    var errors: String { lock.withLock { collectedErrors } }
    var isRunning: Bool { process.isRunning }
    var lines: [String] { output.split(separator: "\n").map(String.init) }

    func waitForLine(timeout: Duration, _ predicate: @escaping (String) -> Bool) async -> Bool {
        await eventually(timeout: timeout) { self.lines.contains(where: predicate) }
    }

    func waitForExit(timeout: Duration) async throws -> Int32 {
        let exited = await eventually(timeout: timeout) { !self.process.isRunning }
        if !exited {
            terminate()
            throw NATSServerProcess.Failure(description: "eventbus-demo \(process.arguments ?? []) did not exit within \(timeout): \(output)")
        }
        // Everything it wrote, also what was still in the pipe when it exited.
        _ = await eventually(timeout: .seconds(5)) { self.lock.withLock { self.openPipes == 0 } }
        return process.terminationStatus
    }

    func terminate() {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
    }
}

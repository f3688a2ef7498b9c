import Foundation
import NATS
import NATSTestSupport
import Testing

/// A finished `eventbus` run, with standard output and error apart.
struct CLIRun {
    var status: Int32
    var output: String
    var errors: String

    /// Each line of standard output that is a JSON object, parsed.
    func objects() throws -> [[String: Any]] {
        try output.split(separator: "\n").map { line in
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8))
            guard let dictionary = object as? [String: Any] else {
                throw NATSServerProcess.Failure(description: "not a JSON object: \(line)")
            }
            return dictionary
        }
    }
}

extension CLIProcessTests {
    static func runApart(_ arguments: [String], environment: [String: String]) async throws -> CLIRun {
        let process = try DemoProcess(
            executable: try DemoProcessTests.builtExecutable("eventbus"), arguments: arguments, environment: environment, separateErrors: true)
        let status = try await process.waitForExit(timeout: .seconds(60))
        return CLIRun(status: status, output: process.output, errors: process.errors)
    }

    /// Runs `eventbus` on a pseudo-terminal (util-linux `script`), as a person at a terminal would.
    static func runOnTerminal(_ arguments: [String], environment: [String: String]) async throws -> (Int32, String) {
        let executable = try DemoProcessTests.builtExecutable("eventbus")
        let command = ([executable] + arguments).map { "'" + $0.replacingOccurrences(of: "'", with: #"'\''"#) + "'" }.joined(separator: " ")
        let process = try DemoProcess(executable: "/usr/bin/script", arguments: ["-qfec", command, "/dev/null"], environment: environment)
        let status = try await process.waitForExit(timeout: .seconds(60))
        return (status, process.output)
    }
}

/// Exit statuses of the `eventbus` CLI (see the README's table).
enum CLIStatus {
    static let checkFailed: Int32 = 2
    static let usage: Int32 = 64
    static let notFound: Int32 = 66
    static let unavailable: Int32 = 69
    static let configuration: Int32 = 78
}

/// Bad input is a usage error with a message, never a crash; no command is a usage error too.
@Suite("eventbus CLI: usage", .serialized)
struct CLIUsageTests {
    @Test func noSubcommandPrintsHelpAndFails() async throws {
        let run = try await CLIProcessTests.runApart([], environment: [:])
        #expect(run.status == CLIStatus.usage, "\(run)")
        #expect(run.errors.contains("SUBCOMMANDS"), "\(run.errors)")
        #expect(run.errors.contains("stream") && run.errors.contains("consumer") && run.errors.contains("doctor"), "\(run.errors)")
        let stream = try await CLIProcessTests.runApart(["stream"], environment: [:])
        #expect(stream.status == CLIStatus.usage, "\(stream)")
        #expect(stream.errors.contains("ls") && stream.errors.contains("info"), "\(stream.errors)")
    }

    @Test func versionAndHelp() async throws {
        let version = try await CLIProcessTests.runApart(["--version"], environment: [:])
        #expect(version.status == 0, "\(version)")
        #expect(version.output.hasPrefix("eventbus 0."), "\(version.output)")
        #expect(version.output.contains("libnats 3."), "\(version.output)")
        let help = try await CLIProcessTests.runApart(["--help"], environment: [:])
        #expect(help.status == 0)
        #expect(help.output.contains("Exit status"), "\(help.output)")
    }

    @Test func anUnknownLogLevelListsTheLevels() async throws {
        let run = try await CLIProcessTests.runApart(["doctor", "--log-level", "verbose"], environment: [:])
        #expect(run.status == CLIStatus.usage, "\(run)")
        #expect(run.errors.contains("verbose"), "\(run.errors)")
        for level in ["trace", "debug", "info", "notice", "warning", "error", "critical"] {
            #expect(run.errors.contains("- \(level)\n"), "\(level): \(run.errors)")
        }
    }

    /// Each of these crashed (index out of range, negative array count) or published the wrong
    /// number of events; now each is refused before anything connects.
    @Test(arguments: [
        ["bench", "--concurrency", "0"], ["bench", "--size=-1"], ["bench", "--count", "0"], ["bench", "--count", "-5"],
        ["bench", "--concurrency", "100000"], ["subscribe", "orders.>", "--count", "-1"], ["request", "orders.check", "--timeout", "0"],
    ])
    func badBenchValuesAreUsageErrors(arguments: [String]) async throws {
        let run = try await CLIProcessTests.runApart(arguments, environment: ["EVENT_BUS_BACKEND": "jetstream", "EVENT_BUS_NATS_SERVERS": "nats://127.0.0.1:1"])
        #expect(run.status == CLIStatus.usage, "\(arguments): \(run)")
        #expect(run.errors.contains("Error:"), "\(run.errors)")
        #expect(!run.errors.contains("Fatal error") && !run.errors.contains("Crash"), "\(run.errors)")
    }

    @Test func jetStreamCommandsOnTheMemoryBackendAreUsageErrors() async throws {
        for command in [["stream", "ls"], ["consumer", "ls"], ["stream-info"]] {
            let run = try await CLIProcessTests.runApart(command, environment: [:])
            #expect(run.status == CLIStatus.usage, "\(command): \(run)")
            #expect(run.errors.contains("EVENT_BUS_BACKEND=jetstream or --server"), "\(run.errors)")
        }
        let memory = try await CLIProcessTests.runApart(["stream", "ls", "--server", "nats://127.0.0.1:1"], environment: ["EVENT_BUS_BACKEND": "memory"])
        #expect(memory.status == CLIStatus.usage, "\(memory)")
        #expect(memory.errors.contains("--server needs the jetstream backend"), "\(memory.errors)")
    }
}

/// The commands against a real server: text, `--json` parsed back, exit statuses.
@Suite("eventbus CLI: commands", .serialized)
struct CLICommandTests {
    static func environment(_ server: NATSServerProcess) -> [String: String] {
        ["EVENT_BUS_BACKEND": "jetstream", "EVENT_BUS_NATS_SERVERS": server.url]
    }

    @Test func streamAndConsumerCommandsShowTheGroupsNames() async throws {
        let server = try await NATSServerProcess.started()
        defer { server.kill() }
        let environment = Self.environment(server)
        for id in ["order-1", "order-2"] {
            let published = try await CLIProcessTests.runApart(["publish", "orders.created", id, "--id", id, "--json"], environment: environment)
            #expect(published.status == 0, "\(published)")
            let receipt = try #require(try published.objects().first)
            #expect(receipt["id"] as? String == id && receipt["stream"] as? String == "EVENTS" && receipt["duplicate"] as? Bool == false)
        }
        let subscribed = try await CLIProcessTests.runApart(["subscribe", "orders.>", "--group", "billing", "--all", "--count", "1"], environment: environment)
        #expect(subscribed.status == 0, "\(subscribed)")

        // consumer ls: the name the bus gave the group, next to the group and its pattern.
        let listed = try await CLIProcessTests.runApart(["consumer", "ls", "--json"], environment: environment)
        #expect(listed.status == 0, "\(listed)")
        let consumers = try listed.objects()
        #expect(consumers.count == 1, "\(listed.output)")
        let consumer = try #require(consumers.first)
        let name = try #require(consumer["name"] as? String)
        #expect(name.hasPrefix("billing-") && name.count == "billing-".count + 16, "\(name)")
        #expect(consumer["group"] as? String == "billing")
        #expect(consumer["pattern"] as? String == "orders.>")
        #expect(consumer["bus"] as? Bool == true && consumer["durable"] as? Bool == true)
        let table = try await CLIProcessTests.runApart(["consumer", "ls"], environment: environment)
        #expect(table.output.contains("CONSUMER"), "\(table.output)")
        let row = try #require(table.output.split(separator: "\n").first { $0.hasPrefix(name) })
        #expect(row.contains("billing") && row.contains("orders.>"), "\(row)")

        // consumer info by the group's name, by the consumer's name, and under the old spelling.
        for arguments in [["consumer", "info", "billing"], ["consumer", "info", name], ["consumer", "info", "billing", "--pattern", "orders.>"], ["consumer-info", name]] {
            let info = try await CLIProcessTests.runApart(arguments + ["--json"], environment: environment)
            #expect(info.status == 0, "\(arguments): \(info)")
            #expect(try info.objects().first?["name"] as? String == name, "\(arguments): \(info.output)")
        }
        let text = try await CLIProcessTests.runApart(["consumer", "info", "billing"], environment: environment)
        #expect(text.output.contains("group            billing"), "\(text.output)")
        #expect(text.output.contains("pattern          orders.>"), "\(text.output)")

        // Not found: its own status, the message once, no source location or repeated cause.
        let missing = try await CLIProcessTests.runApart(["consumer", "info", "nobody"], environment: environment)
        #expect(missing.status == CLIStatus.notFound, "\(missing)")
        #expect(missing.errors == "eventbus: error: no consumer or group 'nobody' on stream 'EVENTS'; `eventbus consumer ls` lists them\n", "\(missing.errors)")
        let wrongPattern = try await CLIProcessTests.runApart(["consumer", "info", "billing", "--pattern", "payments.>"], environment: environment)
        #expect(wrongPattern.status == CLIStatus.notFound, "\(wrongPattern)")

        // stream ls and stream info (and stream-info).
        let streams = try await CLIProcessTests.runApart(["stream", "ls", "--json"], environment: environment)
        #expect(streams.status == 0, "\(streams)")
        let stream = try #require(try streams.objects().first)
        #expect(try streams.objects().count == 1)
        #expect(stream["name"] as? String == "EVENTS" && stream["bus"] as? Bool == true)
        #expect(stream["messages"] as? Int == 2 && stream["consumers"] as? Int == 1, "\(streams.output)")
        #expect(stream["subjects"] as? [String] == ["events.>"])
        let streamTable = try await CLIProcessTests.runApart(["stream", "ls"], environment: environment)
        #expect(streamTable.output.contains("EVENTS *"), "\(streamTable.output)")
        for arguments in [["stream", "info"], ["stream", "info", "EVENTS"], ["stream-info"]] {
            let info = try await CLIProcessTests.runApart(arguments, environment: environment)
            #expect(info.status == 0, "\(arguments): \(info)")
            #expect(info.output.contains("stream            EVENTS (the bus's stream)"), "\(info.output)")
            #expect(info.output.contains("duplicate window  2 min"), "\(info.output)")
            #expect(info.output.contains("max age 7 d"), "\(info.output)")
        }
        let noStream = try await CLIProcessTests.runApart(["stream", "info", "NOPE", "--json"], environment: environment)
        #expect(noStream.status == CLIStatus.notFound, "\(noStream)")
        let error = try JSONSerialization.jsonObject(with: Data(noStream.errors.utf8)) as? [String: Any]
        let details = try #require(error?["error"] as? [String: Any], "\(noStream.errors)")
        #expect(details["exit_status"] as? Int == Int(CLIStatus.notFound))
        #expect((details["message"] as? String)?.contains("stream 'NOPE' does not exist") == true, "\(details)")
    }

    @Test func serverAndCredsFlagsAndConnectionFailures() async throws {
        let server = try await NATSServerProcess.started()
        defer { server.kill() }
        let unused = try NATSServerProcess.freePort()
        let wrong = ["EVENT_BUS_BACKEND": "jetstream", "EVENT_BUS_NATS_SERVERS": "nats://127.0.0.1:\(unused)", "EVENT_BUS_NATS_CONNECT_TIMEOUT_MS": "300"]
        let failed = try await CLIProcessTests.runApart(["stream", "ls"], environment: wrong)
        #expect(failed.status == CLIStatus.unavailable, "\(failed)")
        #expect(failed.errors.hasPrefix("eventbus: error: "), "\(failed.errors)")
        #expect(failed.errors.split(separator: "\n").count == 1, "one line: \(failed.errors)")
        #expect(!failed.errors.contains(".swift") && !failed.errors.contains("(underlying"), "\(failed.errors)")
        // --server overrides the variable; without EVENT_BUS_BACKEND it selects JetStream.
        let overridden = try await CLIProcessTests.runApart(["stream", "ls", "--server", server.url], environment: wrong)
        #expect(overridden.status == 0, "\(overridden)")
        let selected = try await CLIProcessTests.runApart(
            ["publish", "orders.created", "x", "--server", server.url], environment: ["EVENT_BUS_NATS_CONNECT_TIMEOUT_MS": "2000"])
        #expect(selected.status == 0, "\(selected)")
        #expect(selected.output.contains("stream EVENTS sequence 1"), "\(selected.output)")
        let publishFailed = try await CLIProcessTests.runApart(["publish", "orders.created", "x"], environment: wrong)
        #expect(publishFailed.status == CLIStatus.unavailable, "\(publishFailed)")
        #expect(!publishFailed.errors.contains(".swift") && !publishFailed.errors.contains("(underlying"), "\(publishFailed.errors)")
        let unanswered = try await CLIProcessTests.runApart(["request", "orders.check", "--timeout", "1"], environment: Self.environment(server))
        #expect(unanswered.status == CLIStatus.unavailable, "nobody answers: \(unanswered)")
        #expect(unanswered.errors.split(separator: "\n").count == 1 && !unanswered.errors.contains(".swift"), "\(unanswered.errors)")
        let badURL = try await CLIProcessTests.runApart(["stream", "ls", "--server", "http://127.0.0.1:4222"], environment: [:])
        #expect(badURL.status == CLIStatus.configuration, "\(badURL)")
        #expect(badURL.errors.contains("--server"), "\(badURL.errors)")
        let noCreds = try await CLIProcessTests.runApart(["stream", "ls", "--creds", "/nonexistent/user.creds"], environment: Self.environment(server))
        #expect(noCreds.status == CLIStatus.configuration, "\(noCreds)")
        #expect(noCreds.errors.contains("/nonexistent/user.creds"), "\(noCreds.errors)")
        let badVariable = try await CLIProcessTests.runApart(["stream", "ls"], environment: ["EVENT_BUS_BACKEND": "kafka"])
        #expect(badVariable.status == CLIStatus.configuration, "\(badVariable)")
    }

    /// `subscribe | cat > file` gets each event when it arrives, while the subscriber still runs.
    @Test func subscribeWritesEachEventIntoAPipeAtOnce() async throws {
        let server = try await NATSServerProcess.started()
        defer { server.kill() }
        let environment = Self.environment(server)
        let first = try await CLIProcessTests.runApart(["publish", "orders.created", "one", "--id", "pipe-1"], environment: environment)
        #expect(first.status == 0, "\(first)")
        let subscriber = try DemoProcess(
            executable: try DemoProcessTests.builtExecutable("eventbus"), arguments: ["subscribe", "orders.>", "--all", "--json"],
            environment: environment, separateErrors: true)
        defer { subscriber.terminate() }
        func ids() -> [String] {
            subscriber.output.split(separator: "\n").compactMap { line in
                (try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])?["id"] as? String
            }
        }
        #expect(await eventually(timeout: .seconds(30)) { ids() == ["pipe-1"] }, "\(subscriber.output) \(subscriber.errors)")
        #expect(subscriber.isRunning)
        let second = try await CLIProcessTests.runApart(["publish", "orders.shipped", "two", "--id", "pipe-2"], environment: environment)
        #expect(second.status == 0, "\(second)")
        #expect(await eventually(timeout: .seconds(30)) { ids() == ["pipe-1", "pipe-2"] }, "\(subscriber.output)")
        #expect(subscriber.isRunning, "the events arrived while the subscriber runs, not at its exit")
        subscriber.terminate()
        #expect(try await subscriber.waitForExit(timeout: .seconds(30)) == 0, "SIGTERM ends a subscriber cleanly: \(subscriber.errors)")
    }

    /// The doctor reads only: on a fresh server it creates nothing and says who will; with a
    /// stream it adds no event to it.
    @Test func doctorWritesNothing() async throws {
        let server = try await NATSServerProcess.started()
        defer { server.kill() }
        let environment = Self.environment(server)
        let fresh = try await CLIProcessTests.runApart(["doctor"], environment: environment)
        #expect(fresh.status == 0, "\(fresh)")
        #expect(!fresh.output.contains("FAIL"), "\(fresh.output)")
        #expect(fresh.output.contains("ok    jetstream: 0 stream(s)"), "\(fresh.output)")
        #expect(fresh.output.contains("info  stream EVENTS: does not exist yet: the first start of the bus"), "\(fresh.output)")
        let none = try await CLIProcessTests.runApart(["stream", "ls", "--json"], environment: environment)
        #expect(none.status == 0 && none.output.isEmpty, "the doctor created nothing: \(none)")

        let published = try await CLIProcessTests.runApart(["publish", "orders.created", "one"], environment: environment)
        #expect(published.status == 0, "\(published)")
        let doctor = try await CLIProcessTests.runApart(["doctor", "--json"], environment: environment)
        #expect(doctor.status == 0, "\(doctor)")
        let checks = try doctor.objects()
        #expect(checks.allSatisfy { $0["check"] is String && $0["status"] is String && $0["detail"] is String })
        let statuses = Dictionary(checks.map { ($0["check"] as! String, $0["status"] as! String) }, uniquingKeysWith: { first, _ in first })
        for check in ["configuration", "connect", "round trip", "jetstream", "stream EVENTS", "consumers", "health"] {
            #expect(statuses[check] == "ok", "\(check): \(doctor.output)")
        }
        let info = try await CLIProcessTests.runApart(["stream", "info", "--json"], environment: environment)
        #expect(try info.objects().first?["messages"] as? Int == 1, "the doctor published nothing: \(info.output)")

        // Another stream already takes the bus's subjects: the bus could not create its own.
        let admin = try await NATSConnection.connect(configuration: try NATSConnectionConfiguration(servers: [server.url]))
        _ = try await admin.request(subject: "$JS.API.STREAM.DELETE.EVENTS", timeout: .seconds(10))
        try await StreamPolicyDoctorTests.createRaw(admin, "LEGACY", #"{"name":"LEGACY","subjects":["events.orders.>"],"num_replicas":1}"#)
        await admin.close()
        let overlap = try await CLIProcessTests.runApart(["doctor"], environment: environment)
        #expect(overlap.status == CLIStatus.checkFailed, "\(overlap)")
        #expect(overlap.output.contains("FAIL  stream EVENTS: does not exist, and the bus cannot create it: stream(s) LEGACY"), "\(overlap.output)")
    }
}

/// `eventbus bench`: exactly the events asked for, in a stream of its own that it removes.
@Suite("eventbus CLI: bench", .serialized)
struct CLIBenchTests {
    @Test func benchPublishesExactlyTheCountIntoItsOwnStream() async throws {
        let server = try await NATSServerProcess.started()
        defer { server.kill() }
        let environment = CLICommandTests.environment(server)
        let published = try await CLIProcessTests.runApart(["publish", "orders.created", "keep"], environment: environment)
        #expect(published.status == 0, "\(published)")
        // The last: as many publishers as the bench allows, each recording into the shared histogram.
        for (count, concurrency) in [(10, 3), (5, 10), (1, 1), (200, 4), (3_000, 1_024)] {
            let run = try await CLIProcessTests.runApart(
                ["bench", "--count", "\(count)", "--concurrency", "\(concurrency)", "--size", "64", "--json"], environment: environment)
            #expect(run.status == 0, "\(run)")
            let report = try #require(try run.objects().last, "\(run)")
            #expect(report["events"] as? Int == count, "\(count)/\(concurrency): \(run.output)")
            #expect(report["publishers"] as? Int == min(count, concurrency))
            #expect((report["stream"] as? String)?.hasPrefix("EVENTBUS_BENCH_") == true)
            #expect(report["stream_removed"] as? Bool == true, "\(run.output)")
            let latency = try #require(report["latency_ns"] as? [String: Any])
            let p50 = try #require(latency["p50"] as? Int)
            let p99 = try #require(latency["p99"] as? Int)
            let max = try #require(latency["max"] as? Int)
            #expect(p50 > 0 && p50 <= p99 && p99 <= max, "\(latency)")
            #expect(latency["count"] as? Int == count, "one latency per event: \(latency)")
            #expect((report["events_per_second"] as? Double ?? 0) > 0)
            #expect(!run.errors.contains("█") && !run.errors.contains("\r"), "no progress bar into a pipe: \(run.errors.debugDescription)")
        }
        // The bus's stream holds only its own event, and no bench stream is left behind.
        let streams = try await CLIProcessTests.runApart(["stream", "ls", "--json"], environment: environment)
        let objects = try streams.objects()
        #expect(objects.map { $0["name"] as? String } == ["EVENTS"], "\(streams.output)")
        #expect(objects.first?["messages"] as? Int == 1, "\(streams.output)")

        let text = try await CLIProcessTests.runApart(["bench", "--count", "50", "--concurrency", "2"], environment: environment)
        #expect(text.status == 0, "\(text)")
        #expect(text.output.contains("published 50 events of 128 B with 2 publisher(s) to stream EVENTBUS_BENCH_"), "\(text.output)")
        #expect(text.output.contains("events/s") && text.output.contains("MB/s"), "\(text.output)")
        #expect(text.output.contains("p50 ") && text.output.contains("p99 ") && text.output.contains("p99.9 "), "\(text.output)")
        #expect(text.output.contains(" removed"), "\(text.output)")
        #expect(!text.output.contains("seconds"), "durations are human: \(text.output)")
        #expect(text.output.contains("µs") || text.output.contains("ms"), "\(text.output)")
        #expect(!text.errors.contains("█"), "\(text.errors)")
    }

    @Test func benchDrawsAProgressBarOnATerminal() async throws {
        let server = try await NATSServerProcess.started()
        defer { server.kill() }
        let (status, output) = try await CLIProcessTests.runOnTerminal(["bench", "--count", "300"], environment: CLICommandTests.environment(server))
        #expect(status == 0, "\(output)")
        #expect(output.contains("\r█") || output.contains("\r░"), "a bar at the start of a line: \(output.debugDescription)")
        #expect(output.contains("% "), "\(output.debugDescription)")
        #expect(output.contains("published 300 events"), "\(output.debugDescription)")
    }

    /// Stopped halfway (SIGTERM, as a service manager does, or Ctrl-C), the bench still removes
    /// its stream and says how far it got.
    @Test func anInterruptedBenchRemovesItsStream() async throws {
        let server = try await NATSServerProcess.started()
        defer { server.kill() }
        let environment = CLICommandTests.environment(server)
        let bench = try DemoProcess(
            executable: try DemoProcessTests.builtExecutable("eventbus"), arguments: ["bench", "--count", "10000000"],
            environment: environment, separateErrors: true)
        defer { bench.terminate() }
        func streams() async throws -> [String] {
            try await CLIProcessTests.runApart(["stream", "ls", "--json"], environment: environment).objects().compactMap { $0["name"] as? String }
        }
        #expect(try await eventually(timeout: .seconds(30)) { try await streams().contains { $0.hasPrefix("EVENTBUS_BENCH_") } })
        bench.terminate()
        let status = try await bench.waitForExit(timeout: .seconds(30))
        #expect(status == 130, "\(bench.errors)")
        #expect(bench.errors.contains("bench interrupted after "), "\(bench.errors)")
        #expect(bench.errors.contains(" removed"), "\(bench.errors)")
        #expect(try await streams().isEmpty, "the bench stream is gone, and the bus's was never created")
    }

    @Test func benchOnTheMemoryBackend() async throws {
        let run = try await CLIProcessTests.runApart(["bench", "--count", "7", "--concurrency", "3", "--json"], environment: [:])
        #expect(run.status == 0, "\(run)")
        let report = try #require(try run.objects().last)
        #expect(report["events"] as? Int == 7 && report["backend"] as? String == "memory", "\(run.output)")
    }
}

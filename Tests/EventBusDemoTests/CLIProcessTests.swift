import Foundation
import NATS
import NATSTestSupport
import Testing

/// Runs the `eventbus` command-line tool against a real server.
@Suite("eventbus CLI", .serialized)
struct CLIProcessTests {
    static func run(_ arguments: [String], environment: [String: String]) async throws -> (Int32, String) {
        let process = try DemoProcess(
            executable: try DemoProcessTests.builtExecutable("eventbus"), arguments: arguments, environment: environment)
        let status = try await process.waitForExit(timeout: .seconds(60))
        return (status, process.output)
    }

    @Test func doctorPublishAndInspect() async throws {
        let server = try await NATSServerProcess.started()
        defer { server.kill() }
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
        #expect(failed == 69, "EX_UNAVAILABLE: \(failedOutput)")
        #expect(failedOutput.contains("FAIL  connect"), "\(failedOutput)")
        let (invalid, invalidOutput) = try await Self.run(["doctor"], environment: ["EVENT_BUS_BACKEND": "kafka"])
        #expect(invalid == 78, "EX_CONFIG: \(invalidOutput)")
        #expect(invalidOutput.contains("EVENT_BUS_BACKEND"), "\(invalidOutput)")
    }

    /// `--data-file` publishes a file's bytes as they are (binary, and longer than an argument may
    /// be), or standard input's with `-`; a file that cannot be read is EX_NOINPUT, and a payload given
    /// both ways is a usage error.
    @Test func publishesAPayloadFromAFileOrStandardInput() async throws {
        let server = try await NATSServerProcess.started()
        defer { server.kill() }
        let environment = ["EVENT_BUS_BACKEND": "jetstream", "EVENT_BUS_NATS_SERVERS": server.url]
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("eventbus-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        // 200 KiB with every byte value: over Linux's 128 KiB limit for one argument, and not UTF-8.
        let binary = (0..<(200 * 1024)).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 8) }
        let file = directory.appendingPathComponent("payload.bin")
        try Data(binary).write(to: file)
        let (fromFile, fromFileOutput) = try await Self.run(
            ["publish", "blobs.stored", "--data-file", file.path, "--content-type", "application/octet-stream", "--id", "blob-1"],
            environment: environment)
        #expect(fromFile == 0, "\(fromFileOutput)")

        let text = #"{"order":"o-42","note":"piped ü"}"#
        let input = directory.appendingPathComponent("order.json")
        try Data(text.utf8).write(to: input)
        let eventbus = try DemoProcessTests.builtExecutable("eventbus")
        let piped = try DemoProcess(
            executable: "/bin/sh",
            arguments: ["-c", "\"$0\" publish orders.created --data-file - --id piped-1 < \"$1\"", eventbus, input.path],
            environment: environment)
        let pipedStatus = try await piped.waitForExit(timeout: .seconds(60))
        #expect(pipedStatus == 0, "\(piped.output)")

        let (_, json) = try await Self.run(["subscribe", ">", "--all", "--count", "2", "--json"], environment: environment)
        let events = json.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
        let blob = try #require(events.first { $0["id"] as? String == "blob-1" }, "\(json)")
        #expect((blob["data_base64"] as? String).flatMap { Data(base64Encoded: $0) } == Data(binary))
        let order = try #require(events.first { $0["id"] as? String == "piped-1" }, "\(json)")
        #expect(order["data"] as? String == text)

        let (missing, missingOutput) = try await Self.run(
            ["publish", "orders.created", "--data-file", directory.appendingPathComponent("absent").path], environment: environment)
        #expect(missing == 66, "EX_NOINPUT: \(missingOutput)")
        #expect(missingOutput.contains("--data-file"), "\(missingOutput)")
        let (both, bothOutput) = try await Self.run(["publish", "orders.created", "x", "--data-file", file.path], environment: environment)
        #expect(both == 64, "EX_USAGE: \(bothOutput)")
    }
}

/// Commands whose effect must outlive the process refuse the in-memory bus unless asked, and the
/// CLI reads the environment as a service does (an unknown variable stops it).
@Suite("eventbus CLI: configuration", .serialized)
struct CLIConfigurationTests {
    @Test func publishWithoutABackendFailsAndSaysWhy() async throws {
        for command in [["publish", "orders.created", "hello"], ["subscribe", "orders.>", "--count", "1"], ["request", "orders.check"]] {
            let (status, output) = try await CLIProcessTests.run(command, environment: [:])
            #expect(status != 0, "\(command): \(output)")
            #expect(
                output.contains(
                    "eventbus \(command[0]) needs a bus other processes share, but EVENT_BUS_BACKEND is memory (the default when it is not set)"),
                "\(output)")
            #expect(output.contains("--allow-memory"), "\(output)")
            #expect(!output.contains("published"), "\(output)")
        }
        let (explicit, explicitOutput) = try await CLIProcessTests.run(["publish", "orders.created"], environment: ["EVENT_BUS_BACKEND": "memory"])
        #expect(explicit != 0 && explicitOutput.contains("but EVENT_BUS_BACKEND is memory:"), "\(explicitOutput)")
        // Asked for: a throwaway in-memory bus.
        let (allowed, allowedOutput) = try await CLIProcessTests.run(["publish", "orders.created", "hello", "--allow-memory"], environment: [:])
        #expect(allowed == 0, "\(allowedOutput)")
        #expect(allowedOutput.contains("stream memory sequence 1"), "\(allowedOutput)")
    }

    @Test func anUnknownVariableStopsTheCommand() async throws {
        let (status, output) = try await CLIProcessTests.run(
            ["publish", "orders.created", "--allow-memory"], environment: ["EVENT_BUS_BACKEN": "jetstream"])
        #expect(status != 0)
        #expect(output.contains("unknown variable EVENT_BUS_BACKEN; did you mean EVENT_BUS_BACKEND?"), "\(output)")
    }
}

/// `eventbus subscribe` prints what any publisher sent: control sequences in it must reach the
/// operator's terminal as visible escapes, not as commands.
@Suite("eventbus CLI: terminal escapes", .serialized)
struct CLITerminalEscapeTests {
    @Test func subscribePrintsNoControlCharactersFromTheWire() async throws {
        let server = try await NATSServerProcess.started()
        defer { server.kill() }
        let environment = ["EVENT_BUS_BACKEND": "jetstream", "EVENT_BUS_NATS_SERVERS": server.url]
        // The bus's own publish refuses control characters, so the hostile publisher writes the
        // CloudEvents headers itself, percent-encoded as the binding reads them.
        let (published, publishOutput) = try await CLIProcessTests.run(["publish", "orders.created", "first"], environment: environment)
        #expect(published == 0, "\(publishOutput)")
        let publisher = try await NATSConnection.connect(configuration: try NATSConnectionConfiguration(servers: [server.url]))
        var headers = NATSHeaders()
        headers.add("evil-%1B[2J%1B[H", for: "ce-id")
        headers.add("com.example%1B]0;owned%07", for: "ce-type")
        headers.add("/src%C2%9B31m%E2%80%AE", for: "ce-source")
        headers.add("1.0", for: "ce-specversion")
        headers.add("%1B[5mblink", for: "ce-note")
        headers.add("say%20%22hi%22%20%5C%20bye%20%F0%9F%98%80", for: "ce-quoted")
        let payload = Array("payload\u{1B}[31mred\nsecond line\u{07}".utf8)
        _ = try await publisher.jetStream().publish(subject: "events.orders.hostile", payload: payload, headers: headers)
        await publisher.close()

        let (status, output) = try await CLIProcessTests.run(["subscribe", "orders.hostile", "--all", "--count", "1"], environment: environment)
        #expect(status == 0, "\(output)")
        #expect(!output.utf8.contains(0x1B), "a raw ESC reached the terminal: \(output.debugDescription)")
        #expect(!output.utf8.contains(0x07), "a raw BEL reached the terminal: \(output.debugDescription)")
        #expect(!output.unicodeScalars.contains { $0.value == 0x9B || $0.value == 0x202E })
        #expect(output.contains(#"id=evil-\u{1B}[2J\u{1B}[H"#), "\(output)")
        #expect(output.contains(#"type=com.example\u{1B}]0;owned\u{7}"#), "\(output)")
        #expect(output.contains(#"source=/src\u{9B}31m\u{202E}"#), "\(output)")
        #expect(output.contains(#"note=\u{1B}[5mblink"#), "\(output)")
        #expect(output.contains(#"data=payload\u{1B}[31mred\nsecond line\u{7}"#), "\(output)")
        #expect(output.split(separator: "\n").filter { $0.hasPrefix("#") }.count == 1, "one event, one line: \(output)")

        // --json: printable ASCII only (everything else a \u escape), and the values parse back as sent.
        let json = try await CLIProcessTests.runApart(["subscribe", "orders.hostile", "--all", "--count", "1", "--json"], environment: environment)
        #expect(json.status == 0, "\(json)")
        #expect(json.output.utf8.allSatisfy { ($0 >= 0x20 && $0 < 0x7F) || $0 == 0x0A }, "\(json.output.debugDescription)")
        let event = try #require(try json.objects().first)
        #expect(event["id"] as? String == "evil-\u{1B}[2J\u{1B}[H")
        #expect(event["source"] as? String == "/src\u{9B}31m\u{202E}")
        #expect(event["data"] as? String == "payload\u{1B}[31mred\nsecond line\u{07}")
        #expect((event["extensions"] as? [String: String])?["note"] == "\u{1B}[5mblink", "\(event)")
        // A quote, a backslash and a scalar beyond the BMP (a surrogate pair in JSON).
        #expect((event["extensions"] as? [String: String])?["quoted"] == "say \"hi\" \\ bye 😀", "\(event)")
        #expect(json.output.contains(#"say \"hi\" \\ bye \ud83d\ude00"#), "\(json.output)")
    }

    /// An error's text may quote a server's answer or a value that passed validation; it is
    /// printed escaped too. (A C1 control and a bidi override are not ASCII, so the consumer name
    /// passes the client's check and the error quotes it after the server's "not found".)
    @Test func errorsArePrintedEscaped() async throws {
        let server = try await NATSServerProcess.started()
        defer { server.kill() }
        let environment = ["EVENT_BUS_BACKEND": "jetstream", "EVENT_BUS_NATS_SERVERS": server.url]
        let (status, output) = try await CLIProcessTests.run(["consumer-info", "bad\u{9B}31m\u{202E}name"], environment: environment)
        #expect(status != 0, "\(output)")
        #expect(!output.unicodeScalars.contains { $0.value == 0x9B || $0.value == 0x202E }, "\(output.debugDescription)")
        #expect(output.contains(#"bad\u{9B}31m\u{202E}name"#), "\(output)")
    }
}

import Foundation
import NATS
import NATSTestSupport
import Testing

/// `eventbus deadletter ls|show|requeue|purge` against a real server: text and `--json` output,
/// exit codes, and wire text escaped for the terminal.
@Suite("eventbus CLI: dead letters", .serialized)
struct DeadLetterCLITests {
    /// Runs the CLI and returns its exit status and output once the pipe has gone quiet: the
    /// process can exit before the last chunk of its output is read.
    static func run(_ arguments: [String], environment: [String: String]) async throws -> (Int32, String) {
        let process = try DemoProcess(
            executable: try DemoProcessTests.builtExecutable("eventbus"), arguments: arguments, environment: environment)
        let status = try await process.waitForExit(timeout: .seconds(60))
        var output = process.output
        while true {
            try await Task.sleep(for: .milliseconds(100))
            let later = process.output
            if later == output { return (status, output) }
            output = later
        }
    }

    /// The JSON objects among the output lines (logs go to the same pipe).
    static func objects(_ output: String) throws -> [[String: Any]] {
        try output.split(separator: "\n").filter { $0.hasPrefix("{") }.map { line in
            try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "not a JSON object: \(line)")
        }
    }

    /// Stores a dead letter as the bus writes one: the original event's CloudEvents headers on
    /// `events.deadletter.<subject>` with the dead-letter extensions.
    static func storeDeadLetter(
        _ jetStream: NATSJetStream, id: String, subject: String, group: String, error: String, data: String
    ) async throws -> UInt64 {
        var headers = NATSHeaders()
        headers.add(id, for: "ce-id")
        headers.add("/shop", for: "ce-source")
        headers.add("order.created", for: "ce-type")
        headers.add("1.0", for: "ce-specversion")
        headers.add("text/plain", for: "content-type")
        headers.add("acme", for: "ce-tenant")
        headers.add(subject, for: "ce-deadletter-subject")
        headers.add("5", for: "ce-deadletter-attempts")
        headers.add(error, for: "ce-deadletter-error")
        headers.add("1", for: "ce-deadletter-stream-sequence")
        headers.add(group, for: "ce-deadletter-group")
        let ack = try await jetStream.publish(
            subject: "events.deadletter.\(subject)", payload: Array(data.utf8), headers: headers,
            options: .init(messageID: "deadletter-\(group)-\(id)"))
        return ack.sequence
    }

    @Test func listShowRequeueAndPurge() async throws {
        let server = try await NATSServerProcess.started()
        defer { server.kill() }
        let environment = ["EVENT_BUS_BACKEND": "jetstream", "EVENT_BUS_NATS_SERVERS": server.url]
        // The first bus that starts creates the stream.
        let (created, createdOutput) = try await Self.run(["publish", "setup.done", "x"], environment: environment)
        #expect(created == 0, "\(createdOutput)")
        let connection = try await NATSConnection.connect(configuration: try NATSConnectionConfiguration(servers: [server.url]))
        let jetStream = connection.jetStream()
        // The handler's error quotes the event: a control sequence in it must not reach the terminal.
        let order = try await Self.storeDeadLetter(
            jetStream, id: "order-1", subject: "orders.created", group: "billing", error: "card declined %1B[31mred", data: "hello order")
        let payment = try await Self.storeDeadLetter(
            jetStream, id: "pay-1", subject: "payments.settled", group: "ledger", error: "ledger closed", data: "hello payment")

        // ls: one JSON object per dead letter, oldest first.
        let (listed, listOutput) = try await Self.run(["deadletter", "ls", "--json"], environment: environment)
        #expect(listed == 0, "\(listOutput)")
        #expect(!listOutput.utf8.contains(0x1B), "a raw ESC reached the terminal: \(listOutput.debugDescription)")
        let entries = try Self.objects(listOutput)
        #expect(entries.count == 2, "\(listOutput)")
        #expect(entries.map { $0["sequence"] as? Int } == [Int(order), Int(payment)])
        let first = try #require(entries.first)
        #expect(first["subject"] as? String == "orders.created" && first["id"] as? String == "order-1")
        #expect(first["group"] as? String == "billing" && first["attempts"] as? Int == 5 && first["original_sequence"] as? Int == 1)
        #expect(first["reason"] as? String == "card declined \u{1B}[31mred", "the JSON escape must decode to the original text")
        #expect(first["dead_letter_subject"] as? String == "deadletter.orders.created")
        let (_, filteredOutput) = try await Self.run(
            ["deadletter", "ls", "--subject", "orders.>", "--json"], environment: environment)
        #expect(try Self.objects(filteredOutput).map { $0["id"] as? String } == ["order-1"], "\(filteredOutput)")
        let (_, groupOutput) = try await Self.run(["deadletter", "ls", "--group", "ledger"], environment: environment)
        #expect(groupOutput.contains("#\(payment) payments.settled id=pay-1") && groupOutput.contains("1 dead letter"), "\(groupOutput)")

        // show: the original event in full; the text form escapes the error.
        let (shownStatus, showOutput) = try await Self.run(["deadletter", "show", "\(order)", "--json"], environment: environment)
        #expect(shownStatus == 0, "\(showOutput)")
        let detail = try #require(try Self.objects(showOutput).first)
        #expect(detail["data"] as? String == "hello order")
        #expect(detail["extensions"] as? [String: String] == ["tenant": "acme"])
        #expect(detail["content_type"] as? String == "text/plain")
        let (_, showText) = try await Self.run(["deadletter", "show", "\(order)"], environment: environment)
        #expect(showText.contains(#"reason       card declined \u{1B}[31mred"#), "\(showText)")
        #expect(showText.contains("data         11 bytes: hello order"), "\(showText)")
        #expect(!showText.utf8.contains(0x1B))

        // requeue: stored once, however often it is asked.
        let (requeued, requeueOutput) = try await Self.run(["deadletter", "requeue", "\(order)", "--json"], environment: environment)
        #expect(requeued == 0, "\(requeueOutput)")
        let outcome = try Self.objects(requeueOutput)
        #expect(outcome.first?["duplicate"] as? Bool == false && outcome.first?["subject"] as? String == "orders.created")
        #expect(outcome.last?["done"] as? Bool == true && outcome.last?["requeued"] as? Int == 1)
        let (_, againOutput) = try await Self.run(["deadletter", "requeue", "\(order)", "--json"], environment: environment)
        #expect(try Self.objects(againOutput).first?["duplicate"] as? Bool == true, "\(againOutput)")
        let (_, subscribed) = try await Self.run(["subscribe", "orders.created", "--all", "--count", "1"], environment: environment)
        #expect(subscribed.contains("orders.created id=order-1") && subscribed.contains("attempt=1"), "\(subscribed)")
        // Setup event, two dead letters, one requeued copy.
        #expect(try await jetStream.streamInfo("EVENTS").state.messages == 4)

        // Usage errors exit non-zero without touching anything.
        let (bare, bareOutput) = try await Self.run(["deadletter", "requeue"], environment: environment)
        #expect(bare != 0 && bareOutput.contains("--all"), "\(bareOutput)")
        let (badTime, badTimeOutput) = try await Self.run(["deadletter", "ls", "--since", "yesterday"], environment: environment)
        #expect(badTime != 0 && badTimeOutput.contains("--since"), "\(badTimeOutput)")
        let (missing, missingOutput) = try await Self.run(["deadletter", "show", "999"], environment: environment)
        #expect(missing != 0 && missingOutput.contains("999"), "\(missingOutput)")

        // purge: refused without --yes when it cannot ask, then by filter, then everything.
        if isatty(STDIN_FILENO) == 0 {
            let (unconfirmed, unconfirmedOutput) = try await Self.run(
                ["deadletter", "purge", "--subject", "payments.>"], environment: environment)
            #expect(unconfirmed != 0 && unconfirmedOutput.contains("--yes"), "\(unconfirmedOutput)")
        }
        let (purged, purgeOutput) = try await Self.run(
            ["deadletter", "purge", "--subject", "payments.>", "--yes", "--json"], environment: environment)
        #expect(purged == 0, "\(purgeOutput)")
        #expect(try Self.objects(purgeOutput).first?["removed"] as? Int == 1, "\(purgeOutput)")
        let (_, remaining) = try await Self.run(["deadletter", "ls", "--json"], environment: environment)
        #expect(try Self.objects(remaining).map { $0["id"] as? String } == ["order-1"], "\(remaining)")
        let (_, all) = try await Self.run(["deadletter", "purge", "--all", "--yes"], environment: environment)
        #expect(all.contains("removed 1 dead letter"), "\(all)")
        await connection.close()
    }
}

import Foundation
import NATS
import NATSTestSupport
import Testing

@Suite("JetStream key-value buckets against a real server", .tags(.server))
struct NATSKeyValueTests {
    @Test func putGetRoundTripsBinaryValuesWithIncreasingRevisions() async throws {
        let server = try await NATSServerProcess.started()
        defer { server.stop() }
        let connection = try await connect(to: server, name: "kv-roundtrip")
        let kv = try await connection.jetStream().ensureKeyValue(.init(bucket: "snapshots", history: 5))
        #expect(kv.bucket == "snapshots")

        let before = Date()
        let binary: [UInt8] = [0, 1, 2, 0xFF, 0, 0x80, 0x7F, 0]
        let first = try await kv.put("order-7", binary)
        let entry = try #require(try await kv.get("order-7"))
        #expect(entry.value == binary)
        #expect(entry.key == "order-7")
        #expect(entry.bucket == "snapshots")
        #expect(entry.revision == first)
        #expect(entry.operation == .put)
        #expect(entry.delta == 0)
        #expect(entry.created >= before.addingTimeInterval(-5) && entry.created <= Date().addingTimeInterval(5))

        let second = try await kv.put("order-7", Array("v2".utf8))
        let other = try await kv.put("order.8/a=b_c-d", [UInt8]())
        #expect(second > first)
        #expect(other > second)
        #expect(try await kv.get("order-7")?.value == Array("v2".utf8))
        #expect(try await kv.get("order.8/a=b_c-d")?.value == [])
        #expect(try await kv.get("never-set") == nil)

        // An earlier revision of the same key, not another key's revision.
        let old = try #require(try await kv.get("order-7", revision: first))
        #expect(old.value == binary && old.revision == first)
        #expect(try await kv.get("order-7", revision: other) == nil)
        #expect(try await kv.get("order-7", revision: 999) == nil)

        // A large value (64 KiB) survives the round trip byte for byte.
        let large = (0..<65_536).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        try await kv.put("large", large)
        #expect(try await kv.get("large")?.value == large)
        await connection.close()
    }

    @Test func createFailsTypedWhenTheKeyExistsAndSucceedsAfterADelete() async throws {
        let server = try await NATSServerProcess.started()
        defer { server.stop() }
        let connection = try await connect(to: server, name: "kv-create")
        let kv = try await connection.jetStream().ensureKeyValue(.init(bucket: "aggregates"))
        let created = try await kv.create("order-1", Array("first".utf8))
        do {
            try await kv.create("order-1", Array("second".utf8))
            Issue.record("create succeeded on a key that has a value")
        } catch {
            #expect(error.code == .jetStream)
            #expect(error.jetStreamErrorCode == NATSJetStreamErrorCode.wrongLastSequence)
            #expect(error.message.contains("'order-1'") && error.message.contains("exists"), "\(error)")
        }
        #expect(try await kv.get("order-1")?.value == Array("first".utf8))

        try await kv.delete("order-1")
        let again = try await kv.create("order-1", Array("reborn".utf8))
        #expect(again > created)
        #expect(try await kv.get("order-1")?.value == Array("reborn".utf8))
        await connection.close()
    }

    @Test func updateWithAStaleRevisionFailsTypedNamingTheRevision() async throws {
        let server = try await NATSServerProcess.started()
        defer { server.stop() }
        let connection = try await connect(to: server, name: "kv-update")
        let kv = try await connection.jetStream().ensureKeyValue(.init(bucket: "aggregates"))
        let first = try await kv.put("order-2", Array("a".utf8))
        let second = try await kv.update("order-2", Array("b".utf8), expectedRevision: first)
        #expect(second > first)
        do {
            try await kv.update("order-2", Array("c".utf8), expectedRevision: first)
            Issue.record("an update expecting a stale revision succeeded")
        } catch {
            #expect(error.code == .jetStream)
            #expect(error.jetStreamErrorCode == NATSJetStreamErrorCode.wrongLastSequence)
            #expect(error.message.contains("expecting revision \(first)"), "\(error)")
            #expect(error.message.contains("'order-2'"), "\(error)")
        }
        #expect(try await kv.get("order-2")?.value == Array("b".utf8))
        // An update of a key that never had a value fails the same way.
        let missing = await #expect(throws: NATSError.self) {
            try await kv.update("order-none", Array("x".utf8), expectedRevision: second)
        }
        #expect(missing?.jetStreamErrorCode == NATSJetStreamErrorCode.wrongLastSequence)
        let zero = await #expect(throws: NATSError.self) { try await kv.update("order-2", [1], expectedRevision: 0) }
        #expect(zero?.code == .invalidArgument && zero?.message.contains("create") == true)
        await connection.close()
    }

    @Test func deleteAndPurgeMakeTheKeyReadAsAbsent() async throws {
        let server = try await NATSServerProcess.started()
        defer { server.stop() }
        let connection = try await connect(to: server, name: "kv-delete")
        let kv = try await connection.jetStream().ensureKeyValue(.init(bucket: "history", history: 10))
        let first = try await kv.put("k", Array("one".utf8))
        try await kv.put("k", Array("two".utf8))
        try await kv.delete("k")
        #expect(try await kv.get("k") == nil)
        // Delete keeps the history.
        #expect(try await kv.get("k", revision: first)?.value == Array("one".utf8))
        try await kv.delete("never-set")

        let third = try await kv.put("k", Array("three".utf8))
        #expect(try await kv.get("k")?.revision == third)
        try await kv.purge("k")
        #expect(try await kv.get("k") == nil)
        // Purge removes it.
        #expect(try await kv.get("k", revision: first) == nil)
        #expect(try await kv.get("k", revision: third) == nil)
        await connection.close()
    }

    @Test func badKeysFailBeforeTheWire() async throws {
        let server = try await NATSServerProcess.started()
        defer { server.stop() }
        let connection = try await connect(to: server, name: "kv-keys")
        let recorder = await EventRecorder(connection)
        let kv = try await connection.jetStream().ensureKeyValue(.init(bucket: "keys"))
        for key in ["", ".a", "a.", "a..b", "a b", "orders.*", "orders.>", "ä", "tab\tkey", "back\\slash"] {
            let error = await #expect(throws: NATSError.self, "key '\(key)'") { try await kv.put(key, [1]) }
            #expect(error?.code == .invalidArgument, "key '\(key)': \(String(describing: error))")
            #expect(error?.message.contains("key") == true)
        }
        let spaced = await #expect(throws: NATSError.self) { _ = try await kv.get("a b") }
        #expect(spaced?.message.contains("only ASCII letters, digits") == true)

        // A key whose request line the server would refuse (and close the connection for).
        let long = String(repeating: "k", count: 5_000)
        let tooLong = await #expect(throws: NATSError.self) { try await kv.put(long, [1]) }
        #expect(tooLong?.code == .invalidArgument)
        #expect(tooLong?.message.contains("max_control_line") == true, "\(String(describing: tooLong))")

        // Nothing reached the server: the connection never dropped and the bucket works.
        try await kv.put("fine", [1])
        #expect(try await kv.get("fine")?.value == [1])
        #expect(!recorder.events.values.contains { event in
            switch event {
            case .disconnected, .closed, .reconnected: true
            default: false
            }
        })

        // Checked before the connection: on a closed connection a bad key still fails as a bad
        // key, a good one as a closed connection.
        await connection.close()
        let bad = await #expect(throws: NATSError.self) { try await kv.put("a..b", [1]) }
        #expect(bad?.code == .invalidArgument)
        let good = await #expect(throws: NATSError.self) { try await kv.put("a.b", [1]) }
        #expect(good?.code == .connectionClosed)
    }

    @Test func bindingAMissingBucketFailsTyped() async throws {
        let server = try await NATSServerProcess.started()
        defer { server.stop() }
        let connection = try await connect(to: server, name: "kv-bind")
        let js = connection.jetStream()
        let missing = await #expect(throws: NATSError.self) { _ = try await js.keyValue(bucket: "nope") }
        #expect(missing?.code == .jetStream)
        #expect(missing?.jetStreamErrorCode == NATSJetStreamErrorCode.streamNotFound)
        #expect(missing?.message.contains("'nope'") == true, "\(String(describing: missing))")
        let badName = await #expect(throws: NATSError.self) { _ = try await js.keyValue(bucket: "a.b") }
        #expect(badName?.code == .invalidName)

        // Bound by another handle, the values are the same bucket's.
        let made = try await js.ensureKeyValue(.init(bucket: "shared"))
        try await made.put("k", Array("v".utf8))
        let bound = try await js.keyValue(bucket: "shared")
        #expect(try await bound.get("k")?.value == Array("v".utf8))

        try await js.deleteKeyValue(bucket: "shared")
        let gone = await #expect(throws: NATSError.self) { _ = try await js.keyValue(bucket: "shared") }
        #expect(gone?.jetStreamErrorCode == NATSJetStreamErrorCode.streamNotFound)
        await connection.close()
    }

    @Test func ensureKeyValueBindsTheSameConfigurationAndNamesEveryDifference() async throws {
        let server = try await NATSServerProcess.started()
        defer { server.stop() }
        let connection = try await connect(to: server, name: "kv-ensure")
        let js = connection.jetStream()
        let configuration = NATSKeyValueConfiguration(
            bucket: "config", description: "aggregate snapshots", history: 5, maxValueSize: 1_024, ttl: .seconds(3_600),
            storage: .memory)
        let first = try await js.ensureKeyValue(configuration)
        try await first.put("k", [1])
        let again = try await js.ensureKeyValue(configuration)
        #expect(try await again.get("k")?.value == [1])
        let stream = try await js.streamInfo("KV_config").configuration
        #expect(stream.maxMessagesPerSubject == 5)
        #expect(stream.maxMessageSize == 1_024)
        #expect(stream.maxAge == .seconds(3_600))
        #expect(stream.storage == .memory)

        var changed = configuration
        changed.history = 3
        changed.maxValueSize = nil
        let error = await #expect(throws: NATSError.self) { _ = try await js.ensureKeyValue(changed) }
        #expect(error?.code == .invalidConfiguration)
        #expect(error?.message.contains("history 5 → 3") == true, "\(String(describing: error))")
        #expect(error?.message.contains("maxValueSize 1024 → nil") == true, "\(String(describing: error))")
        #expect(try await js.streamInfo("KV_config").configuration.maxMessagesPerSubject == 5)

        // A value over the bucket's maxValueSize is refused by the server, typed.
        let large = await #expect(throws: NATSError.self) { try await first.put("big", [UInt8](repeating: 7, count: 2_000)) }
        #expect(large?.jetStreamErrorCode == NATSJetStreamErrorCode.messageTooLarge, "\(String(describing: large))")
        await connection.close()
    }

    @Test func aBucketKeepsWorkingAfterTheConnectionRecoversFromAServerError() async throws {
        // The server accepts 1,024-byte control lines, the client is told 4,096: a long request
        // subject reaches the server, which answers -ERR and closes the connection; the client
        // connects again (a new cnats connection), and the bucket must follow it.
        let server = try await NATSServerProcess.started(configuration: "max_control_line: 1024")
        defer { server.stop() }
        let connection = try await connect(to: server, name: "kv-recover") { $0.maxControlLine = 4_096 }
        let recorder = await EventRecorder(connection)
        let kv = try await connection.jetStream().ensureKeyValue(.init(bucket: "recover"))
        let before = try await kv.put("k", Array("before".utf8))

        let long = String(repeating: "c", count: 2_000)
        _ = try? await connection.request(subject: long, payload: Array("x".utf8), timeout: .seconds(10))
        #expect(await recorder.waitFor { if case .reconnected = $0 { true } else { false } })

        #expect(try await kv.get("k")?.value == Array("before".utf8))
        let after = try await kv.update("k", Array("after".utf8), expectedRevision: before)
        #expect(after > before)
        #expect(try await kv.get("k")?.value == Array("after".utf8))
        await connection.close()
    }
}

@Suite("Key-value validation")
struct NATSKeyValueValidationTests {
    @Test func keysFollowTheKeyValueRules() throws {
        for key in ["a", "order-7", "orders.7", "a/b", "a=b", "_x", "A.b.C", "0"] {
            try NATSKeyValue.validateKey(key)
        }
        let cases: [(String, String)] = [
            ("", "empty"), (".a", "start or end"), ("a.", "start or end"), ("a..b", "'..'"),
            ("a b", "only ASCII"), ("a*", "only ASCII"), ("a>", "only ASCII"), ("é", "only ASCII"), ("a\u{0}", "only ASCII"),
        ]
        for (key, rule) in cases {
            let error = #expect(throws: NATSError.self, "key '\(key)'") { try NATSKeyValue.validateKey(key) }
            #expect(error?.code == .invalidArgument)
            #expect(error?.message.contains(rule) == true, "key '\(key)': \(String(describing: error))")
        }
    }

    @Test func bucketNamesAndConfigurationValuesAreCheckedNamingTheValue() throws {
        try NATSKeyValueConfiguration(bucket: "Snap_shots-1").validate()
        for bucket in ["", "a.b", "a b", "a*", "ö", String(repeating: "b", count: 253)] {
            let error = #expect(throws: NATSError.self, "bucket '\(bucket)'") {
                try NATSKeyValueConfiguration(bucket: bucket).validate()
            }
            #expect(error?.code == .invalidName, "bucket '\(bucket)'")
        }
        try NATSKeyValueConfiguration(bucket: String(repeating: "b", count: 252)).validate()

        let invalid: [(NATSKeyValueConfiguration, String)] = [
            (.init(bucket: "b", history: 0), "history 0 is out of range (1...64)"),
            (.init(bucket: "b", history: 65), "history 65 is out of range (1...64)"),
            (.init(bucket: "b", maxValueSize: 0), "maxValueSize 0 is out of range"),
            (.init(bucket: "b", maxBytes: 0), "maxBytes 0 must be positive"),
            (.init(bucket: "b", ttl: .milliseconds(50)), "below the server's minimum of 100 ms"),
            (.init(bucket: "b", replicas: 6), "replicas 6 is out of range (1...5)"),
            (.init(bucket: "b", description: String(repeating: "d", count: 4_097)), "at most 4096"),
        ]
        for (configuration, rule) in invalid {
            let error = #expect(throws: NATSError.self) { try configuration.validate() }
            #expect(error?.code == .invalidConfiguration)
            #expect(error?.message.contains(rule) == true, "\(String(describing: error))")
            #expect(error?.message.contains("bucket 'b'") == true)
        }
        #expect(NATSKeyValueConfiguration(bucket: "orders").streamName == "KV_orders")
    }
}

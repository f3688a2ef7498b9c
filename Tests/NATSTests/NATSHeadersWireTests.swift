import Foundation
import Testing

@testable import NATS

/// The header block the module writes and reads itself instead of going through cnats's header
/// maps (NATSHeaders+Wire.swift, Native/NativeInternals.swift).
@Suite("Header blocks on the wire")
struct NATSHeadersWireTests {
    private func encoded(_ headers: NATSHeaders) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: headers.encodedSize) { buffer, count in
            count = headers.encode(into: UnsafeMutableRawBufferPointer(buffer))
        }
    }

    private func parsed(_ text: String) -> NATSHeaders? {
        Array(text.utf8).withUnsafeBytes { NATSHeaders(wireBlock: $0) }
    }

    private static let sample: NATSHeaders = {
        var headers = NATSHeaders()
        headers.add("one", for: "X-Multi")
        headers.add("Nats-Msg-Id", for: "Nats-Msg-Id")
        headers.add("two", for: "X-Multi")
        headers.add("a: b", for: "X-Colon")
        headers.add("héllo wörld ✓", for: "ce-subject")
        headers.add(String(repeating: "v", count: 300), for: "X-Long")
        return headers
    }()

    /// The libnats this project installs (Debian's 3.4.x) has the internals: the fast paths are
    /// the ones the rest of the suite exercises, unless NATS_PUBLIC_API_ONLY=1 turned them off
    /// (`make test` runs the core suites that way too).
    @Test func internalsFollowTheEnvironment() {
        let publicOnly = ProcessInfo.processInfo.environment["NATS_PUBLIC_API_ONLY"] == "1"
        #expect(NativeInternals.isAvailable == !publicOnly)
    }

    /// Whichever path builds it, an outgoing message carries every header, in order per name.
    @Test func outgoingMessageCarriesEveryHeader() throws {
        let message = try Array("x".utf8).withUnsafeBytes { bytes in
            try NativeMessage.makeOutgoing(subject: "wire.any", replyTo: nil, headers: Self.sample, payload: bytes)
        }
        defer { NativeMessage.destroy(message) }
        let back = NativeMessage.headers(of: message)
        for name in Self.sample.names {
            #expect(back.values(for: name) == Self.sample.values(for: name), "header \(name)")
        }
        #expect(back.count == Self.sample.count)
    }

    @Test func encodesTheBlockByteForByte() {
        let headers: NATSHeaders = ["A": "1", "B": "two words"]
        let bytes = encoded(headers)
        #expect(String(decoding: bytes, as: UTF8.self) == "NATS/1.0\r\nA: 1\r\nB: two words\r\n\r\n")
        #expect(bytes.count == headers.encodedSize)
    }

    @Test func readsBackWhatItWrote() {
        let bytes = encoded(Self.sample)
        let back = bytes.withUnsafeBytes { NATSHeaders(wireBlock: $0) }
        #expect(back == Self.sample)
        #expect(back?.values(for: "X-Multi") == ["one", "two"])
    }

    @Test func readsInlineStatusAsCNATSDoes() {
        let noResponders = parsed("NATS/1.0 503\r\n\r\n")
        #expect(noResponders?["Status"] == "503")
        #expect(noResponders?["Description"] == nil)

        let heartbeat = parsed("NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 0\r\nNats-Last-Stream: 42\r\n\r\n")
        #expect(heartbeat?["Status"] == "100")
        #expect(heartbeat?["Description"] == "Idle Heartbeat")
        #expect(heartbeat?["Nats-Last-Stream"] == "42")

        let timeout = parsed("NATS/1.0 408 Request Timeout\r\nNats-Pending-Messages: 5\r\nNats-Pending-Bytes: 640\r\n\r\n")
        #expect(timeout?["Status"] == "408")
        #expect(timeout?["Description"] == "Request Timeout")
        #expect(timeout?["Nats-Pending-Messages"] == "5")
    }

    @Test func trimsValuesAndJoinsFoldedLines() {
        let headers = parsed("NATS/1.0\r\nName:   padded value  \r\nLong: first\r\n  second\r\nEmpty:\r\n\r\n")
        #expect(headers?["Name"] == "padded value")
        #expect(headers?["Long"] == "first second")
        #expect(headers?["Empty"] == "")
        #expect(headers?.count == 3)
    }

    /// Found by fuzzing: each of these read back differently once the headers were sent again,
    /// or differently from the lazy reader.
    @Test func readsEdgeCasesAsTheyAreSentAgain() throws {
        // A folded line onto an empty value: no leading space.
        #expect(parsed("NATS/1.0\r\nA:\r\n\tx\r\n\r\n")?["A"] == "x")
        // Only a space or tab folds a line; a line starting with CR is a field of its own.
        let carriageReturn = try #require(parsed("NATS/1.0\r\n\rA: 1\r\nB: 2\r\n\r\n"))
        #expect(carriageReturn.names == ["\rA", "B"])
        // A status code shorter than three characters loses the blank after it.
        let status = parsed("NATS/1.0 50 ok\r\n\r\n")
        #expect(status?["Status"] == "50")
        #expect(status?["Description"] == "ok")
        // A received name that is not UTF-8 is found by the name the headers list.
        let block: [UInt8] = Array("NATS/1.0\r\n".utf8) + [0xE0] + Array("n: v\r\n\r\n".utf8)
        let lazy = NATSHeaders(simpleBlock: NATSPayload(block))
        let name = try #require(lazy.names.first)
        #expect(lazy[name] == "v")
        #expect(lazy.values(for: name) == ["v"])
    }

    @Test func reservingRoomInReceivedHeadersKeepsTheirFields() throws {
        let block = Array("NATS/1.0\r\nA: 1\r\nB: 2\r\nA: 3\r\n\r\n".utf8)
        var headers = NATSHeaders(simpleBlock: NATSPayload(block))
        headers.reserveCapacity(8)
        headers.add("4", for: "C")
        #expect(headers.map { "\($0.name)=\($0.value)" } == ["A=1", "B=2", "A=3", "C=4"])
        #expect(headers.values(for: "A") == ["1", "3"])
        #expect(parsed(String(decoding: encoded(headers), as: UTF8.self))?.map { "\($0.name)=\($0.value)" } == ["A=1", "B=2", "A=3", "C=4"])
    }

    @Test func refusesWhatIsNotAHeaderBlock() {
        #expect(parsed("HTTP/1.1 200\r\n\r\n") == nil)
        #expect(parsed("NATS/1.0\r\nno colon here\r\n\r\n") == nil)
        #expect(parsed("NATS/1.0\r\nA: 1") == nil)
        #expect(parsed("NATS/1.0\r\n  folded first\r\n\r\n") == nil)
        #expect(parsed("NATS/1.0") == nil)
    }

    /// A message built from the module's block is read the same by cnats's own parser (which
    /// lifts the block into its map) and by the module's in-place reader; this also checks, on
    /// the libnats under test, the message layout the in-place reader relies on.
    @Test(.enabled(if: NativeInternals.isAvailable), arguments: [nil, "_INBOX.reply.subject.1"] as [String?])
    func cnatsReadsTheModulesBlock(reply: String?) throws {
        let payload: [UInt8] = Array("payload bytes".utf8)
        let message = try payload.withUnsafeBytes { bytes in
            try NativeMessage.makeOutgoing(subject: "wire.test", replyTo: reply, headers: Self.sample, payload: bytes)
        }
        defer { NativeMessage.destroy(message) }

        guard case .raw(let block) = NativeInternals.receivedHeaderBlock(of: message) else {
            Issue.record("the block was not found where natsMsg_create puts it")
            return
        }
        #expect(Array(block) == encoded(Self.sample))
        #expect(NativeMessage.headers(of: message) == Self.sample)
        let copied = NativeMessage.copy(message)
        #expect(copied.payload.bytes == payload)
        #expect(copied.replyTo == reply)

        // cnats's parser writes into the block; afterwards the reader must not trust it.
        let throughCNATS = NativeMessage.headersThroughCNATS(of: message)
        for name in Self.sample.names {
            #expect(throughCNATS.values(for: name) == Self.sample.values(for: name), "header \(name)")
        }
        #expect(throughCNATS.count == Self.sample.count)
        guard case .unknown = NativeInternals.receivedHeaderBlock(of: message) else {
            Issue.record("a block cnats parsed was still read in place")
            return
        }
        #expect(NativeMessage.headers(of: message).count == Self.sample.count)
    }

    @Test(.enabled(if: NativeInternals.isAvailable))
    func messageWithoutHeadersHasNoBlock() throws {
        let message = try Array("x".utf8).withUnsafeBytes { bytes in
            try NativeMessage.makeOutgoing(subject: "wire.none", replyTo: "r", headers: NATSHeaders(), payload: bytes)
        }
        defer { NativeMessage.destroy(message) }
        guard case .none = NativeInternals.receivedHeaderBlock(of: message) else {
            Issue.record("a message without headers was given a block")
            return
        }
        #expect(NativeMessage.copy(message).headers.isEmpty)
    }

    // MARK: Received headers kept in wire form

    /// `text` as a received block kept unparsed, or nil when it is not of the simple shape.
    private func lazy(_ text: String) -> NATSHeaders? {
        let bytes = Array(text.utf8)
        guard bytes.withUnsafeBytes({ SimpleBlock.isSimple($0) }) else { return nil }
        return NATSHeaders(simpleBlock: NATSPayload(bytes))
    }

    @Test func acceptsOnlyTheCommonShapeForLazyReading() {
        #expect(lazy("NATS/1.0\r\nA: 1\r\n\r\n") != nil)
        #expect(lazy("NATS/1.0\r\nA:1\r\nEmpty:\r\nB: x: y\r\n\r\n") != nil)
        // A status, a folded line, a stray blank line, no fields, bytes after the end, bare LF,
        // a line without a colon or with an empty name: the full parser (or cnats) reads those.
        #expect(lazy("NATS/1.0 503\r\n\r\n") == nil)
        #expect(lazy("NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Stream: 4\r\n\r\n") == nil)
        #expect(lazy("NATS/1.0\r\nLong: first\r\n  second\r\n\r\n") == nil)
        #expect(lazy("NATS/1.0\r\nA: 1\r\n\r\nB: 2\r\n\r\n") == nil)
        #expect(lazy("NATS/1.0\r\n\r\n") == nil)
        #expect(lazy("NATS/1.0\r\nA: 1\r\n\r\nX") == nil)
        #expect(lazy("NATS/1.0\r\nA: 1\n\r\n") == nil)
        #expect(lazy("NATS/1.0\r\nno colon\r\n\r\n") == nil)
        #expect(lazy("NATS/1.0\r\n: empty name\r\n\r\n") == nil)
        #expect(lazy("NATS/1.0\r\nA: 1\r\n") == nil)
    }

    /// Every reading of a lazily kept block gives what the full parser gives for the same bytes.
    @Test func lazyHeadersReadAsTheFullParserDoes() throws {
        let text = String(decoding: encoded(Self.sample), as: UTF8.self)
            .replacingOccurrences(of: "X-Colon: a: b", with: "X-Colon:\ta: b  ")
        let headers = try #require(lazy(text))
        let full = try #require(parsed(text))
        #expect(headers.block != nil)
        #expect(headers == full && full == headers)
        #expect(headers.hashValue == full.hashValue)
        #expect(headers.count == full.count)
        #expect(headers.names == full.names)
        #expect(headers["X-Colon"] == "a: b")
        #expect(headers["X-Multi"] == "one")
        #expect(headers["x-multi"] == nil)
        #expect(headers["Missing"] == nil)
        #expect(headers.values(for: "X-Multi") == ["one", "two"])
        #expect(headers.encodedSize == full.encodedSize)
        #expect(encoded(headers) == encoded(full))
        #expect(Array(headers.map(\.name)) == Array(full.map(\.name)))
        #expect(Array(headers.map(\.value)) == Array(full.map(\.value)))
        var seen: [String] = []
        headers.forEachFieldBytes { name, value in
            seen.append(String(decoding: name, as: UTF8.self) + "=" + String(decoding: value, as: UTF8.self))
            return seen.count < 2
        }
        #expect(seen == ["X-Multi=one", "Nats-Msg-Id=Nats-Msg-Id"])
    }

    /// Changing lazily kept headers works on the full list and leaves the other fields as read.
    @Test func changingLazyHeadersKeepsTheRest() throws {
        var headers = try #require(lazy("NATS/1.0\r\nA: 1\r\nB: 2\r\nA: 3\r\n\r\n"))
        let original = headers
        headers["A"] = "x"
        #expect(headers.block == nil)
        #expect(headers.values(for: "A") == ["x"])
        #expect(headers["B"] == "2")
        #expect(original.values(for: "A") == ["1", "3"])
        headers.add("4", for: "C")
        headers.removeAll("B")
        #expect(Array(headers.map(\.name)) == ["A", "C"])
        #expect(headers != original)
    }
}


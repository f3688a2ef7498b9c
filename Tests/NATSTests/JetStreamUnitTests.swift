import Foundation
import Testing

@testable import NATS

@Suite("JetStream without a server")
struct JetStreamUnitTests {
    @Test func parsesAckSubjectMetadata() throws {
        let v1 = try #require(NATSJetStreamMessage.Metadata(ackSubject: "$JS.ACK.ORDERS.billing.3.1042.17.1700000000123456789.5"))
        #expect(v1.stream == "ORDERS" && v1.consumer == "billing")
        #expect(v1.deliveryCount == 3 && v1.streamSequence == 1042 && v1.consumerSequence == 17 && v1.pending == 5)
        #expect(v1.domain == nil)
        #expect(abs(v1.timestamp.timeIntervalSince1970 - 1_700_000_000.123) < 0.001)
        let v2 = try #require(
            NATSJetStreamMessage.Metadata(ackSubject: "$JS.ACK.hub.ACCHASH.ORDERS.billing.1.7.7.1700000000000000000.0.rnd"))
        #expect(v2.domain == "hub" && v2.stream == "ORDERS" && v2.streamSequence == 7)
        #expect(NATSJetStreamMessage.Metadata(ackSubject: "_INBOX.abc") == nil)
        #expect(NATSJetStreamMessage.Metadata(ackSubject: "$JS.ACK.S.C.x.1.1.1.1") == nil)
        // The domain "_" means none; ten tokens are neither form; numbers must fit and be digits.
        let noDomain = try #require(
            NATSJetStreamMessage.Metadata(ackSubject: "$JS.ACK._.ACCHASH.ORDERS.billing.2.8.9.1700000000000000000.4.rnd"))
        #expect(noDomain.domain == nil)
        #expect(noDomain.deliveryCount == 2 && noDomain.streamSequence == 8 && noDomain.consumerSequence == 9 && noDomain.pending == 4)
        #expect(NATSJetStreamMessage.Metadata(ackSubject: "$JS.ACK.hub.ACCHASH.ORDERS.billing.1.7.7.1700000000000000000") == nil)
        #expect(NATSJetStreamMessage.Metadata(ackSubject: "$JS.ACK.S.C.1.99999999999999999999.1.1.1") == nil)
        // The largest sequence fits (twenty digits take the checked path), one more does not.
        #expect(NATSJetStreamMessage.Metadata(ackSubject: "$JS.ACK.S.C.1.18446744073709551615.1.1.1")?.streamSequence == .max)
        #expect(NATSJetStreamMessage.Metadata(ackSubject: "$JS.ACK.S.C.1.18446744073709551616.1.1.1") == nil)
        #expect(NATSJetStreamMessage.Metadata(ackSubject: "$JS.ACK.S.C.1.9999999999999999999.1.1.1")?.streamSequence == 9_999_999_999_999_999_999)
        #expect(NATSJetStreamMessage.Metadata(ackSubject: "$JS.ACK.S.C.1..1.1.1") == nil)
        #expect(NATSJetStreamMessage.Metadata(ackSubject: "$JS.NAK.S.C.1.1.1.1.1") == nil)
        #expect(NATSJetStreamMessage.Metadata(ackSubject: "$JS.ACK.S.C.1.1.1.1.1")?.timestamp == Date(timeIntervalSince1970: 1e-9))
    }

    /// The numbers-only parse (used per message by the EventBus) reads the same numbers as the
    /// full one and refuses the same subjects.
    @Test func numbersOnlyParseAgreesWithTheFullOne() {
        let subjects = [
            "$JS.ACK.ORDERS.billing.3.1042.17.1700000000123456789.5",
            "$JS.ACK.hub.ACCHASH.ORDERS.billing.1.7.7.1700000000000000000.0.rnd",
            "$JS.ACK._.ACCHASH.ORDERS.billing.2.8.9.1700000000000000000.4.rnd",
            "$JS.ACK.S.C.1..1.1.1", "$JS.NAK.S.C.1.1.1.1.1", "_INBOX.abc",
        ]
        for subject in subjects {
            var bytes = subject
            let (full, numbers) = bytes.withUTF8 {
                (NATSJetStreamMessage.Metadata.parse($0), NATSJetStreamMessage.Metadata.parse($0, names: false))
            }
            #expect(full?.streamSequence == numbers?.streamSequence, "\(subject)")
            #expect(full?.deliveryCount == numbers?.deliveryCount, "\(subject)")
            #expect((full == nil) == (numbers == nil), "\(subject)")
            #expect(numbers?.stream ?? "" == "" && numbers?.consumer ?? "" == "")
        }
    }

    @Test func parsesPublishAcks() throws {
        let ack = try NATSPublishAck.parse(NATSPayload(#"{"stream":"ORDERS","seq":42,"duplicate":true}"#), subject: "o.1")
        #expect(ack == NATSPublishAck(stream: "ORDERS", sequence: 42, duplicate: true))
        let plain = try NATSPublishAck.parse(NATSPayload(#"{"stream":"S", "seq": 7}"#), subject: "o.1")
        #expect(plain.sequence == 7 && !plain.duplicate)
        let error = #expect(throws: NATSError.self) {
            try NATSPublishAck.parse(
                NATSPayload(#"{"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 3"}}"#), subject: "o.1")
        }
        #expect(error?.code == .jetStream)
        #expect(error?.jetStreamErrorCode == NATSJetStreamErrorCode.wrongLastSequence)
        #expect(error?.message.contains("wrong last sequence: 3") == true)
        #expect(throws: NATSError.self) { try NATSPublishAck.parse(NATSPayload("nonsense"), subject: "o.1") }
        // A domain, and a key's name inside a value is not the key.
        let withDomain = try NATSPublishAck.parse(
            NATSPayload(#"{"stream":"seq","seq":9,"domain":"hub"}"#), subject: "o.1")
        #expect(withDomain == NATSPublishAck(stream: "seq", sequence: 9, duplicate: false, domain: "hub"))
        let escaped = #expect(throws: NATSError.self) {
            try NATSPublishAck.parse(
                NATSPayload(#"{"error":{"code":503,"description":"no \"responders\" here"}}"#), subject: "o.1")
        }
        #expect(escaped?.message.contains(#"no "responders" here"#) == true)
        #expect(escaped?.isRetriable == true)
    }

    /// Found by fuzzing: a negative sequence trapped, a too long one wrapped around.
    @Test(arguments: [#"{"stream":"S","seq":-1}"#, #"{"stream":"S","seq":99999999999999999999}"#])
    func refusesSequencesThatAreNoSequence(json: String) {
        let error = #expect(throws: NATSError.self) { try NATSPublishAck.parse(NATSPayload(json), subject: "o.1") }
        #expect(error?.code == .serverError)
    }

    @Test(arguments: ["", "a.b", "a*", "a>", "a b", "a/b", "tab\there"])
    func rejectsBadNames(name: String) {
        let error = #expect(throws: NATSError.self) { try NATSJetStream.validateName(name, what: "stream name") }
        #expect(error?.code == .invalidName)
    }

    @Test func streamConfigurationRules() throws {
        var configuration = NATSStreamConfiguration(name: "ORDERS", subjects: ["orders.>"])
        try configuration.validate()
        configuration.subjects = []
        #expect(throws: NATSError.self) { try configuration.validate() }
        configuration.subjects = ["orders..x"]
        #expect(throws: NATSError.self) { try configuration.validate() }
        configuration.subjects = ["orders.>"]
        configuration.replicas = 7
        let error = #expect(throws: NATSError.self) { try configuration.validate() }
        #expect(error?.message.contains("replicas 7") == true)
        configuration.replicas = 3
        configuration.maxMessages = 0
        #expect(throws: NATSError.self) { try configuration.validate() }
    }

    @Test func consumerConfigurationRulesAndJSON() throws {
        var configuration = NATSConsumerConfiguration(durableName: "billing")
        configuration.filterSubjects = ["orders.created", "orders.paid"]
        configuration.backoff = [.seconds(1), .seconds(5)]
        configuration.maxDeliver = 5
        configuration.deliverPolicy = .byStartSequence(10)
        try configuration.validate()
        let json = String(decoding: try JetStreamAPI.makeEncoder().encode(configuration), as: UTF8.self)
        #expect(json.contains(#""filter_subjects":["orders.created","orders.paid"]"#))
        #expect(json.contains(#""backoff":[1000000000,5000000000]"#))
        #expect(json.contains(#""deliver_policy":"by_start_sequence""#))
        #expect(json.contains(#""opt_start_seq":10"#))
        #expect(json.contains(#""durable_name":"billing""#))
        let decoded = try JSONDecoder().decode(NATSConsumerConfiguration.self, from: Data(json.utf8))
        #expect(decoded.differences(from: configuration).isEmpty)

        configuration.maxDeliver = 2
        let backoffError = #expect(throws: NATSError.self) { try configuration.validate() }
        #expect(backoffError?.message.contains("backoff") == true)
        var push = NATSConsumerConfiguration(durableName: "p")
        push.deliverGroup = "g"
        #expect(throws: NATSError.self) { try push.validate() }
        push.deliverSubject = "deliver.p"
        push.flowControl = true
        #expect(throws: NATSError.self) { try push.validate() }
        push.idleHeartbeat = .seconds(5)
        try push.validate()
    }

    @Test func classifiesStatusMessages() {
        func status(_ code: String, _ description: String = "", reply: String? = nil, extra: [(String, String)] = []) -> JetStreamStatus? {
            var headers = NATSHeaders([("Status", code), ("Description", description)])
            for (name, value) in extra { headers.add(value, for: name) }
            return JetStreamStatus(NATSMessage(subject: "_INBOX.x", replyTo: reply, headers: headers, payload: NATSPayload()))
        }
        if case .flowControl(let reply)? = status("100", "FlowControl Request", reply: "fc.reply") {
            #expect(reply == "fc.reply")
        } else {
            Issue.record("flow control not recognised")
        }
        if case .heartbeat(let stalled)? = status("100", "Idle Heartbeat", extra: [("Nats-Consumer-Stalled", "fc.2")]) {
            #expect(stalled == "fc.2")
        } else {
            Issue.record("heartbeat not recognised")
        }
        if case .requestTimeout(let pending)? = status("408", "Request Timeout", extra: [("Nats-Pending-Messages", "12")]) {
            #expect(pending == 12)
        } else {
            Issue.record("408 not recognised")
        }
        #expect(JetStreamStatus(NATSMessage(subject: "a", payload: NATSPayload("data"))) == nil)
    }

    /// Ack records share their slab with payloads and with each other: writing many more
    /// messages (past several slabs) leaves an early record's subject and state intact, copies
    /// share the state, and a released claim can be claimed again.
    @Test func acknowledgementRecordsLiveInTheSlabs() throws {
        var slabs = PayloadSlabWriter()
        func record(_ subject: String) -> MessageAcknowledgement {
            var subject = subject
            return subject.withUTF8 { MessageAcknowledgement(subject: UnsafeRawBufferPointer($0), slabs: &slabs) }
        }
        let firstSubject = "$JS.ACK.ORDERS.billing.1.1.1.1700000000000000000.4999"
        let first = record(firstSubject)
        let payload = [UInt8](repeating: 7, count: 128)
        var later: [(MessageAcknowledgement, NATSPayload)] = []
        for index in 2...5_000 {
            let acknowledgement = record("$JS.ACK.ORDERS.billing.1.\(index).\(index).1700000000000000000.\(5_000 - index)")
            later.append((acknowledgement, payload.withUnsafeBytes { slabs.copy($0) }))
        }
        #expect(first.subject == firstSubject)
        #expect(first.isJetStreamAck && !first.isDone)
        let copy = first
        #expect(first.claim(.ack) == nil)
        #expect(copy.isDone)
        #expect(copy.claim(.nak) == .ack)
        first.release()
        #expect(!copy.isDone)
        #expect(copy.claim(.term) == nil)
        #expect(first.claim(.ack) == .term)
        // The neighbours were not touched by the state changes, nor by each other.
        for (offset, (acknowledgement, bytes)) in later.enumerated() {
            let index = offset + 2
            #expect(acknowledgement.subject == "$JS.ACK.ORDERS.billing.1.\(index).\(index).1700000000000000000.\(5_000 - index)")
            #expect(!acknowledgement.isDone)
            #expect(bytes.bytes == payload)
        }
        // The subject reaches cnats NUL-terminated.
        #expect(first.withSubjectCString { String(cString: $0.assumingMemoryBound(to: CChar.self)) } == firstSubject)
        // A subject that is a string already gets a record of its own; one that is not an ack
        // subject (a request's inbox) is kept the same way.
        let inbox = MessageAcknowledgement(subject: "_INBOX.abcdefghijklmnopqrstuv.7")
        #expect(inbox.subject == "_INBOX.abcdefghijklmnopqrstuv.7" && !inbox.isJetStreamAck)
        #expect(!MessageAcknowledgement(subject: "$JS.ACK.").isJetStreamAck)
        // A push consumer's flow-control request is answered (not nak'ed) when handed back.
        let flowControl = MessageAcknowledgement(subject: "$JS.FC.EVENTS.workers.3kA9")
        #expect(flowControl.isFlowControl && !flowControl.isJetStreamAck)
        #expect(!inbox.isFlowControl && !first.isFlowControl)
        #expect(!MessageAcknowledgement(subject: "$JS.FC.").isFlowControl)
    }
}

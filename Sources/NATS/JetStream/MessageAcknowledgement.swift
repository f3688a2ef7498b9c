import Synchronization

/// The reply (ack) subject of one received message and whether a final action (ack, nak, term)
/// was taken on it, stored as a record `[state byte][subject bytes][NUL]` in the payload slab
/// the delivery thread copies the message into.
///
/// Why in the slab: copies of a message must share the state (a second ack on a copy has to
/// fail), so the state needs one home per message. A class per message was one allocation and
/// the ack subject (longer than a small string) a second one; the slab is already shared,
/// reference counted and kept alive by the payload, so the record costs only its bytes. The
/// state byte is a Synchronization `Atomic<UInt8>` initialised in place in the slab's memory (an
/// `Atomic` may live in memory reached through a pointer as long as it never moves, and slab
/// memory never moves), which keeps the atomics in Swift instead of a C helper. The trailing NUL
/// lets cnats read the subject as a C string, so an ack builds no `String`.
struct MessageAcknowledgement: @unchecked Sendable {
    // @unchecked: PayloadStorage (a ManagedBuffer) cannot be Sendable. The subject bytes are
    // written once, before the record is handed over through the subscription buffer's lock, and
    // never written again; the state byte is only touched through its `Atomic`.

    enum Action: UInt8, CustomStringConvertible {
        case ack = 1
        case nak = 2
        case term = 3

        var description: String {
            switch self {
            case .ack: "ack"
            case .nak: "nak"
            case .term: "term"
            }
        }
    }

    private let storage: PayloadStorage
    /// Where the state byte is; the subject follows it.
    private let offset: Int
    /// The subject's length in bytes (without the NUL).
    let count: Int

    /// Writes a record for `subject` (the reply subject's bytes, no NUL) into the slabs. Called on
    /// the delivery thread; costs no allocation unless a slab fills up.
    init(subject: UnsafeRawBufferPointer, slabs: inout PayloadSlabWriter) {
        let (storage, offset) = slabs.reserve(subject.count + 2)
        self.init(subject: subject, storage: storage, offset: offset)
    }

    /// A record of its own for a subject that is already a `String` (one allocation).
    init(subject: String) {
        var subject = subject
        let count = subject.utf8.count
        self = subject.withUTF8 { bytes in
            MessageAcknowledgement(
                subject: UnsafeRawBufferPointer(bytes), storage: PayloadStorage.make(capacity: count + 2), offset: 0)
        }
    }

    private init(subject: UnsafeRawBufferPointer, storage: PayloadStorage, offset: Int) {
        self.storage = storage
        self.offset = offset
        count = subject.count
        storage.withUnsafeMutablePointerToElements { elements in
            let record = UnsafeMutableRawPointer(elements + offset)
            record.bindMemory(to: Atomic<UInt8>.self, capacity: 1).initialize(to: Atomic(0))
            if let source = subject.baseAddress { (record + 1).copyMemory(from: source, byteCount: subject.count) }
            record.storeBytes(of: 0, toByteOffset: subject.count + 1, as: UInt8.self)
        }
    }

    /// Runs `body` on the state byte, in place.
    @inline(__always)
    private func withState<Result>(_ body: (borrowing Atomic<UInt8>) -> Result) -> Result {
        storage.withUnsafeMutablePointerToElements { elements in
            body(UnsafeMutableRawPointer(elements + offset).assumingMemoryBound(to: Atomic<UInt8>.self).pointee)
        }
    }

    var isDone: Bool { withState { $0.load(ordering: .relaxed) != 0 } }

    /// Marks the final action; returns the earlier one if there was one.
    func claim(_ action: Action) -> Action? {
        withState { state in
            let (exchanged, original) = state.compareExchange(
                expected: 0, desired: action.rawValue, ordering: .acquiringAndReleasing)
            return exchanged ? nil : Action(rawValue: original)
        }
    }

    /// Undoes a claim whose message could not be sent.
    func release() {
        withState { $0.store(0, ordering: .releasing) }
    }

    /// The subject's bytes (without the NUL); valid only inside `body`.
    func withSubjectBytes<Result>(_ body: (UnsafeBufferPointer<UInt8>) -> Result) -> Result {
        storage.withUnsafeMutablePointerToElements { elements in
            body(UnsafeBufferPointer(start: elements + offset + 1, count: count))
        }
    }

    /// The subject's bytes followed by a NUL, for cnats; valid only inside `body`.
    func withSubjectCString<Result>(_ body: (UnsafeRawPointer) -> Result) -> Result {
        storage.withUnsafeMutablePointerToElements { elements in body(UnsafeRawPointer(elements + offset + 1)) }
    }

    /// The subject as a string (built on each call).
    var subject: String { withSubjectBytes { String(decoding: $0, as: UTF8.self) } }

    /// Whether the subject is a JetStream ack subject (`$JS.ACK.…`), read from its bytes.
    var isJetStreamAck: Bool {
        withSubjectBytes { bytes in
            bytes.count > 8 && bytes[0] == UInt8(ascii: "$") && bytes[1] == UInt8(ascii: "J") && bytes[2] == UInt8(ascii: "S")
                && bytes[3] == UInt8(ascii: ".") && bytes[4] == UInt8(ascii: "A") && bytes[5] == UInt8(ascii: "C")
                && bytes[6] == UInt8(ascii: "K") && bytes[7] == UInt8(ascii: ".")
        }
    }

    /// Whether the subject is a push consumer's flow-control reply subject (`$JS.FC.…`): the
    /// server stops delivering to the consumer until a message is published to it.
    var isFlowControl: Bool {
        withSubjectBytes { bytes in
            bytes.count > 7 && bytes[0] == UInt8(ascii: "$") && bytes[1] == UInt8(ascii: "J") && bytes[2] == UInt8(ascii: "S")
                && bytes[3] == UInt8(ascii: ".") && bytes[4] == UInt8(ascii: "F") && bytes[5] == UInt8(ascii: "C")
                && bytes[6] == UInt8(ascii: ".")
        }
    }

    static func noReply(subject: String) -> NATSError {
        NATSError(.invalidArgument, "message on '\(subject)' has no ack subject (its consumer does not use acks)")
    }
}

/// The bytes of a message: an immutable, `Sendable` collection of `UInt8`.
///
/// Received payloads are copied out of cnats into shared 64 KiB slabs, so that receiving a
/// message costs no heap allocation of its own (a slab is freed when the last payload in it is
/// released). Keep in mind that holding on to one small payload for a long time keeps its slab
/// alive: copy it with ``bytes`` if you store it.
public struct NATSPayload: @unchecked Sendable, RandomAccessCollection, Hashable, ExpressibleByArrayLiteral,
    CustomStringConvertible
{
    // @unchecked: the storage is a ManagedBuffer (which cannot be Sendable), but the bytes a
    // payload refers to are written once, before the payload is published through a lock, and
    // never written again.
    public typealias Index = Int
    public typealias Element = UInt8

    @usableFromInline let storage: PayloadStorage?
    @usableFromInline let offset: Int
    /// The number of bytes.
    public let count: Int

    @inlinable
    init(storage: PayloadStorage?, offset: Int, count: Int) {
        self.storage = storage
        self.offset = offset
        self.count = count
    }

    /// An empty payload.
    public init() { self.init(storage: nil, offset: 0, count: 0) }

    /// Creates a payload holding a copy of the given bytes.
    public init(_ bytes: some Sequence<UInt8>) {
        let array = Array(bytes)
        self = array.withUnsafeBytes { NATSPayload(copying: $0) }
    }

    /// Creates a payload holding the UTF-8 bytes of a string.
    public init(_ string: String) {
        var string = string
        self = string.withUTF8 { NATSPayload(copying: UnsafeRawBufferPointer($0)) }
    }

    /// Creates a payload from an array literal of bytes.
    public init(arrayLiteral elements: UInt8...) { self.init(elements) }

    /// Creates a payload holding a copy of raw bytes (one allocation).
    public init(copying bytes: UnsafeRawBufferPointer) {
        guard !bytes.isEmpty else {
            self.init()
            return
        }
        let storage = PayloadStorage.make(capacity: bytes.count)
        storage.write(bytes, at: 0)
        self.init(storage: storage, offset: 0, count: bytes.count)
    }

    @inlinable public var startIndex: Int { 0 }
    @inlinable public var endIndex: Int { count }

    @inlinable
    public subscript(position: Int) -> UInt8 {
        precondition(position >= 0 && position < count, "NATSPayload index out of range")
        return storage!.withUnsafeMutablePointerToElements { $0[offset + position] }
    }

    /// Calls `body` with the bytes; the pointer is valid only inside `body`.
    @inlinable
    public func withUnsafeBytes<Result>(_ body: (UnsafeRawBufferPointer) throws -> Result) rethrows -> Result {
        guard let storage else { return try body(UnsafeRawBufferPointer(start: nil, count: 0)) }
        return try storage.withUnsafeMutablePointerToElements { elements in
            try body(UnsafeRawBufferPointer(start: elements + offset, count: count))
        }
    }

    /// Fast path for algorithms that can use contiguous storage.
    public func withContiguousStorageIfAvailable<Result>(
        _ body: (UnsafeBufferPointer<UInt8>) throws -> Result
    ) rethrows -> Result? {
        try withUnsafeBytes { try body($0.bindMemory(to: UInt8.self)) }
    }

    /// A copy of the bytes as an array (not backed by a shared slab).
    public var bytes: [UInt8] { withUnsafeBytes { Array($0) } }

    /// The bytes decoded as UTF-8 (invalid sequences are replaced).
    public var string: String { withUnsafeBytes { String(decoding: $0, as: UTF8.self) } }

    public var description: String { "NATSPayload(\(count) bytes)" }

    public static func == (lhs: NATSPayload, rhs: NATSPayload) -> Bool {
        guard lhs.count == rhs.count else { return false }
        return lhs.withUnsafeBytes { left in rhs.withUnsafeBytes { right in left.elementsEqual(right) } }
    }

    public func hash(into hasher: inout Hasher) {
        withUnsafeBytes { hasher.combine(bytes: $0) }
    }
}

/// Tail-allocated byte storage: one heap allocation holds the object header and the bytes.
@usableFromInline
final class PayloadStorage: ManagedBuffer<Int, UInt8> {

    static func make(capacity: Int) -> PayloadStorage {
        let buffer = PayloadStorage.create(minimumCapacity: capacity) { _ in capacity }
        return unsafeDowncast(buffer, to: PayloadStorage.self)
    }

    func write(_ bytes: UnsafeRawBufferPointer, at offset: Int) {
        withUnsafeMutablePointerToElements { elements in
            UnsafeMutableRawPointer(elements + offset).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
        }
    }
}

/// Copies received payloads into shared slabs. Used by one delivery thread at a time.
struct PayloadSlabWriter {
    /// Bytes per slab; a payload larger than an eighth of this gets an allocation of its own.
    static let slabSize = 64 * 1024

    private var slab: PayloadStorage?
    private var used = 0

    init() {}

    mutating func copy(_ bytes: UnsafeRawBufferPointer) -> NATSPayload {
        let count = bytes.count
        if count == 0 { return NATSPayload() }
        let (storage, offset) = reserve(count)
        storage.write(bytes, at: offset)
        return NATSPayload(storage: storage, offset: offset, count: count)
    }

    /// Room for `count` (at least 1) bytes that the caller writes at once: in the current slab, in
    /// a new one when it is full, or in an allocation of its own above an eighth of a slab.
    mutating func reserve(_ count: Int) -> (storage: PayloadStorage, offset: Int) {
        if count > Self.slabSize / 8 { return (PayloadStorage.make(capacity: count), 0) }
        if slab == nil || used + count > Self.slabSize {
            slab = PayloadStorage.make(capacity: Self.slabSize)
            used = 0
        }
        let offset = used
        used += count
        return (slab!, offset)
    }
}

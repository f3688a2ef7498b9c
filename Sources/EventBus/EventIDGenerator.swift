#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// Random version-4 UUID strings that nobody can predict, without a system call per id.
///
/// An event id is the key of duplicate suppression (JetStream's `Nats-Msg-Id`, the in-memory
/// bus's window): whoever could compute the next ids could publish them first and have the real
/// events dropped as duplicates. So every id is 16 bytes of the operating system's
/// cryptographically secure generator (`getentropy`, that is `getrandom(2)`, on Linux;
/// `arc4random_buf` on Darwin) with the version and variant bits set; a seeded
/// non-cryptographic generator would give its state away in a few ids. The bytes are read
/// 4 KiB at a time, so one refill serves 256 ids.
struct EventIDGenerator {
    /// Fills a buffer with random bytes.
    typealias ByteSource = @Sendable (UnsafeMutableRawBufferPointer) -> Void

    /// Bytes read from the source at a time: 256 ids.
    static let bufferSize = 4096

    private var buffer: [UInt8]
    private var position: Int
    private let source: ByteSource

    /// A generator over the operating system's secure random bytes.
    init() {
        self.init(source: Self.systemRandomBytes)
    }

    /// A generator over `source`, which must fill each buffer it is given completely.
    init(source: @escaping ByteSource) {
        self.source = source
        buffer = [UInt8](repeating: 0, count: Self.bufferSize)
        // Empty: the first id fills the buffer, so creating the generator costs nothing.
        position = Self.bufferSize
    }

    /// The next id: 8-4-4-4-12 upper-case hexadecimal digits of 16 random bytes in order, with
    /// version 4 in byte 6 and variant 10 in byte 8.
    mutating func next() -> String {
        if position == buffer.count {
            let source = self.source
            buffer.withUnsafeMutableBytes { source($0) }
            position = 0
        }
        let (first, second) = buffer.withUnsafeBytes { bytes in
            (
                UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: position, as: UInt64.self)),
                UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: position + 8, as: UInt64.self))
            )
        }
        position += 16
        let high = (first & 0xFFFF_FFFF_FFFF_0FFF) | 0x0000_0000_0000_4000
        let low = (second & 0x3FFF_FFFF_FFFF_FFFF) | 0x8000_0000_0000_0000
        return String(unsafeUninitializedCapacity: 36) { buffer in
            var position = 0
            func put(_ value: UInt64, digits: Int) {
                for index in stride(from: digits - 1, through: 0, by: -1) {
                    let nibble = UInt8(truncatingIfNeeded: value >> (UInt64(index) * 4)) & 0xF
                    buffer[position] = nibble < 10 ? UInt8(ascii: "0") + nibble : UInt8(ascii: "A") + nibble - 10
                    position += 1
                }
            }
            func dash() {
                buffer[position] = UInt8(ascii: "-")
                position += 1
            }
            put(high >> 32, digits: 8)
            dash()
            put(high >> 16, digits: 4)
            dash()
            put(high, digits: 4)
            dash()
            put(low >> 48, digits: 4)
            dash()
            put(low, digits: 12)
            return position
        }
    }

    /// Fills `buffer` from the operating system's secure generator.
    ///
    /// On Linux `getentropy` is `getrandom(2)` with flags 0 (it waits only until the kernel's
    /// generator is seeded, early in boot) for at most 256 bytes a call, and retries interrupted
    /// and short reads itself. Where it fails (a kernel before 3.17 has no `getrandom`, a seccomp
    /// policy may forbid it), the rest comes from `SystemRandomNumberGenerator`, also secure.
    static func systemRandomBytes(_ buffer: UnsafeMutableRawBufferPointer) {
        var filled = 0
        #if canImport(Glibc)
        while filled < buffer.count {
            let length = min(256, buffer.count - filled)
            if getentropy(buffer.baseAddress! + filled, length) == 0 {
                filled += length
            } else if errno != EINTR {
                break
            }
        }
        #elseif canImport(Darwin)
        arc4random_buf(buffer.baseAddress!, buffer.count)
        filled = buffer.count
        #endif
        var random = SystemRandomNumberGenerator()
        while filled < buffer.count {
            let word = random.next()
            let length = min(8, buffer.count - filled)
            withUnsafeBytes(of: word) { bytes in
                (buffer.baseAddress! + filled).copyMemory(from: bytes.baseAddress!, byteCount: length)
            }
            filled += length
        }
    }

    /// The process's generator.
    static let shared = Mutex(EventIDGenerator())
}

import Synchronization

/// Unique 22-character base-62 tokens (message ids, inboxes) at the cost of a counter step.
///
/// The NUID scheme that NATS clients use: 12 characters of prefix drawn from the system's secure
/// random source, then 10 characters of a counter that starts at a random value and grows by a
/// random step (33 to 332); when the counter runs out, a new prefix is drawn. Tokens of one
/// generator never repeat, and two generators collide only if their 71-bit random prefixes do.
/// Drawing all 22 characters from the system source instead costs three `getrandom` system calls
/// per token, which was most of the cost of an asynchronous JetStream publish's generated id.
struct UniqueTokenGenerator {
    static let length = 22
    private static let prefixLength = 12
    private static let counterLength = 10
    private static let base: UInt64 = 62
    /// 62^10: the counter's range.
    private static let counterLimit: UInt64 = 839_299_365_868_340_224
    private static let alphabet: StaticString = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

    private var prefix: (UInt64, UInt64) = (0, 0)
    private var counter: UInt64 = 0
    private var step: UInt64 = 0

    init() {
        reseed()
    }

    /// The next token.
    mutating func next() -> String {
        counter &+= step
        if counter >= Self.counterLimit { reseed() }
        let prefix = self.prefix
        let counter = self.counter
        return String(unsafeUninitializedCapacity: Self.length) { buffer in
            withUnsafeBytes(of: prefix) { bytes in
                for index in 0..<Self.prefixLength { buffer[index] = bytes[index] }
            }
            var value = counter
            for index in stride(from: Self.length - 1, through: Self.prefixLength, by: -1) {
                buffer[index] = Self.character(Int(value % Self.base))
                value /= Self.base
            }
            return Self.length
        }
    }

    private mutating func reseed() {
        var random = SystemRandomNumberGenerator()
        var bytes: (UInt64, UInt64) = (0, 0)
        withUnsafeMutableBytes(of: &bytes) { raw in
            for index in 0..<Self.prefixLength {
                raw[index] = Self.character(Int(random.next(upperBound: Self.base)))
            }
        }
        prefix = bytes
        counter = random.next(upperBound: Self.counterLimit)
        step = 33 + random.next(upperBound: 300)
    }

    private static func character(_ index: Int) -> UInt8 {
        alphabet.withUTF8Buffer { $0[index] }
    }

    /// A generator shared by the process, for callers without one of their own.
    static let shared = Mutex(UniqueTokenGenerator())
}

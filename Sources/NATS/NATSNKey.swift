/// The text forms of NATS NKeys (Ed25519 keys): seeds (`SU…`) and public keys (`U…`), as nats-server
/// and `nsc` write them: a type prefix, the 32 key bytes and a CRC-16, in base32 without padding.
///
/// Used to check a seed before it is used (so that a wrong file or value fails with a clear error
/// before anything is sent) and to derive the public key a seed belongs to. Seeds are secrets:
/// nothing here puts one into an error message or a description.
package struct NATSNKey: Sendable {
    /// What a key identifies; the first letter of its public key.
    package enum Kind: UInt8, Sendable, CaseIterable {
        case user = 160  // 'U'
        case account = 0  // 'A'
        case server = 104  // 'N'
        case cluster = 16  // 'C'
        case `operator` = 112  // 'O'

        var letter: Character {
            switch self {
            case .user: "U"
            case .account: "A"
            case .server: "N"
            case .cluster: "C"
            case .operator: "O"
            }
        }
    }

    private static let seedPrefix: UInt8 = 18 << 3  // 'S'

    /// The kind the seed's public key has.
    package let kind: Kind
    /// The 32-byte Ed25519 private key seed.
    package let seed: [UInt8]

    /// Decodes a seed (`SU…` for a user); throws `.invalidConfiguration` naming `source`, never
    /// the value.
    package init(seed text: some StringProtocol, source: String) throws(NATSError) {
        func fail(_ rule: String) -> NATSError {
            NATSError(.invalidConfiguration, "\(source) is not a valid NKey seed: \(rule)")
        }
        guard text.hasPrefix("S") else { throw fail("a seed starts with 'S' (for example 'SU…' for a user)") }
        guard let raw = NATSNKey.base32Decode(text.utf8), raw.count == 36 else {
            throw fail("it is not 58 base32 characters")
        }
        guard NATSNKey.crc16(raw[0..<34]) == UInt16(raw[34]) | UInt16(raw[35]) << 8 else {
            throw fail("its checksum does not match (a character is wrong or missing)")
        }
        guard raw[0] & 0b1111_1000 == NATSNKey.seedPrefix else { throw fail("its prefix is not a seed's") }
        let kindByte = (raw[0] & 0b0000_0111) << 5 | (raw[1] & 0b1111_1000) >> 3
        guard let kind = Kind(rawValue: kindByte) else { throw fail("its key type is unknown") }
        self.kind = kind
        self.seed = Array(raw[2..<34])
    }

    /// Wraps raw seed bytes (32), for tests and key generation.
    package init(kind: Kind, seed: [UInt8]) {
        precondition(seed.count == 32, "an Ed25519 seed is 32 bytes")
        self.kind = kind
        self.seed = seed
    }

    /// The seed's text form (`SU…`). A secret: never log it.
    package var encodedSeed: String {
        var raw: [UInt8] = [NATSNKey.seedPrefix | kind.rawValue >> 5, (kind.rawValue & 0b0001_1111) << 3]
        raw += seed
        return NATSNKey.encode(raw)
    }

    /// Encodes a public key of this kind (`U…` for a user).
    package func encodePublicKey(_ key: [UInt8]) -> String {
        NATSNKey.encode([kind.rawValue] + key)
    }

    /// Whether `text` looks like a public key of `kind`: the letter, the length and the checksum.
    package static func isPublicKey(_ text: some StringProtocol, kind: Kind) -> Bool {
        guard text.first == kind.letter, let raw = base32Decode(text.utf8), raw.count == 35, raw[0] == kind.rawValue else {
            return false
        }
        return crc16(raw[0..<33]) == UInt16(raw[33]) | UInt16(raw[34]) << 8
    }

    private static func encode(_ raw: [UInt8]) -> String {
        let crc = crc16(raw[...])
        return base32Encode(raw + [UInt8(crc & 0xFF), UInt8(crc >> 8)])
    }

    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567".utf8)

    /// RFC 4648 base32, no padding.
    package static func base32Encode(_ bytes: [UInt8]) -> String {
        var output: [UInt8] = []
        output.reserveCapacity((bytes.count * 8 + 4) / 5)
        var buffer: UInt32 = 0
        var bits = 0
        for byte in bytes {
            buffer = buffer << 8 | UInt32(byte)
            bits += 8
            while bits >= 5 {
                output.append(alphabet[Int(buffer >> UInt32(bits - 5) & 31)])
                bits -= 5
            }
        }
        if bits > 0 { output.append(alphabet[Int(buffer << UInt32(5 - bits) & 31)]) }
        return String(decoding: output, as: UTF8.self)
    }

    /// RFC 4648 base32 without padding, or `nil` on a character outside the alphabet.
    package static func base32Decode(_ text: some Collection<UInt8>) -> [UInt8]? {
        var output: [UInt8] = []
        output.reserveCapacity(text.count * 5 / 8)
        var buffer: UInt32 = 0
        var bits = 0
        for character in text {
            let value: UInt8
            switch character {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"): value = character - UInt8(ascii: "A")
            case UInt8(ascii: "2")...UInt8(ascii: "7"): value = character - UInt8(ascii: "2") + 26
            default: return nil
            }
            buffer = (buffer << 5 | UInt32(value)) & 0xFFFF
            bits += 5
            if bits >= 8 {
                output.append(UInt8(truncatingIfNeeded: buffer >> UInt32(bits - 8)))
                bits -= 8
            }
        }
        return output
    }

    /// CRC-16/XMODEM (polynomial 0x1021, initial 0), as NKeys use it.
    package static func crc16(_ bytes: ArraySlice<UInt8>) -> UInt16 {
        var crc: UInt16 = 0
        for byte in bytes {
            crc ^= UInt16(byte) << 8
            for _ in 0..<8 {
                crc = crc & 0x8000 != 0 ? crc << 1 ^ 0x1021 : crc << 1
            }
        }
        return crc
    }
}

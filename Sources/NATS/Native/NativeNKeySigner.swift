import CNATS

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Signs the server's nonce with an NKey seed held in memory (Ed25519, OpenSSL's libcrypto), for
/// seeds given as values rather than files. The seed lives only in this object, and its bytes are
/// wiped when the object goes away.
final class NativeNKeySigner: @unchecked Sendable {
    // @unchecked: immutable after init; the key is only read (OpenSSL's EVP_PKEY is safe to use
    // for signing from several threads, each with its own digest context).
    private let key: OpaquePointer
    /// The public key, encoded (`U…`).
    let publicKey: String

    init(_ nkey: NATSNKey) throws(NATSError) {
        var seed = nkey.seed
        defer { OPENSSL_cleanse(&seed, seed.count) }
        guard let key = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nil, seed, seed.count) else {
            throw NATSError(.invalidConfiguration, "the NKey seed could not be loaded as an Ed25519 key")
        }
        var publicBytes = [UInt8](repeating: 0, count: 32)
        var length = publicBytes.count
        guard EVP_PKEY_get_raw_public_key(key, &publicBytes, &length) == 1, length == 32 else {
            EVP_PKEY_free(key)
            throw NATSError(.invalidConfiguration, "the public key of the NKey seed could not be derived")
        }
        self.key = key
        self.publicKey = nkey.encodePublicKey(publicBytes)
    }

    deinit {
        EVP_PKEY_free(key)  // OpenSSL wipes the private key when it frees it.
    }

    /// Whether this process's libnats leaves a signature whose first byte is zero out of CONNECT:
    /// before 3.10.0 its base64 encoder took the raw signature for a C string and encoded nothing
    /// when the first byte was 0 (nats.c #705), so the server saw a JWT or NKey without a
    /// signature and refused it. That is one connection attempt in 256, with any client of those
    /// releases (Debian's is 3.4.1); the signature callback refuses such a signature instead, so
    /// the attempt fails before it reaches the server and the next one signs a new nonce.
    static let libraryDropsSignaturesStartingWithZero = nats_GetVersionNumber() < NativeInternals.version(3, 10, 0)

    /// The 64-byte Ed25519 signature of `message`, or `nil` if OpenSSL fails.
    func sign(_ message: UnsafeRawBufferPointer) -> [UInt8]? {
        guard let context = EVP_MD_CTX_new() else { return nil }
        defer { EVP_MD_CTX_free(context) }
        guard EVP_DigestSignInit(context, nil, nil, nil, key) == 1 else { return nil }
        var signature = [UInt8](repeating: 0, count: 64)
        var length = signature.count
        let status = EVP_DigestSign(
            context, &signature, &length, message.baseAddress?.assumingMemoryBound(to: UInt8.self), message.count)
        guard status == 1, length == 64 else { return nil }
        return signature
    }

    /// Signs cnats's nonce: fills `signature` with a malloc'ed buffer cnats frees.
    func sign(
        nonce: UnsafePointer<CChar>,
        signature: UnsafeMutablePointer<UnsafeMutablePointer<UInt8>?>?,
        length: UnsafeMutablePointer<Int32>?
    ) -> natsStatus {
        let bytes = UnsafeRawBufferPointer(start: nonce, count: strlen(nonce))
        guard let result = sign(bytes), let signature, let length,
            let buffer = malloc(result.count)?.assumingMemoryBound(to: UInt8.self)
        else { return NATS_ERR }
        buffer.initialize(from: result, count: result.count)
        signature.pointee = buffer
        length.pointee = Int32(result.count)
        return NATS_OK
    }
}

/// cnats's signature callback: the closure is the connection's retained callbacks box, which
/// holds the signer for as long as cnats may call this.
let nativeSignNonce: natsSignatureHandler = { errorText, signature, length, nonce, closure in
    let callbacks = NativeConnectionCallbacks.from(closure)
    guard let signer = callbacks.signer else { return NATS_ERR }
    // A server that does not require NKeys sends no nonce; cnats still asks for a signature,
    // which that server ignores.
    let status: natsStatus
    if let nonce {
        status = signer.sign(nonce: nonce, signature: signature, length: length)
    } else {
        status = "".withCString { signer.sign(nonce: $0, signature: signature, length: length) }
    }
    if status != NATS_OK {
        errorText?.pointee = strdup("signing the server's nonce with the NKey seed failed")
        return status
    }
    if NativeNKeySigner.libraryDropsSignaturesStartingWithZero, let bytes = signature?.pointee, bytes[0] == 0 {
        free(bytes)
        signature?.pointee = nil
        length?.pointee = 0
        callbacks.unsendableSignatures.add(1, ordering: .relaxed)
        errorText?.pointee = strdup(
            "the signature of the server's nonce begins with a zero byte, which libnats before 3.10 leaves out of CONNECT; a new connection signs a new nonce")
        return NATS_ERR
    }
    return NATS_OK
}

/// Reads a whole small file (credentials, seeds) as UTF-8; blocking, so only from the connect path,
/// which runs off the cooperative pool.
func readSecretFile(_ path: String, purpose: String) throws(NATSError) -> String {
    guard let file = fopen(path, "r") else {
        throw NATSError(.invalidConfiguration, "cannot read \(purpose) '\(path)': \(String(cString: strerror(errno)))")
    }
    defer { fclose(file) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while true {
        let count = fread(&chunk, 1, chunk.count, file)
        if count > 0 { bytes += chunk[0..<count] }
        if count < chunk.count { break }
        // Credentials and seeds are a few hundred bytes; anything this large is not one.
        if bytes.count > 1 << 20 { throw NATSError(.invalidConfiguration, "\(purpose) '\(path)' is larger than 1 MiB") }
    }
    for index in chunk.indices { chunk[index] = 0 }
    defer { for index in bytes.indices { bytes[index] = 0 } }
    return String(decoding: bytes, as: UTF8.self)
}

/// cnats's user-JWT callback for credentials files: hands cnats a copy it frees.
let nativeUserJWT: natsUserJWTHandler = { jwt, _, closure in
    guard let jwt, let value = NativeConnectionCallbacks.from(closure).userJWT, let copy = strdup(value) else {
        return NATS_ERR
    }
    jwt.pointee = copy
    return NATS_OK
}

extension NATSNKey {
    /// The public key (`U…` for a user) this seed belongs to.
    package func derivePublicKey() throws(NATSError) -> String {
        try NativeNKeySigner(self).publicKey
    }
}

import CNATS

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Owns a `natsOptions` built from a ``NATSConnectionConfiguration``.
final class NativeOptions {
    let pointer: OpaquePointer

    init(_ configuration: NATSConnectionConfiguration) throws(NATSError) {
        _ = NativeStatus.libraryOpened
        var options: OpaquePointer?
        try NativeStatus.check(natsOptions_Create(&options), "creating connection options")
        pointer = options!
        try apply(configuration)
    }

    deinit {
        // natsConnection_Connect cloned what it needed; the options are ours to destroy.
        natsOptions_Destroy(pointer)
    }

    private func apply(_ configuration: NATSConnectionConfiguration) throws(NATSError) {
        let urls = configuration.servers.map(\.connectString)
        try withCStringArray(urls) { (array, count) throws(NATSError) in
            try NativeStatus.check(natsOptions_SetServers(pointer, array, Int32(count)), "setting the server list")
        }
        try NativeStatus.check(natsOptions_SetNoRandomize(pointer, !configuration.randomizeServers), "setting server order")
        try NativeStatus.check(
            natsOptions_SetIgnoreDiscoveredServers(pointer, !configuration.discoverServers), "setting discovery")
        if let name = configuration.name {
            try NativeStatus.check(natsOptions_SetName(pointer, name), "setting the connection name")
        }
        try NativeStatus.check(
            natsOptions_SetTimeout(pointer, configuration.connectTimeout.millisecondsClamped), "setting the connect timeout")
        let reconnect = configuration.reconnect
        switch reconnect.maxAttempts {
        case .unlimited:
            try NativeStatus.check(natsOptions_SetAllowReconnect(pointer, true), "enabling reconnect")
            try NativeStatus.check(natsOptions_SetMaxReconnect(pointer, -1), "setting reconnect attempts")
        case .limited(let attempts):
            try NativeStatus.check(natsOptions_SetAllowReconnect(pointer, attempts > 0), "enabling reconnect")
            try NativeStatus.check(natsOptions_SetMaxReconnect(pointer, Int32(clamping: attempts)), "setting reconnect attempts")
        }
        try NativeStatus.check(natsOptions_SetReconnectWait(pointer, reconnect.wait.millisecondsClamped), "setting reconnect wait")
        try NativeStatus.check(
            natsOptions_SetReconnectJitter(pointer, reconnect.jitter.millisecondsClamped, reconnect.jitterTLS.millisecondsClamped),
            "setting reconnect jitter")
        try NativeStatus.check(
            natsOptions_SetReconnectBufSize(pointer, Int32(clamping: reconnect.bufferSize)), "setting the reconnect buffer")
        try NativeStatus.check(
            natsOptions_SetPingInterval(pointer, configuration.pingInterval.millisecondsClamped), "setting the ping interval")
        try NativeStatus.check(natsOptions_SetMaxPingsOut(pointer, Int32(clamping: configuration.maxPingsOut)), "setting max pings out")
        try NativeStatus.check(natsOptions_SetNoEcho(pointer, configuration.noEcho), "setting no-echo")
        try NativeStatus.check(
            natsOptions_SetMaxPendingMsgs(pointer, Int32(clamping: configuration.subscriptionLimits.messages)),
            "setting pending limits")
        try NativeStatus.check(natsOptions_SetSendAsap(pointer, configuration.sendAsap), "setting send-asap")
        // Each subscription keeps its own delivery thread (cnats's default). The client blocks
        // that thread when the subscriber's buffer is full, which pushes back into cnats's pending
        // limits; a shared delivery pool would let one slow subscriber stall the others.
        try NativeStatus.check(natsOptions_UseGlobalMessageDelivery(pointer, false), "setting message delivery")

        // URLs reach cnats without credentials; those they carried are part of this.
        try applyAuthentication(configuration.resolvedAuthentication())
        try applyTLS(configuration)
    }

    /// The signer for NKey authentication, handed to cnats with the callbacks (see
    /// ``setCallbacks(_:)``), and the user JWT sent with it for credentials files.
    private(set) var signer: NativeNKeySigner?
    private(set) var userJWT: String?

    private func applyAuthentication(_ authentication: NATSConnectionConfiguration.Authentication) throws(NATSError) {
        switch authentication {
        case .none:
            break
        case .token(let token):
            try NativeStatus.check(natsOptions_SetToken(pointer, token), "setting the token")
        case .userPassword(let user, let password):
            try NativeStatus.check(natsOptions_SetUserInfo(pointer, user, password), "setting user and password")
        case .credentialsFile(let path):
            // Parsed here rather than by cnats, so that a file that is not a credentials file
            // (a bare seed, say) is refused before its content could reach the server.
            let credentials = try NATSCredentials(
                parsing: readSecretFile(path, purpose: "credentials file"), source: "credentials file '\(path)'")
            signer = try NativeNKeySigner(credentials.nkey)
            userJWT = credentials.jwt
        case .nkeySeedFile(let publicKey, let seedFile):
            let text = try readSecretFile(seedFile, purpose: "NKey seed file")
            // A seed file holds the seed alone, or framed like a credentials file's seed block.
            guard let line = text.split(whereSeparator: \.isWhitespace).first(where: { $0.hasPrefix("S") }) else {
                throw NATSError(.invalidConfiguration, "NKey seed file '\(seedFile)' holds no seed ('SU…')")
            }
            let signer = try NativeNKeySigner(NATSNKey(seed: line, source: "NKey seed file '\(seedFile)'"))
            guard signer.publicKey == publicKey else {
                throw NATSError(
                    .invalidConfiguration,
                    "the seed in NKey seed file '\(seedFile)' belongs to public key \(signer.publicKey), not to the configured \(publicKey)")
            }
            self.signer = signer
        case .nkeySeed(let value):
            let trimmed = value.split(whereSeparator: \.isWhitespace).first ?? ""
            let nkey = try NATSNKey(seed: trimmed, source: "the NKey seed value")
            guard nkey.kind == .user else {
                throw NATSError(.invalidConfiguration, "the NKey seed value is not a user seed ('SU…')")
            }
            signer = try NativeNKeySigner(nkey)
        }
    }

    private func applyTLS(_ configuration: NATSConnectionConfiguration) throws(NATSError) {
        guard configuration.usesTLS else { return }
        try NativeStatus.check(natsOptions_SetSecure(pointer, true), "enabling TLS")
        let tls = configuration.tls ?? .init()
        if let caFile = tls.caFile {
            try NativeStatus.check(
                natsOptions_LoadCATrustedCertificates(pointer, caFile), "loading CA certificates '\(caFile)'")
        }
        if let certificateFile = tls.certificateFile, let keyFile = tls.keyFile {
            try NativeStatus.check(
                natsOptions_LoadCertificatesChain(pointer, certificateFile, keyFile),
                "loading certificate '\(certificateFile)' and key '\(keyFile)'")
        }
        switch tls.serverVerification {
        case .full:
            // cnats 3.4 checks the name only when one is set: set the URL's host by default.
            if let hostname = try configuration.tlsHostnameToVerify() {
                try NativeStatus.check(natsOptions_SetExpectedHostname(pointer, hostname), "setting the TLS host name")
            }
        case .certificateOnly:
            break
        case .none:
            try NativeStatus.check(natsOptions_SkipServerVerification(pointer, true), "turning off TLS verification")
        }
    }

    /// Registers the connection-event trampolines; `closure` is the retained callback box.
    func setCallbacks(_ closure: UnsafeMutableRawPointer) throws(NATSError) {
        try NativeStatus.check(natsOptions_SetDisconnectedCB(pointer, nativeDisconnected, closure), "setting callbacks")
        try NativeStatus.check(natsOptions_SetReconnectedCB(pointer, nativeReconnected, closure), "setting callbacks")
        try NativeStatus.check(natsOptions_SetClosedCB(pointer, nativeClosed, closure), "setting callbacks")
        try NativeStatus.check(natsOptions_SetErrorHandler(pointer, nativeAsyncError, closure), "setting callbacks")
        try NativeStatus.check(
            natsOptions_SetDiscoveredServersCB(pointer, nativeDiscoveredServers, closure), "setting callbacks")
        try NativeStatus.check(natsOptions_SetLameDuckModeCB(pointer, nativeLameDuck, closure), "setting callbacks")
        if let signer {
            if userJWT != nil {
                try NativeStatus.check(
                    natsOptions_SetUserCredentialsCallbacks(pointer, nativeUserJWT, closure, nativeSignNonce, closure),
                    "setting credentials")
            } else {
                try NativeStatus.check(
                    natsOptions_SetNKey(pointer, signer.publicKey, nativeSignNonce, closure), "setting the NKey")
            }
        }
    }
}

/// Calls `body` with a C array of C strings that lives for the duration of the call.
func withCStringArray<Result, Failure: Error>(
    _ strings: [String],
    _ body: (UnsafeMutablePointer<UnsafePointer<CChar>?>, Int) throws(Failure) -> Result
) throws(Failure) -> Result {
    let duplicates = strings.map { strdup($0) }
    defer { duplicates.forEach { free($0) } }
    var pointers = duplicates.map { UnsafePointer($0) }
    let result: Swift.Result<Result, Failure> = pointers.withUnsafeMutableBufferPointer { buffer in
        do throws(Failure) {
            return .success(try body(buffer.baseAddress!, buffer.count))
        } catch {
            return .failure(error)
        }
    }
    return try result.get()
}

import Foundation
import Logging
import NATSTestSupport
import Testing

@testable import NATS

/// A decentralized-auth (operator mode) nats-server with an operator, an account and a user made
/// here: their NKeys at random, their JWTs signed with them. The user's `.creds` file connects;
/// a user JWT the account did not sign does not.
@Suite("JWT credentials against an operator-mode server", .tags(.server))
struct JWTCredentialsTests {
    private struct Key {
        let nkey: NATSNKey
        let publicKey: String
        let signer: NativeNKeySigner

        init(_ kind: NATSNKey.Kind) throws {
            var random = SystemRandomNumberGenerator()
            nkey = NATSNKey(kind: kind, seed: (0..<32).map { _ in UInt8.random(in: 0...255, using: &random) })
            signer = try NativeNKeySigner(nkey)
            publicKey = signer.publicKey
        }
    }

    private static func base64URL(_ bytes: some Sequence<UInt8>) -> String {
        Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    /// A JWT for `subject` with `nats` claims, issued (signed) by `issuer`.
    private static func jwt(subject: String, name: String, nats: String, issuer: Key) throws -> String {
        let header = base64URL(Array(#"{"typ":"JWT","alg":"ed25519-nkey"}"#.utf8))
        let jti = NATSNKey.base32Encode((0..<32).map { _ in UInt8.random(in: 0...255) })
        let now = Int(Date().timeIntervalSince1970)
        let claims = #"{"jti":"\#(jti)","iat":\#(now),"iss":"\#(issuer.publicKey)","name":"\#(name)","sub":"\#(subject)","nats":\#(nats)}"#
        let signingInput = header + "." + base64URL(Array(claims.utf8))
        let signature = try #require(Array(signingInput.utf8).withUnsafeBytes { issuer.signer.sign($0) })
        return signingInput + "." + base64URL(signature)
    }

    private static func credentials(jwt: String, seed: String) -> String {
        """
        -----BEGIN NATS USER JWT-----
        \(jwt)
        ------END NATS USER JWT------

        -----BEGIN USER NKEY SEED-----
        \(seed)
        ------END USER NKEY SEED------
        """
    }

    @Test func aCredentialsFileConnectsAndAForgedOneDoesNot() async throws {
        let operatorKey = try Key(.operator)
        let account = try Key(.account)
        let user = try Key(.user)
        let operatorJWT = try Self.jwt(
            subject: operatorKey.publicKey, name: "test-operator", nats: #"{"type":"operator","version":2}"#, issuer: operatorKey)
        let accountJWT = try Self.jwt(
            subject: account.publicKey, name: "test-account",
            nats: #"{"limits":{"subs":-1,"data":-1,"payload":-1,"imports":-1,"exports":-1,"wildcards":true,"conn":-1,"leaf":-1},"type":"account","version":2}"#,
            issuer: operatorKey)
        let userClaims = #"{"pub":{},"sub":{},"subs":-1,"data":-1,"payload":-1,"type":"user","version":2}"#
        let userJWT = try Self.jwt(subject: user.publicKey, name: "test-user", nats: userClaims, issuer: account)
        let server = try await NATSServerProcess.started(
            jetStream: false,
            configuration: """
                operator: "\(operatorJWT)"
                resolver: MEMORY
                resolver_preload: { \(account.publicKey): "\(accountJWT)" }
                """)

        let path = server.storeDirectory + "/user.creds"
        try Self.credentials(jwt: userJWT, seed: user.nkey.encodedSeed).write(toFile: path, atomically: true, encoding: .utf8)
        var configuration = try NATSConnectionConfiguration(servers: [server.url])
        configuration.authentication = .credentialsFile(path: path)
        var logger = Logger(label: "test.jwt")
        logger.logLevel = .critical
        let connection = try await NATSConnection.connect(configuration: configuration, logger: logger)
        let subscription = try await connection.subscribe(to: "jwt.test")
        try connection.publish(subject: "jwt.test", payload: "hello")
        let message = try await withDeadline(.seconds(30), "the message on 'jwt.test'") {
            var iterator = subscription.makeAsyncIterator()
            return try await iterator.next()
        }
        #expect(message.map { String(decoding: $0.payload.bytes, as: UTF8.self) } == "hello")
        await connection.close()

        // The same user JWT with another user's seed cannot sign the nonce for it.
        let impostor = try Key(.user)
        try Self.credentials(jwt: userJWT, seed: impostor.nkey.encodedSeed).write(toFile: path, atomically: true, encoding: .utf8)
        do {
            _ = try await NATSConnection.connect(configuration: configuration, logger: logger)
            Issue.record("a JWT signed for another key connected")
        } catch {
            #expect(error.code == .authenticationFailed, "\(error)")
        }
    }
}

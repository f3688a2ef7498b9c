import Foundation

/// Certificates made at run time with the `openssl` command for TLS tests (nothing is committed):
/// a CA, a server certificate for `localhost` and 127.0.0.1, a server certificate for another
/// name, a client certificate, and a second, untrusted CA. Elliptic-curve keys, valid one day.
public struct TestCertificates: Sendable {
    /// Where the files are; removed by ``remove()``.
    public let directory: String
    /// The CA's certificate (trust this).
    public var caFile: String { "\(directory)/ca.pem" }
    /// Another CA, which signed nothing the server uses.
    public var otherCAFile: String { "\(directory)/other-ca.pem" }
    /// The server certificate (DNS `localhost`, IP 127.0.0.1) and its key.
    public var serverCertificate: String { "\(directory)/server.pem" }
    public var serverKey: String { "\(directory)/server.key" }
    /// A server certificate for `other.example` only, and its key.
    public var otherHostCertificate: String { "\(directory)/other-host.pem" }
    public var otherHostKey: String { "\(directory)/other-host.key" }
    /// A client certificate (for mutual TLS) and its key.
    public var clientCertificate: String { "\(directory)/client.pem" }
    public var clientKey: String { "\(directory)/client.key" }

    /// Makes every file.
    public static func make() throws -> TestCertificates {
        let directory = try NATSServerProcess.makeTemporaryDirectory(prefix: "nats-tls")
        let certificates = TestCertificates(directory: directory)
        try certificates.makeCA("ca", name: "EventBus Test CA")
        try certificates.makeCA("other-ca", name: "Untrusted Test CA")
        try certificates.makeLeaf(
            "server", name: "localhost", extensions: "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth")
        try certificates.makeLeaf(
            "other-host", name: "other.example", extensions: "subjectAltName=DNS:other.example\nextendedKeyUsage=serverAuth")
        try certificates.makeLeaf("client", name: "eventbus-client", extensions: "extendedKeyUsage=clientAuth")
        return certificates
    }

    /// Removes the directory.
    public func remove() {
        try? FileManager.default.removeItem(atPath: directory)
    }

    private func makeCA(_ base: String, name: String) throws {
        try Self.openssl([
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", "\(directory)/\(base).key", "-out", "\(directory)/\(base).pem", "-days", "1", "-subj", "/CN=\(name)",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        ])
    }

    private func makeLeaf(_ base: String, name: String, extensions: String) throws {
        let extensionsFile = "\(directory)/\(base).ext"
        try extensions.write(toFile: extensionsFile, atomically: true, encoding: .utf8)
        try Self.openssl([
            "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", "\(directory)/\(base).key", "-out", "\(directory)/\(base).csr", "-subj", "/CN=\(name)",
        ])
        try Self.openssl([
            "x509", "-req", "-in", "\(directory)/\(base).csr", "-CA", caFile, "-CAkey", "\(directory)/ca.key",
            "-CAcreateserial", "-out", "\(directory)/\(base).pem", "-days", "1", "-extfile", extensionsFile,
        ])
    }

    private static func openssl(_ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["openssl"] + arguments
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let text = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw NATSServerProcess.Failure(
                description: "openssl \(arguments.prefix(2).joined(separator: " ")) failed: \(String(decoding: text, as: UTF8.self))")
        }
    }
}

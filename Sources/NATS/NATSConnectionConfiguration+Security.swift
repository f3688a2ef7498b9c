extension NATSConnectionConfiguration {
    /// Whether connections use TLS: TLS settings are given or a URL uses `tls://`.
    package var usesTLS: Bool { tls != nil || servers.contains { $0.scheme == "tls" } }

    /// The host name the server's certificate must carry, with ``TLS/ServerVerification/full``:
    /// ``TLS/expectedHostname``, or else the servers' one host name. `nil` when the host is an IP
    /// address (cnats 3.4 checks DNS names only; the chain is still verified).
    ///
    /// - Throws: ``NATSError/Code/invalidConfiguration`` when the servers have different host
    ///   names and no expected name is set: cnats checks one name for all of them.
    package func tlsHostnameToVerify() throws(NATSError) -> String? {
        guard usesTLS else { return nil }
        let tls = self.tls ?? TLS()
        guard tls.serverVerification == .full else { return nil }
        if let expected = tls.expectedHostname { return expected }
        // IP addresses are not checked as names (cnats checks DNS names only): the one DNS
        // name among the servers is the name, and none means none.
        let names = Set(servers.map { $0.host.lowercased() }.filter { !NATSConnectionConfiguration.isIPAddress($0) })
        guard names.count <= 1 else {
            throw NATSError(
                .invalidConfiguration,
                "invalid configuration value tls.expectedHostname: the servers have different host names "
                    + "(\(names.sorted().joined(separator: ", "))) and cnats checks one name for every server; "
                    + "set tls.expectedHostname to the name all their certificates carry, or "
                    + "tls.serverVerification to certificateOnly")
        }
        return names.first
    }

    /// Warnings to log once at connect about weakened TLS verification.
    package var tlsWarnings: [String] {
        guard usesTLS else { return [] }
        let tls = self.tls ?? TLS()
        switch tls.serverVerification {
        case .none:
            return [
                "TLS server verification is off (tls.serverVerification = none): any certificate is accepted, "
                    + "so anyone on the network path can impersonate the server"
            ]
        case .certificateOnly:
            return [
                "TLS server name check is off (tls.serverVerification = certificateOnly): a certificate the CA "
                    + "issued for any other name is accepted"
            ]
        case .full:
            if tls.expectedHostname == nil, servers.count > 0, servers.allSatisfy({ NATSConnectionConfiguration.isIPAddress($0.host) }) {
                return [
                    "TLS server name is not checked for IP address hosts (\(servers.map(\.host).joined(separator: ", "))): "
                        + "set tls.expectedHostname to a DNS name in the server certificate to have it checked"
                ]
            }
            return []
        }
    }

    /// Checks the security settings: one authentication method, TLS files in pairs.
    func validateSecurity() throws(NATSError) {
        if let tls, (tls.certificateFile == nil) != (tls.keyFile == nil) {
            throw NATSError(
                .invalidConfiguration,
                "invalid configuration value tls: certificateFile and keyFile must be given together")
        }
        _ = try tlsHostnameToVerify()
    }

    static func isIPAddress(_ host: String) -> Bool {
        if host.contains(":") { return true }  // IPv6 (brackets already removed)
        let parts = host.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts.allSatisfy { part in UInt8(part) != nil }
    }
}

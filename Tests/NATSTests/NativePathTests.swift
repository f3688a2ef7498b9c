import Foundation
import Testing

@testable import NATS

/// The gate in front of cnats's internals (Native/NativeInternals.swift): only libnats releases
/// whose symbols and message layout were checked get them; everything else, and
/// NATS_PUBLIC_API_ONLY=1, gets the public API.
@Suite("cnats internals version gate")
struct NativePathTests {
    private static func version(_ major: UInt32, _ minor: UInt32, _ patch: UInt32) -> UInt32 {
        major << 16 | minor << 8 | patch
    }

    @Test(arguments: [(3, 0, 0), (3, 4, 0), (3, 4, 1), (3, 6, 1), (3, 9, 3), (3, 13, 0)] as [(UInt32, UInt32, UInt32)])
    func verifiedReleasesGetTheInternals(_ release: (UInt32, UInt32, UInt32)) {
        let path = NATSNativePath.gate(libraryVersion: Self.version(release.0, release.1, release.2))
        #expect(path.usesInternals)
        #expect(path.libraryVersion == "\(release.0).\(release.1).\(release.2)")
    }

    /// A version nobody checked, however close to a verified one, falls back to the public API
    /// and says why.
    @Test(arguments: [(3, 4, 2), (3, 5, 1), (3, 13, 1), (3, 14, 0), (4, 0, 0), (2, 6, 0), (3, 255, 255)] as [(UInt32, UInt32, UInt32)])
    func unverifiedVersionsAreRejected(_ release: (UInt32, UInt32, UInt32)) {
        let text = "\(release.0).\(release.1).\(release.2)"
        let path = NATSNativePath.gate(libraryVersion: Self.version(release.0, release.1, release.2))
        #expect(!path.usesInternals, "\(text)")
        #expect(path.libraryVersion == text)
        #expect(path.reason.contains(text) && path.reason.contains("not a release whose internals were verified"), "\(path.reason)")
    }

    @Test func publicOnlyRequestWinsOverAVerifiedVersion() {
        let path = NATSNativePath.gate(libraryVersion: Self.version(3, 4, 1), publicOnlyRequested: true)
        #expect(!path.usesInternals)
        #expect(path.reason.contains("NATS_PUBLIC_API_ONLY"))
    }

    /// This process's path: the installed libnats (Debian's 3.4.1) is verified, so the internals
    /// are in use unless the environment turned them off (`make test` runs the NATS suites both
    /// ways).
    @Test func currentPathFollowsTheEnvironment() throws {
        let publicOnly = ProcessInfo.processInfo.environment["NATS_PUBLIC_API_ONLY"] == "1"
        let current = NATSNativePath.current
        #expect(current.usesInternals == !publicOnly, "\(current)")
        #expect(current.usesInternals == NativeInternals.isAvailable)
        // The gate, fed the version found, decides as the process did.
        let parts = current.libraryVersion.split(separator: ".").compactMap { UInt32($0) }
        try #require(parts.count == 3, "\(current.libraryVersion)")
        let found = Self.version(parts[0], parts[1], parts[2])
        #expect(NATSNativePath.gate(libraryVersion: found, publicOnlyRequested: publicOnly) == current)
    }
}

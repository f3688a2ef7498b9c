#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// One value of a key in a key-value bucket, as ``NATSKeyValue/get(_:)`` returns it.
public struct NATSKeyValueEntry: Sendable, Hashable {
    /// The bucket the entry was read from.
    public var bucket: String
    /// The key.
    public var key: String
    /// The value's bytes (a copy: nothing refers back to the client's buffers).
    public var value: [UInt8]
    /// The entry's revision: the sequence of its message in the bucket's stream, unique in the
    /// bucket and increasing with every put, create, update, delete and purge.
    public var revision: UInt64
    /// When the server stored the entry.
    public var created: Date
    /// How many newer revisions of the key there are (0 for the latest).
    public var delta: UInt64
    /// Whether the entry is a value or a marker left by a delete or purge.
    public var operation: NATSKeyValueOperation

    /// Creates an entry.
    ///
    /// - Parameters:
    ///   - bucket: The bucket the entry was read from.
    ///   - key: The key.
    ///   - value: The value's bytes.
    ///   - revision: The entry's revision.
    ///   - created: When the server stored the entry.
    ///   - delta: How many newer revisions of the key there are.
    ///   - operation: A value, or a delete or purge marker.
    public init(
        bucket: String, key: String, value: [UInt8], revision: UInt64, created: Date, delta: UInt64 = 0,
        operation: NATSKeyValueOperation = .put
    ) {
        self.bucket = bucket
        self.key = key
        self.value = value
        self.revision = revision
        self.created = created
        self.delta = delta
        self.operation = operation
    }
}

/// What a key-value entry records.
public enum NATSKeyValueOperation: String, Sendable, Hashable, CaseIterable {
    /// A value stored by a put, create or update.
    case put = "PUT"
    /// A delete marker: the key reads as absent; earlier revisions are kept.
    case delete = "DEL"
    /// A purge marker: the key reads as absent; earlier revisions are removed.
    case purge = "PURGE"
}

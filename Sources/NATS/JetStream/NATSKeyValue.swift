/// A JetStream key-value bucket: values stored under keys, each change a new revision.
///
/// Obtain one with ``NATSJetStream/keyValue(bucket:)`` (an existing bucket) or
/// ``NATSJetStream/ensureKeyValue(_:)`` (create or bind):
///
/// ```swift
/// let snapshots = try await connection.jetStream().ensureKeyValue(.init(bucket: "snapshots", history: 5))
/// let revision = try await snapshots.create("order-7", encoded)           // fails if the key exists
/// guard let entry = try await snapshots.get("order-7") else { return }     // nil when absent or deleted
/// try await snapshots.update("order-7", newer, expectedRevision: entry.revision)  // optimistic concurrency
/// ```
///
/// Every call is a JetStream round trip; it runs on the connection's blocking executor, never on
/// Swift's cooperative pool. Keys and values are checked before anything is sent. The object
/// keeps its connection alive; its cnats handles are released with it.
public final class NATSKeyValue: Sendable {
    /// The bucket's name.
    public let bucket: String
    /// The connection the bucket is used through.
    public let connection: NATSConnection
    let native: NativeKeyValue
    /// The bytes in front of a key in the subject a put is published to (`$KV.<bucket>.`, after
    /// the API prefix when it is not the default one, as cnats builds it).
    private let subjectPrefixLength: Int

    init(bucket: String, connection: NATSConnection, native: NativeKeyValue, apiPrefix: String) {
        self.bucket = bucket
        self.connection = connection
        self.native = native
        let jsPrefix = apiPrefix == "$JS.API" ? 0 : apiPrefix.utf8.count + 1
        subjectPrefixLength = jsPrefix + "$KV.".utf8.count + bucket.utf8.count + 1
    }

    // MARK: Reading

    /// The latest value of `key`, or `nil` when the key has none or was deleted or purged.
    ///
    /// - Parameter key: The key (see ``validateKey(_:)``).
    /// - Returns: The entry, with its value and revision; `nil` when absent or deleted.
    /// - Throws: ``NATSError/Code/invalidArgument`` for a bad key, before anything is sent; the
    ///   connection's or server's error otherwise.
    public func get(_ key: String) async throws(NATSError) -> NATSKeyValueEntry? {
        try check(key, valueCount: 0)
        let native = self.native
        return try await connection.blocking.run { () throws(NATSError) in try native.get(key, revision: nil) }
    }

    /// The value `key` had at `revision`, or `nil` when that revision is not one of this key's
    /// (another key's, removed by the history limit or a purge, or a delete or purge marker).
    ///
    /// - Parameters:
    ///   - key: The key (see ``validateKey(_:)``).
    ///   - revision: The revision, as ``put(_:_:)`` or an entry returned it (at least 1).
    /// - Returns: The entry at that revision, or `nil`.
    /// - Throws: ``NATSError/Code/invalidArgument`` for a bad key or revision 0, before anything
    ///   is sent.
    public func get(_ key: String, revision: UInt64) async throws(NATSError) -> NATSKeyValueEntry? {
        try check(key, valueCount: 0)
        guard revision > 0 else {
            throw NATSError(.invalidArgument, "reading key '\(key)' in bucket '\(bucket)': revision 0 is not a revision (they start at 1)")
        }
        let native = self.native
        return try await connection.blocking.run { () throws(NATSError) in try native.get(key, revision: revision) }
    }

    // MARK: Writing

    /// Stores `value` under `key`, whatever the key held, and returns the new revision.
    ///
    /// - Parameters:
    ///   - key: The key (see ``validateKey(_:)``).
    ///   - value: The bytes to store (may be empty).
    /// - Returns: The revision of the stored value.
    /// - Throws: ``NATSError/Code/invalidArgument`` for a bad key and
    ///   ``NATSError/Code/payloadTooLarge`` for a value over the server's `max_payload`, before
    ///   anything is sent; ``NATSError/Code/jetStream`` with
    ///   ``NATSJetStreamErrorCode/messageTooLarge`` for a value over the bucket's
    ///   ``NATSKeyValueConfiguration/maxValueSize``.
    @discardableResult
    public func put(_ key: String, _ value: some Sequence<UInt8>) async throws(NATSError) -> UInt64 {
        try await write(key, Array(value), expectedRevision: nil)
    }

    /// Stores `value` under `key` only if the key has no value (never set, or deleted or purged
    /// last), and returns the new revision.
    ///
    /// - Parameters:
    ///   - key: The key (see ``validateKey(_:)``).
    ///   - value: The bytes to store.
    /// - Returns: The revision of the stored value.
    /// - Throws: ``NATSError/Code/jetStream`` with ``NATSJetStreamErrorCode/wrongLastSequence``
    ///   when the key has a value (on a replicated bucket also
    ///   ``NATSJetStreamErrorCode/wrongLastSequenceConstant``, while another write to the key is
    ///   being replicated); the checks of ``put(_:_:)``.
    @discardableResult
    public func create(_ key: String, _ value: some Sequence<UInt8>) async throws(NATSError) -> UInt64 {
        try await write(key, Array(value), expectedRevision: 0)
    }

    /// Stores `value` under `key` only if the key's latest revision is `expectedRevision`, and
    /// returns the new revision: a compare-and-set for optimistic concurrency.
    ///
    /// - Parameters:
    ///   - key: The key (see ``validateKey(_:)``).
    ///   - value: The bytes to store.
    ///   - expectedRevision: The revision the caller read last (at least 1; use
    ///     ``create(_:_:)`` for a key that must have no value).
    /// - Returns: The revision of the stored value.
    /// - Throws: ``NATSError/Code/jetStream`` with ``NATSJetStreamErrorCode/wrongLastSequence``,
    ///   naming `expectedRevision`, when another revision is the latest (someone wrote in
    ///   between: read again and retry); on a replicated bucket, while another write to the key
    ///   is still being replicated, the server refuses with
    ///   ``NATSJetStreamErrorCode/wrongLastSequenceConstant`` instead (nothing stored; read again
    ///   and retry the same way); the checks of ``put(_:_:)``.
    @discardableResult
    public func update(_ key: String, _ value: some Sequence<UInt8>, expectedRevision: UInt64) async throws(NATSError)
        -> UInt64
    {
        guard expectedRevision > 0 else {
            throw NATSError(
                .invalidArgument,
                "updating key '\(key)' in bucket '\(bucket)': expectedRevision 0 is not a revision (they start at 1); use create(_:_:) for a key that must have no value")
        }
        return try await write(key, Array(value), expectedRevision: expectedRevision)
    }

    /// Deletes `key`: a delete marker becomes its latest revision, so ``get(_:)`` returns `nil`;
    /// earlier revisions stay in the history. Deleting a key without a value succeeds.
    ///
    /// - Parameter key: The key (see ``validateKey(_:)``).
    /// - Throws: ``NATSError/Code/invalidArgument`` for a bad key, before anything is sent.
    public func delete(_ key: String) async throws(NATSError) {
        try check(key, valueCount: 0)
        let native = self.native
        try await connection.blocking.run { () throws(NATSError) in try native.remove(key, purge: false) }
    }

    /// Purges `key`: a purge marker replaces all its revisions, so ``get(_:)`` returns `nil` and
    /// the history is gone.
    ///
    /// - Parameter key: The key (see ``validateKey(_:)``).
    /// - Throws: ``NATSError/Code/invalidArgument`` for a bad key, before anything is sent.
    public func purge(_ key: String) async throws(NATSError) {
        try check(key, valueCount: 0)
        let native = self.native
        try await connection.blocking.run { () throws(NATSError) in try native.remove(key, purge: true) }
    }

    private func write(_ key: String, _ value: [UInt8], expectedRevision: UInt64?) async throws(NATSError) -> UInt64 {
        try check(key, valueCount: value.count)
        let native = self.native
        return try await connection.blocking.run { () throws(NATSError) in
            try native.put(key, value, expectedRevision: expectedRevision)
        }
    }

    // MARK: Validation

    /// Checks a key: not empty; only ASCII letters, digits and `-`, `/`, `_`, `=`, `.`; no `.` at
    /// the start or end and no two in a row (a key's `.`-separated parts become subject tokens).
    ///
    /// - Parameter key: The key to check.
    /// - Throws: ``NATSError/Code/invalidArgument`` naming the key and the rule.
    public static func validateKey(_ key: String) throws(NATSError) {
        if key.isEmpty { throw NATSError(.invalidArgument, "a key-value key must not be empty") }
        var previous: UInt8 = 0
        for byte in key.utf8 {
            if !byte.isKeyValueKeyCharacter {
                throw NATSError(
                    .invalidArgument,
                    "invalid key '\(NATSValidation.printable(key))': only ASCII letters, digits and '-', '/', '_', '=', '.' are allowed")
            }
            if byte == UInt8(ascii: "."), previous == UInt8(ascii: ".") {
                throw NATSError(.invalidArgument, "invalid key '\(NATSValidation.printable(key))': it must not contain '..'")
            }
            previous = byte
        }
        if key.utf8.first == UInt8(ascii: ".") || key.utf8.last == UInt8(ascii: ".") {
            throw NATSError(.invalidArgument, "invalid key '\(NATSValidation.printable(key))': it must not start or end with '.'")
        }
    }

    /// Header bytes a KV write may carry (an expected-revision header, or the marker and rollup
    /// headers of a delete or purge), counted for the control line.
    private static let headerReserve = 96

    /// Checks the key, the connection, and that the write fits the server's limits.
    private func check(_ key: String, valueCount: Int) throws(NATSError) {
        try NATSKeyValue.validateKey(key)
        _ = try connection.connected()
        // cnats publishes the request itself, past the connection's own control-line check: a
        // line the server refuses would close the connection.
        let line = NATSValidation.publishControlLineLength(
            subjectLength: subjectPrefixLength + key.utf8.count, replyLength: NATSValidation.requestInboxReserve,
            headerLength: NATSKeyValue.headerReserve, payloadLength: valueCount)
        if line > connection.maxControlLine {
            throw NATSError(
                .invalidArgument,
                "invalid key '\(NATSValidation.printable(key))': it is \(key.utf8.count) bytes, and the request for it in bucket '\(bucket)' would have a \(line)-byte control line; the server accepts at most \(connection.maxControlLine) bytes (max_control_line, configured as NATSConnectionConfiguration.maxControlLine)")
        }
        let limit = connection.maxPayload
        if valueCount + NATSKeyValue.headerReserve > limit {
            throw NATSError(
                .payloadTooLarge,
                "value for key '\(key)' in bucket '\(bucket)' is \(valueCount) bytes; a value may have at most \(limit - NATSKeyValue.headerReserve) bytes (the server's max_payload \(limit), less \(NATSKeyValue.headerReserve) for the headers a write may carry)")
        }
    }
}

extension UInt8 {
    /// ASCII letters, digits and `-`, `/`, `_`, `=`, `.`: what a key may contain.
    var isKeyValueKeyCharacter: Bool {
        switch self {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "/"), UInt8(ascii: "_"),
            UInt8(ascii: "="), UInt8(ascii: "."):
            true
        default:
            false
        }
    }
}

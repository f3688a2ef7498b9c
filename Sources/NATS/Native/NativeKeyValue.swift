import CNATS
import Synchronization

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A key-value bucket as cnats binds it: a `jsCtx` on the connection and the `kvStore` made
/// through it. Every method is blocking (a JetStream round trip) and must run on the
/// connection's blocking executor.
///
/// The handles are tied to the `natsConnection` they were made on. When the connection's link
/// recovers a connection the server closed (see ``NativeConnectionLink``), the old handles would
/// only ever answer "connection closed", so the next call binds the bucket again on the new
/// connection.
final class NativeKeyValue: @unchecked Sendable {
    // @unchecked: the handles are behind a Mutex; cnats KV calls are thread-safe.
    let bucket: String
    private let connection: NativeConnection
    private let prefix: String
    private let waitMilliseconds: Int64
    private let handles: Mutex<NativeKeyValueHandles>

    private init(
        bucket: String, connection: NativeConnection, prefix: String, waitMilliseconds: Int64,
        handles: NativeKeyValueHandles
    ) {
        self.bucket = bucket
        self.connection = connection
        self.prefix = prefix
        self.waitMilliseconds = waitMilliseconds
        self.handles = Mutex(handles)
    }

    /// Binds an existing bucket (blocking).
    static func bind(
        bucket: String, connection: NativeConnection, prefix: String, waitMilliseconds: Int64
    ) throws(NATSError) -> NativeKeyValue {
        guard let pointer = connection.pointer else { throw NativeConnection.notConnected }
        let handles = try NativeKeyValueHandles.bind(
            bucket: bucket, on: pointer, prefix: prefix, waitMilliseconds: waitMilliseconds)
        return NativeKeyValue(
            bucket: bucket, connection: connection, prefix: prefix, waitMilliseconds: waitMilliseconds, handles: handles)
    }

    /// The configuration fields cnats's `kvConfig` carries, already validated.
    struct Configuration: Sendable {
        var bucket: String
        var description: String?
        var history: UInt8
        var maxValueSize: Int32
        var maxBytes: Int64
        var ttlNanoseconds: Int64
        var memoryStorage: Bool
        var replicas: Int32
    }

    /// Creates the bucket, or binds it when it exists with the same configuration (blocking).
    /// Throws ``NATSError/Code/invalidConfiguration`` when it exists with another one.
    static func create(
        _ configuration: Configuration, connection: NativeConnection, prefix: String, waitMilliseconds: Int64
    ) throws(NATSError) -> NativeKeyValue {
        guard let pointer = connection.pointer else { throw NativeConnection.notConnected }
        let context = try NativeKeyValueHandles.makeContext(on: pointer, prefix: prefix, waitMilliseconds: waitMilliseconds)
        var store: OpaquePointer?
        let status = configuration.bucket.withCString { bucket in
            withOptionalCString(configuration.description) { description in
                var config = kvConfig()
                kvConfig_Init(&config)
                config.Bucket = bucket
                config.Description = description
                config.History = configuration.history
                config.MaxValueSize = configuration.maxValueSize
                config.MaxBytes = configuration.maxBytes
                config.TTL = configuration.ttlNanoseconds
                config.StorageType = configuration.memoryStorage ? js_MemoryStorage : js_FileStorage
                config.Replicas = configuration.replicas
                // cnats copies what it keeps; the strings only need to live through the call.
                return js_CreateKeyValue(&store, context, &config)
            }
        }
        guard status == NATS_OK, let store else {
            let error = keyValueError(status, "creating key-value bucket '\(configuration.bucket)'")
            // The context was never handed to a store: ours alone to destroy.
            jsCtx_Destroy(context)
            throw error
        }
        let handles = NativeKeyValueHandles(connection: pointer, context: context, store: store)
        return NativeKeyValue(
            bucket: configuration.bucket, connection: connection, prefix: prefix, waitMilliseconds: waitMilliseconds,
            handles: handles)
    }

    /// Deletes a bucket and everything in it (blocking).
    static func delete(
        bucket: String, connection: NativeConnection, prefix: String, waitMilliseconds: Int64
    ) throws(NATSError) {
        guard let pointer = connection.pointer else { throw NativeConnection.notConnected }
        let context = try NativeKeyValueHandles.makeContext(on: pointer, prefix: prefix, waitMilliseconds: waitMilliseconds)
        // The context is used for this one call only.
        defer { jsCtx_Destroy(context) }
        let status = bucket.withCString { js_DeleteKeyValue(context, $0) }
        if status == NATS_NOT_FOUND {
            throw NativeKeyValue.missingBucket(bucket, status: status, operation: "deleting key-value bucket '\(bucket)'")
        }
        if status != NATS_OK { throw keyValueError(status, "deleting key-value bucket '\(bucket)'") }
    }

    /// The handles for the connection's current cnats connection, binding the bucket again if a
    /// recovery replaced it.
    private func current() throws(NATSError) -> NativeKeyValueHandles {
        let existing = handles.withLock { $0 }
        guard let pointer = connection.pointer else { throw NativeConnection.notConnected }
        if existing.connection == pointer { return existing }
        // Bound outside the lock: it is a round trip. Two calls racing here both bind; the second
        // to finish keeps the first one's handles and drops its own.
        let fresh = try NativeKeyValueHandles.bind(
            bucket: bucket, on: pointer, prefix: prefix, waitMilliseconds: waitMilliseconds)
        return handles.withLock { installed in
            if installed.connection == pointer { return installed }
            installed = fresh
            return fresh
        }
    }

    // MARK: Operations (blocking)

    /// The latest entry of `key`, or the one at `revision`; `nil` when there is none or it is a
    /// delete or purge marker.
    func get(_ key: String, revision: UInt64?) throws(NATSError) -> NATSKeyValueEntry? {
        let handles = try current()
        var entry: OpaquePointer?
        let status = key.withCString { key in
            if let revision { return kvStore_GetRevision(&entry, handles.store, key, revision) }
            return kvStore_Get(&entry, handles.store, key)
        }
        if status == NATS_NOT_FOUND { return nil }
        guard status == NATS_OK, let entry else {
            let at = revision.map { " at revision \($0)" } ?? ""
            throw failure(status, "reading key '\(key)'\(at) in bucket '\(bucket)'", on: handles)
        }
        // The entry (and its copy of the message) is ours to destroy once copied out.
        defer { kvEntry_Destroy(entry) }
        return NativeKeyValue.copy(entry, bucket: bucket)
    }

    /// Stores `value` under `key` and returns its revision. With `expectedRevision`, only if the
    /// key's latest revision is that one (0: only if the key has no value).
    func put(_ key: String, _ value: [UInt8], expectedRevision: UInt64?) throws(NATSError) -> UInt64 {
        let handles = try current()
        var revision: UInt64 = 0
        let status = key.withCString { key in
            value.withUnsafeBytes { bytes in
                let length = Int32(truncatingIfNeeded: bytes.count)
                switch expectedRevision {
                case nil: return kvStore_Put(&revision, handles.store, key, bytes.baseAddress, length)
                case 0?: return kvStore_Create(&revision, handles.store, key, bytes.baseAddress, length)
                case let expected?:
                    return kvStore_Update(&revision, handles.store, key, bytes.baseAddress, length, expected)
                }
            }
        }
        guard status == NATS_OK else {
            let operation: String
            switch expectedRevision {
            case nil: operation = "putting key '\(key)' in bucket '\(bucket)'"
            case 0?: operation = "creating key '\(key)' in bucket '\(bucket)'"
            case let expected?: operation = "updating key '\(key)' in bucket '\(bucket)' expecting revision \(expected)"
            }
            throw failure(status, operation, on: handles, expectedRevision: expectedRevision)
        }
        return revision
    }

    /// Places a delete marker on `key` (history kept), or with `purge` a purge marker that
    /// removes the key's earlier revisions.
    func remove(_ key: String, purge: Bool) throws(NATSError) {
        let handles = try current()
        let status = key.withCString { key in
            purge ? kvStore_Purge(handles.store, key, nil) : kvStore_Delete(handles.store, key)
        }
        if status != NATS_OK {
            throw failure(status, "\(purge ? "purging" : "deleting") key '\(key)' in bucket '\(bucket)'", on: handles)
        }
    }

    // MARK: Entries and errors

    /// The error of a failed call on `handles`. When the server closed their connection after an
    /// `-ERR`, it names the server's reason and is retriable (the link is connecting again, and
    /// the next call binds the bucket on the new connection).
    private func failure(
        _ status: natsStatus, _ operation: String, on handles: NativeKeyValueHandles, expectedRevision: UInt64? = nil
    ) -> NATSError {
        if status == NATS_CONNECTION_CLOSED { return NativeConnection.failure(status, operation, on: handles.connection) }
        return NativeKeyValue.keyValueError(status, operation, expectedRevision: expectedRevision)
    }

    /// Copies a cnats entry into a Swift value.
    private static func copy(_ entry: OpaquePointer, bucket: String) -> NATSKeyValueEntry {
        let key = kvEntry_Key(entry).map { String(cString: $0) } ?? ""
        let length = Int(max(0, kvEntry_ValueLen(entry)))
        var value: [UInt8] = []
        if length > 0, let bytes = kvEntry_Value(entry) {
            value = Array(UnsafeRawBufferPointer(start: bytes, count: length))
        }
        let operation: NATSKeyValueOperation
        switch kvEntry_Operation(entry) {
        case kvOp_Delete: operation = .delete
        case kvOp_Purge: operation = .purge
        default: operation = .put
        }
        let nanoseconds = kvEntry_Created(entry)
        return NATSKeyValueEntry(
            bucket: bucket, key: key, value: value, revision: kvEntry_Revision(entry),
            created: Date(timeIntervalSince1970: Double(nanoseconds) / 1_000_000_000), delta: kvEntry_Delta(entry),
            operation: operation)
    }

    /// The error for a bucket that does not exist: JetStream's own code for a missing stream, as
    /// ``NATSJetStream/streamInfo(_:)`` reports it, since a bucket is the stream `KV_<bucket>`.
    static func missingBucket(_ bucket: String, status: natsStatus, operation: String) -> NATSError {
        NATSError(
            .jetStream, "\(operation): the bucket does not exist (no stream 'KV_\(bucket)')",
            nativeStatus: NativeStatus.describe(status), jetStreamErrorCode: NATSJetStreamErrorCode.streamNotFound)
    }

    /// Maps a failed KV call. cnats reports a JetStream API error as `NATS_ERR` with the server's
    /// description as the thread's last error and no `err_code` (kvStore_Update does not pass it
    /// on), so the descriptions the caller acts on are recognised by their text.
    static func keyValueError(_ status: natsStatus, _ operation: String, expectedRevision: UInt64? = nil) -> NATSError {
        guard status == NATS_ERR else { return NativeStatus.error(status, operation) }
        let native = NativeStatus.describe(status)
        var detail = NativeStatus.lastErrorText() ?? native.text
        // cnats puts where it set the error in front: `(js.c:535): wrong last sequence: 1`.
        if detail.hasPrefix("("), let end = detail.firstRange(of: "): ") {
            detail = String(detail[end.upperBound...])
        }
        if detail.hasPrefix("wrong last sequence") {
            let what: String
            switch expectedRevision {
            case 0?: what = "the key exists already"
            case let expected?: what = "revision \(expected) is not the key's latest"
            case nil: what = "the key's latest revision is another"
            }
            return NATSError(
                .jetStream, "\(operation): \(what) (\(detail))", nativeStatus: native,
                jetStreamErrorCode: NATSJetStreamErrorCode.wrongLastSequence)
        }
        if detail.hasPrefix("message size exceeds maximum allowed") {
            return NATSError(
                .jetStream, "\(operation): the value is larger than the bucket's maxValueSize (\(detail))",
                nativeStatus: native, jetStreamErrorCode: NATSJetStreamErrorCode.messageTooLarge)
        }
        if detail == "Existing configuration is different" {
            return NATSError(.invalidConfiguration, "\(operation): the bucket exists with another configuration", nativeStatus: native)
        }
        return NATSError(.jetStream, "\(operation): \(detail)", nativeStatus: native)
    }
}

/// Owns one `jsCtx` and the `kvStore` bound through it; destroys both when released (after the
/// last call using them returned).
final class NativeKeyValueHandles: @unchecked Sendable {
    // @unchecked: immutable; cnats's kvStore calls are thread-safe.
    /// The `natsConnection` the context was made on (compared, never used).
    let connection: OpaquePointer
    let context: OpaquePointer
    let store: OpaquePointer

    init(connection: OpaquePointer, context: OpaquePointer, store: OpaquePointer) {
        self.connection = connection
        self.context = context
        self.store = store
    }

    deinit {
        // The store holds a reference to the context: it goes first. The context holds one to the
        // cnats connection, which it releases as it is freed. Neither call waits on the network.
        kvStore_Destroy(store)
        jsCtx_Destroy(context)
    }

    /// A JetStream context on `pointer` with the API prefix and the timeout of its requests
    /// (making it sends nothing).
    static func makeContext(on pointer: OpaquePointer, prefix: String, waitMilliseconds: Int64) throws(NATSError) -> OpaquePointer {
        var context: OpaquePointer?
        let status = prefix.withCString { prefix in
            var options = jsOptions()
            jsOptions_Init(&options)
            // cnats copies the prefix into the context.
            options.Prefix = prefix
            options.Wait = max(1, waitMilliseconds)
            return natsConnection_JetStream(&context, pointer, &options)
        }
        guard status == NATS_OK, let context else {
            throw NativeStatus.error(status, "creating a JetStream context")
        }
        return context
    }

    /// Binds an existing bucket on `pointer` (blocking: reads the bucket's stream).
    static func bind(
        bucket: String, on pointer: OpaquePointer, prefix: String, waitMilliseconds: Int64
    ) throws(NATSError) -> NativeKeyValueHandles {
        let context = try makeContext(on: pointer, prefix: prefix, waitMilliseconds: waitMilliseconds)
        var store: OpaquePointer?
        let status = bucket.withCString { js_KeyValue(&store, context, $0) }
        guard status == NATS_OK, let store else {
            let operation = "binding key-value bucket '\(bucket)'"
            let error = status == NATS_NOT_FOUND
                ? NativeKeyValue.missingBucket(bucket, status: status, operation: operation)
                : NativeKeyValue.keyValueError(status, operation)
            // No store took a reference to the context: ours alone to destroy.
            jsCtx_Destroy(context)
            throw error
        }
        return NativeKeyValueHandles(connection: pointer, context: context, store: store)
    }
}

/// Runs `body` with `string` as a C string, or with `NULL`.
private func withOptionalCString<Result>(_ string: String?, _ body: (UnsafePointer<CChar>?) -> Result) -> Result {
    guard let string else { return body(nil) }
    return string.withCString { body($0) }
}

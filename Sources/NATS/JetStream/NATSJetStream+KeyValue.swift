extension NATSJetStream {
    /// Binds an existing key-value bucket.
    ///
    /// - Parameter bucket: The bucket name (ASCII letters, digits, `_` and `-`).
    /// - Returns: The bucket, using this context's API prefix and timeout.
    /// - Throws: ``NATSError/Code/invalidName`` for a bad name, before anything is sent;
    ///   ``NATSError/Code/jetStream`` with ``NATSJetStreamErrorCode/streamNotFound`` when the
    ///   bucket does not exist.
    public func keyValue(bucket: String) async throws(NATSError) -> NATSKeyValue {
        try NATSKeyValueConfiguration.validateBucketName(bucket)
        let native = try connection.connected()
        let prefix = api.prefix
        let wait = timeout.millisecondsClamped
        let store = try await connection.blocking.run { () throws(NATSError) in
            try NativeKeyValue.bind(bucket: bucket, connection: native, prefix: prefix, waitMilliseconds: wait)
        }
        return NATSKeyValue(bucket: bucket, connection: connection, native: store, apiPrefix: prefix)
    }

    /// Creates a key-value bucket, or binds it when it exists with the same configuration.
    ///
    /// A bucket found with another configuration is not changed (it may be someone else's): the
    /// call fails naming each field that differs. A bucket found with the same configuration is
    /// bound as it is, without an update, so that settings this type does not model (metadata,
    /// republish, compression) stay as the operator set them.
    ///
    /// - Parameter configuration: The bucket's configuration.
    /// - Returns: The bucket, using this context's API prefix and timeout.
    /// - Throws: ``NATSError/Code/invalidName`` or ``NATSError/Code/invalidConfiguration`` naming
    ///   the value and the rule, before anything is sent; ``NATSError/Code/invalidConfiguration``
    ///   listing the differences (`field live → wanted`) when the bucket exists with another
    ///   configuration.
    public func ensureKeyValue(_ configuration: NATSKeyValueConfiguration) async throws(NATSError) -> NATSKeyValue {
        try configuration.validate()
        let native = try connection.connected()
        let prefix = api.prefix
        let wait = timeout.millisecondsClamped
        let existing: NATSStreamInfo?
        do {
            existing = try await streamInfo(configuration.streamName)
        } catch where error.jetStreamErrorCode == NATSJetStreamErrorCode.streamNotFound {
            existing = nil
        }
        if let existing {
            try Self.checkBucket(configuration, matches: existing.configuration)
            return try await keyValue(bucket: configuration.bucket)
        }
        let settings = configuration.native
        let store: NativeKeyValue
        do {
            store = try await connection.blocking.run { () throws(NATSError) in
                try NativeKeyValue.create(settings, connection: native, prefix: prefix, waitMilliseconds: wait)
            }
        } catch where error.code == .invalidConfiguration {
            // Created by someone else since it was looked up, with another configuration; cnats
            // only says that they differ.
            try Self.checkBucket(configuration, matches: try await streamInfo(configuration.streamName).configuration)
            throw error
        }
        return NATSKeyValue(bucket: configuration.bucket, connection: connection, native: store, apiPrefix: prefix)
    }

    /// Throws ``NATSError/Code/invalidConfiguration`` listing what differs between the wanted
    /// bucket and its live stream.
    private static func checkBucket(
        _ configuration: NATSKeyValueConfiguration, matches live: NATSStreamConfiguration
    ) throws(NATSError) {
        let differences = configuration.differences(from: live)
        if differences.isEmpty { return }
        throw NATSError(
            .invalidConfiguration,
            "key-value bucket '\(configuration.bucket)' exists with another configuration: \(differences.joined(separator: ", ")); it is left as it is (delete it, or ask for the configuration it has)")
    }

    /// Deletes a key-value bucket and every value in it.
    ///
    /// - Parameter bucket: The bucket name.
    /// - Throws: ``NATSError/Code/invalidName`` for a bad name, before anything is sent;
    ///   ``NATSError/Code/jetStream`` with ``NATSJetStreamErrorCode/streamNotFound`` when the
    ///   bucket does not exist.
    public func deleteKeyValue(bucket: String) async throws(NATSError) {
        try NATSKeyValueConfiguration.validateBucketName(bucket)
        let native = try connection.connected()
        let prefix = api.prefix
        let wait = timeout.millisecondsClamped
        try await connection.blocking.run { () throws(NATSError) in
            try NativeKeyValue.delete(bucket: bucket, connection: native, prefix: prefix, waitMilliseconds: wait)
        }
    }
}

/// JetStream API error codes (`err_code` in the server's answers) that the client and its users
/// look at, as named constants. Compare with ``NATSError/jetStreamErrorCode``.
public enum NATSJetStreamErrorCode {
    /// 10059: stream not found.
    public static let streamNotFound = 10059
    /// 10014: consumer not found.
    public static let consumerNotFound = 10014
    /// 10071: wrong last sequence (an `expectedLastSequence` or `expectedLastSubjectSequence` did
    /// not match).
    public static let wrongLastSequence = 10071
    /// 10164: wrong last sequence, without the current one: a replicated stream refuses an
    /// `expectedLastSubjectSequence` this way while another write to the subject is still being
    /// replicated (and a batch that names a subject it already wrote). Nothing was stored.
    public static let wrongLastSequenceConstant = 10164
    /// 10174: atomic publish is disabled: the stream has no `allow_atomic` (or the server is older
    /// than 2.12), so it refuses a message with `Nats-Batch-*` headers.
    public static let atomicPublishDisabled = 10174
    /// 10070: wrong last message id (`expectedLastMessageID` did not match).
    public static let wrongLastMessageID = 10070
    /// 10060: expected stream does not match (`expectedStream`).
    public static let streamNotMatch = 10060
    /// 10076: JetStream not enabled on the server.
    public static let notEnabled = 10076
    /// 10039: JetStream not enabled for the account.
    public static let notEnabledForAccount = 10039
    /// 10058: stream name already in use with a different configuration.
    public static let streamNameInUse = 10058
    /// 10065: the subjects overlap with an existing stream.
    public static let subjectsOverlap = 10065
    /// 10052: invalid stream configuration.
    public static let streamInvalidConfiguration = 10052
    /// 10069: stream update failed (for example a field that cannot change).
    public static let streamUpdateFailed = 10069
    /// 10012: consumer create failed (for example a field that cannot change).
    public static let consumerCreateFailed = 10012
    /// 10013: consumer name already in use.
    public static let consumerNameInUse = 10013
    /// 10148: consumer already exists (with a different configuration).
    public static let consumerAlreadyExists = 10148
    /// 10105: consumer already exists and is still active.
    public static let consumerExistingActive = 10105
    /// 10054: message size exceeds the stream's maximum.
    public static let messageTooLarge = 10054
    /// 10074: replicas > 1 need a cluster.
    public static let replicasNotSupported = 10074
    /// 10037: no message found (reading a stream message by sequence).
    public static let noMessageFound = 10037
    /// 10043: sequence not found (deleting a stream message that is not there).
    public static let sequenceNotFound = 10043
    /// 10023: insufficient resources.
    public static let insufficientResources = 10023
    /// 10005: no suitable peers for placement (more replicas than the cluster has servers up).
    public static let noSuitablePeers = 10005
}

extension NATSError {
    /// Whether this error is the JetStream API error with the given `err_code`.
    public func isJetStreamError(_ code: Int) -> Bool {
        jetStreamErrorCode == code
    }
}

import Foundation
import Synchronization

/// One line of a service process's record of what it did, as JSON (one object per line), so the
/// test that started it can check the history after the process ended or was killed.
///
/// `kind` says which fields are set:
/// - `ready`: subscribed or connected (`worker`, `server`);
/// - `publish`: one logical publish and its outcome (`id`, `outcome` = acked/failed/unknown,
///   `sequence`, `duplicate`, `attempts`, `startedAt`, `at`, `detail`);
/// - `delivery`: an event received (`worker`, `id`, `sequence`, `deliveryCount`);
/// - `ack`: the ack of a delivery was sent (`ok`, `detail` on failure);
/// - `stored`: a message the stream holds (`id`, `sequence`), written by the audit role;
/// - `consumer`: a consumer's counters (`name`, `pending`, `ackPending`, `redelivered`, `ackFloor`);
/// - `stream`: the stream's counters and leader (`messages`, `sequence` = last, `leader`);
/// - `done`: the role finished (`detail`); `error`: it failed (`detail`).
public struct AgentRecord: Codable, Sendable, Hashable {
    public var kind: String
    public var at: Double
    public var worker: String?
    public var server: String?
    public var id: String?
    public var sequence: UInt64?
    public var deliveryCount: Int?
    public var outcome: String?
    public var duplicate: Bool?
    public var attempts: Int?
    public var startedAt: Double?
    public var ok: Bool?
    public var detail: String?
    public var name: String?
    public var pending: UInt64?
    public var ackPending: Int?
    public var redelivered: Int?
    public var ackFloor: UInt64?
    public var messages: UInt64?
    public var leader: String?

    /// Creates a record of `kind` now.
    public init(kind: String, at: Double = wallClock()) {
        self.kind = kind
        self.at = at
    }

    /// The publish this record describes (kind `publish`).
    public var publishRecord: PublishRecord? {
        guard kind == "publish", let id, let outcome else { return nil }
        let value: PublishOutcome
        switch outcome {
        case "acked": value = .acked(sequence: sequence ?? 0, duplicate: duplicate ?? false)
        case "failed": value = .failed(reason: detail ?? "")
        default: value = .unknown(reason: detail ?? "")
        }
        return PublishRecord(id: id, outcome: value, attempts: attempts ?? 1, startedAt: startedAt ?? at, completedAt: at)
    }

    /// The delivery this record describes (kind `delivery`).
    public var deliveryRecord: DeliveryRecord? {
        guard kind == "delivery", let id, let sequence else { return nil }
        return DeliveryRecord(id: id, sequence: sequence, deliveryCount: deliveryCount ?? 1, receiver: worker ?? "?", at: at)
    }

    /// The stored message this record describes (kind `stored`).
    public var storedMessage: StoredMessage? {
        guard kind == "stored", let id, let sequence else { return nil }
        return StoredMessage(id: id, sequence: sequence)
    }
}

/// Appends ``AgentRecord``s to a file (or standard output), one JSON line each, written at once so
/// that a killed process leaves every record it made.
public final class AgentLogWriter: Sendable {
    private let descriptor: Int32
    private let lock = Mutex(())

    /// Opens `path` for appending, or standard output for `nil`.
    public init(path: String?) throws {
        if let path {
            let descriptor = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
            guard descriptor >= 0 else { throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: path]) }
            self.descriptor = descriptor
        } else {
            descriptor = STDOUT_FILENO
        }
    }

    deinit {
        if descriptor != STDOUT_FILENO { close(descriptor) }
    }

    /// Writes one record.
    public func write(_ record: AgentRecord) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        guard var data = try? encoder.encode(record) else { return }
        data.append(UInt8(ascii: "\n"))
        lock.withLock { _ in
            data.withUnsafeBytes { buffer in
                var offset = 0
                while offset < buffer.count {
                    let written = Foundation.write(descriptor, buffer.baseAddress! + offset, buffer.count - offset)
                    if written <= 0 { return }
                    offset += written
                }
            }
        }
    }
}

/// Reads the records of an agent log; a line cut short by a kill is skipped.
public func readAgentLog(_ path: String) -> [AgentRecord] {
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [] }
    let decoder = JSONDecoder()
    return text.split(separator: "\n").compactMap { line in
        guard line.hasPrefix("{") else { return nil }
        return try? decoder.decode(AgentRecord.self, from: Data(line.utf8))
    }
}

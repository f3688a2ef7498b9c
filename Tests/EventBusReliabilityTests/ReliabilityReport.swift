import EventBusReliabilitySupport
import Foundation
import NATSTestSupport

/// The figures of one fault test run, printed and appended to
/// `.build/reliability/<profile>.jsonl` and `.build/reliability/<profile>.md` (the source of the
/// tables in docs/reliability.md).
struct ReliabilityResult: Codable, Sendable {
    var test: String
    var title: String
    var profile = FaultProfile.current.name
    var server = ReliabilityResult.serverVersion
    var syncInterval = "always"
    var replicas = 3
    var faults: [FaultEvent] = []
    var published = 0
    var acked = 0
    var failed = 0
    var unknown = 0
    var recoveredUnknown = 0
    var lost = 0
    var duplicatesStored = 0
    var unexpected = 0
    var redeliveries: Int?
    var recoverySeconds: [Double] = []
    var seconds = 0.0
    var notes: [String] = []
    var startedAt = Date()

    /// The server version, asked once (it runs `nats-server --version`).
    static let serverVersion = NATSServerProcess.version().components(separatedBy: " (").first ?? "?"

    init(test: String, title: String) {
        self.test = test
        self.title = title
    }

    /// Copies the checker's figures.
    mutating func take(_ report: ConsistencyReport) {
        published = report.published
        acked = report.acked
        failed = report.failed
        unknown = report.unknown
        recoveredUnknown = report.recoveredUnknown
        lost = report.lost.count
        duplicatesStored = report.duplicated.count
        unexpected = report.unexpected.count
        redeliveries = report.redeliveries
    }

    var markdownRow: String {
        // Infinity: nothing was acked after that fault (R7: the work was already done).
        let recovery = recoverySeconds.isEmpty
            ? "-" : recoverySeconds.map { $0.isFinite ? String(format: "%.1f", $0) : "-" }.joined(separator: ", ")
        let schedule = faults.map(\.what).joined(separator: "; ")
        return "| \(test) | \(profile) | \(schedule) | \(published) | \(acked) | \(lost) | \(duplicatesStored) | \(unknown) (\(recoveredUnknown) stored) | \(redeliveries.map(String.init) ?? "-") | \(recovery) | \(String(format: "%.0f", seconds)) | \(notes.joined(separator: "; ")) |"
    }

    /// Prints the figures and appends them to the report files.
    func record() {
        print("RELIABILITY \(test) [\(profile)] \(title): \(markdownRow)")
        let directory = NATSServerProcess.projectRoot() + "/.build/reliability"
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        if var line = try? encoder.encode(self) {
            line.append(UInt8(ascii: "\n"))
            append(line, to: "\(directory)/\(profile).jsonl")
        }
        let markdownPath = "\(directory)/\(profile).md"
        if !FileManager.default.fileExists(atPath: markdownPath) {
            let header = """
                | test | profile | faults | published | acked | lost | stored twice | unknown | redeliveries | writes unavailable (s) | duration (s) | notes |
                | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |

                """
            append(Data(header.utf8), to: markdownPath)
        }
        append(Data((markdownRow + "\n").utf8), to: markdownPath)
    }

    private func append(_ data: Data, to path: String) {
        if !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil) }
        guard let handle = FileHandle(forWritingAtPath: path) else { return }
        handle.seekToEndOfFile()
        handle.write(data)
        try? handle.close()
    }
}

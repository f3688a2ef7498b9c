#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Calls the JetStream JSON API (`$JS.API.…`) over core request/reply.
///
/// Management calls are rare, so they use Foundation's JSON coders; the per-message paths
/// (publish acks, message metadata) parse by hand.
struct JetStreamAPI: Sendable {
    let connection: NATSConnection
    let prefix: String
    let timeout: Duration

    /// The server's error object.
    struct APIError: Decodable {
        var code: Int
        var err_code: Int?
        var description: String?
    }

    private struct ErrorEnvelope: Decodable {
        var error: APIError?
    }

    static func makeEncoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return encoder
    }

    /// Sends `body` (or nothing) to `$JS.API.<operation>` and decodes the answer.
    func request<Response: Decodable>(
        _ operation: String,
        body: (some Encodable)?,
        as type: Response.Type,
        what: @autoclosure () -> String
    ) async throws(NATSError) -> Response {
        var payload: [UInt8] = []
        if let body {
            do {
                payload = Array(try JetStreamAPI.makeEncoder().encode(body))
            } catch {
                throw NATSError(.invalidArgument, "\(what()): cannot encode the request: \(error)")
            }
        }
        let reply: NATSMessage
        do {
            reply = try await connection.request(subject: "\(prefix).\(operation)", payload: payload, timeout: timeout)
        } catch where error.code == .noResponders {
            throw NATSError(
                .jetStreamNotEnabled,
                "\(what()): no JetStream API answered on '\(prefix).\(operation)' (JetStream is not enabled, or no leader is elected yet)",
                isRetriable: true, nativeStatus: error.nativeStatus)
        } catch where error.code == .timeout {
            throw NATSError(.timeout, "\(what()): the JetStream API did not answer within \(timeout)", isRetriable: true)
        }
        let data = Data(reply.payload.bytes)
        if let envelope = try? JSONDecoder().decode(ErrorEnvelope.self, from: data), let apiError = envelope.error {
            throw JetStreamAPI.error(from: apiError, what: what())
        }
        do {
            return try JSONDecoder().decode(Response.self, from: data)
        } catch {
            throw NATSError(
                .serverError, "\(what()): unexpected answer from the JetStream API: \(reply.payload.string.prefix(300))")
        }
    }

    static func error(from apiError: APIError, what: String) -> NATSError {
        let description = apiError.description ?? "error \(apiError.code)"
        let code: NATSError.Code
        switch apiError.err_code {
        case NATSJetStreamErrorCode.notEnabled, NATSJetStreamErrorCode.notEnabledForAccount:
            code = .jetStreamNotEnabled
        default:
            code = .jetStream
        }
        return NATSError(
            code, "\(what): \(description)", isRetriable: apiError.code == 503, jetStreamErrorCode: apiError.err_code)
    }
}

/// An empty JSON object, for API calls without parameters.
struct EmptyRequest: Encodable {}

/// Encodes and decodes a `Duration` as integer nanoseconds, as the JetStream API does.
enum NanosecondsCoding {
    static func encode(_ duration: Duration) -> Int64 { duration.nanosecondsClamped }
    static func decode(_ nanoseconds: Int64) -> Duration { .nanoseconds(nanoseconds) }
}

/// RFC 3339 timestamps with fractional seconds, as the server writes them.
enum JetStreamTime {
    static func format(_ date: Date) -> String {
        date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
    }

    static func parse(_ text: String) -> Date? {
        if let date = try? Date.ISO8601FormatStyle(includingFractionalSeconds: true).parse(text) { return date }
        if let date = try? Date.ISO8601FormatStyle().parse(text) { return date }
        // The server writes nanoseconds (9 digits); trim to milliseconds for the parser.
        guard let dot = text.firstIndex(of: "."), let zone = text[dot...].firstIndex(where: { $0 == "Z" || $0 == "+" || $0 == "-" }) else {
            return nil
        }
        let fraction = text[text.index(after: dot)..<zone].prefix(3)
        return try? Date.ISO8601FormatStyle(includingFractionalSeconds: true).parse(
            String(text[..<dot]) + "." + fraction + String(text[zone...]))
    }
}

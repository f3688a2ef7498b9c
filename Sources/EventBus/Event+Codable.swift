#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

extension Event {
    /// The `dataContentType` of JSON payloads.
    public static let jsonContentType = "application/json"

    /// Creates an event whose payload is `value` as JSON; throws `encodingFailed` if it cannot be encoded.
    public init<Value: Encodable>(
        id: String = Event.makeID(),
        subject: String,
        type: String,
        source: String,
        time: Date? = Date(),
        encoding value: Value,
        encoder: JSONEncoder = JSONEncoder(),
        extensions: [String: String] = [:],
        correlationID: String? = nil,
        causationID: String? = nil
    ) throws(EventBusError) {
        let data: Data
        do {
            data = try encoder.encode(value)
        } catch {
            throw EventBusError(
                .encodingFailed,
                "cannot encode \(Value.self) as JSON for event type '\(type)'",
                underlying: error
            )
        }
        self.init(
            id: id, subject: subject, type: type, source: source, time: time,
            dataContentType: Event.jsonContentType, data: Array(data), extensions: extensions,
            correlationID: correlationID, causationID: causationID
        )
    }

    /// Decodes the JSON payload as `Value`; throws `decodingFailed` naming the event and the type.
    public func decode<Value: Decodable>(
        _ type: Value.Type = Value.self,
        decoder: JSONDecoder = JSONDecoder()
    ) throws(EventBusError) -> Value {
        do {
            return try decoder.decode(Value.self, from: Data(data))
        } catch {
            throw EventBusError(
                .decodingFailed,
                "cannot decode event \(id) (type '\(self.type)', subject '\(subject)') as \(Value.self): \(error)",
                underlying: error
            )
        }
    }
}

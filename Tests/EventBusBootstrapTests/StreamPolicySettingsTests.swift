import Configuration
import EventBus
import EventBusBootstrap
import EventBusJetStream
import Testing

@Suite("StreamPolicy: EVENT_BUS_JETSTREAM_STREAM_UPDATE")
struct StreamPolicySettingsTests {
    func settings(_ variables: [String: String]) throws -> EventBusSettings {
        let reader = ConfigReader(provider: EnvironmentVariablesProvider(environmentVariables: variables))
        return try EventBusSettings(config: reader.scoped(to: "eventBus"))
    }

    @Test func defaultsToNeverAndReadsUpdate() throws {
        #expect(try settings(["EVENT_BUS_BACKEND": "jetstream"]).jetStream.streamUpdatePolicy == .never)
        let updating = try settings(["EVENT_BUS_BACKEND": "jetstream", "EVENT_BUS_JETSTREAM_STREAM_UPDATE": "Update"])
        #expect(updating.jetStream.streamUpdatePolicy == .update)
        #expect(updating.description.contains("stream update: update"))
    }

    @Test func anUnknownValueNamesTheVariableAndTheChoices() {
        do {
            _ = try settings(["EVENT_BUS_BACKEND": "jetstream", "EVENT_BUS_JETSTREAM_STREAM_UPDATE": "always"])
            Issue.record("accepted 'always'")
        } catch let error as EventBusError {
            #expect(error.code == .invalidOption)
            #expect(error.message == "invalid value 'always' for EVENT_BUS_JETSTREAM_STREAM_UPDATE: expected one of never, update", "\(error.message)")
        } catch {
            Issue.record("unexpected \(error)")
        }
    }
}

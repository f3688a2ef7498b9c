import ArgumentParser
import EventBus
import EventBusBootstrap
import EventBusJetStream
import Foundation
import NATS

extension EventBusCLI {
    struct Doctor: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check the configuration, the servers, JetStream and the stream, without writing anything.",
            discussion: """
                Reads only: it publishes nothing and creates nothing (a missing stream is reported, \
                and created by the first start of the bus). Exit status 0 when every check passed, \
                78 when the configuration is invalid, 69 when no server can be reached or JetStream \
                does not answer, 2 when another check failed.
                """)
        @OptionGroup var bus: BusOptions

        /// Prints the check results and counts the failures.
        final class Report {
            let output: Output
            var failures: [ExitStatus] = []

            init(output: Output) {
                self.output = output
            }

            func ok(_ check: String, _ detail: String) { line("ok", check, detail) }
            func info(_ check: String, _ detail: String) { line("info", check, detail) }
            func fail(_ check: String, _ detail: String, _ status: ExitStatus = .checkFailed) {
                failures.append(status)
                line("fail", check, detail)
            }

            /// Runs a check: `ok` with what `body` returns, `FAIL` with the error's message.
            @discardableResult
            func check(_ name: String, failing status: ExitStatus = .checkFailed, _ body: () async throws -> String) async -> Bool {
                do {
                    ok(name, try await body())
                    return true
                } catch {
                    fail(name, CLIError(classifying: error).message, status)
                    return false
                }
            }

            private func line(_ status: String, _ check: String, _ detail: String) {
                let label = status == "fail" ? "FAIL" : status
                output.emit(
                    "\(label.padding(toLength: 6, withPad: " ", startingAt: 0))\(shown(check)): \(shown(detail))",
                    ["check": .string(check), "status": .string(status), "detail": .string(detail)])
            }

            /// The exit status: the first failure's kind (the configuration, the connection),
            /// else a failed check.
            var status: ExitStatus? {
                guard let first = failures.first else { return nil }
                return failures.allSatisfy({ $0 == first }) ? first : .checkFailed
            }
        }

        func run() async throws {
            let report = Report(output: bus.output)
            let settings: EventBusSettings
            do {
                settings = try bus.settings()
                report.ok("configuration", "\(settings)")
            } catch {
                report.fail("configuration", CLIError(classifying: error).message, .configuration)
                throw ExitCode(ExitStatus.configuration.rawValue)
            }
            guard settings.backend == .jetstream else {
                report.ok("backend memory", "nothing to reach (EVENT_BUS_BACKEND=jetstream and EVENT_BUS_NATS_SERVERS, or --server, to check a NATS deployment)")
                return
            }
            await checkJetStream(settings, report)
            if let status = report.status { throw ExitCode(status.rawValue) }
        }

        func checkJetStream(_ settings: EventBusSettings, _ report: Report) async {
            var connection: NATSConnection?
            let connected = await report.check("connect", failing: .unavailable) {
                let started = ContinuousClock.now
                let connected = try await NATSConnection.connect(configuration: settings.jetStream.connection, logger: bus.logger())
                connection = connected
                return "\(connected.connectedServer ?? "?") in \(Human.duration(ContinuousClock.now - started)), max payload \(Human.bytes(connected.maxPayload))"
            }
            guard connected, let connection else { return }
            await report.check("round trip") {
                let started = ContinuousClock.now
                try await connection.flush()
                return Human.duration(ContinuousClock.now - started)
            }
            let jetStream = connection.jetStream()
            let jetStreamAnswers = await report.check("jetstream", failing: .unavailable) {
                // $JS.API.INFO: reads the account, writes nothing.
                let account = try await jetStream.accountInfo()
                var text = "\(account.streams) stream(s), \(account.consumers) consumer(s), storage \(Human.bytes(account.storage)), memory \(Human.bytes(account.memory))"
                if account.limits.maxStreams >= 0 || account.limits.maxStorage >= 0 {
                    text += "; account limits: streams \(Human.limit(Int64(account.limits.maxStreams)) { Human.count($0) }), storage \(Human.limit(account.limits.maxStorage) { Human.bytes($0) })"
                }
                if let domain = account.domain { text += ", domain \(domain)" }
                return text
            }
            guard jetStreamAnswers else {
                await connection.close()
                return
            }
            let streamName = settings.jetStream.streamName
            var startable = false
            do {
                let info = try await jetStream.streamInfo(streamName)
                // The same check the bus makes at start: a stream it cannot use fails the doctor;
                // a difference it works with is reported and does not.
                let policy = settings.jetStream.streamUpdatePolicy
                let streamCheck = JetStreamEventBus.StreamCheck(stream: info.configuration, configuration: settings.jetStream)
                if !streamCheck.blockingProblems(policy: policy).isEmpty {
                    report.fail("stream \(streamName)", streamCheck.refusal(policy: policy))
                } else {
                    let note = streamCheck.differences.isEmpty ? "matches the configuration" : "usable by the bus, \(streamCheck.differences.count) difference(s) kept"
                    report.ok("stream \(streamName)", "\(Human.count(info.state.messages)) events, \(info.configuration.replicas) replica(s), \(note)")
                    startable = streamCheck.problems.isEmpty
                }
                for problem in streamCheck.problems where policy == .update && problem.fixedByUpdate {
                    report.info("stream \(streamName)", "the bus will update \(problem.field) at start (stream update policy 'update'): \(problem)")
                }
                for difference in streamCheck.differences {
                    report.info("stream \(streamName)", "\(difference) kept as it is\(policy == .update ? " unless the bus's update sets it" : "")")
                }
            } catch where isJetStreamError(error, NATSJetStreamErrorCode.streamNotFound) {
                await checkMissingStream(settings, jetStream, report)
            } catch {
                report.fail("stream \(streamName)", CLIError(classifying: error).message)
            }
            if startable {
                do {
                    let consumers = try await busConsumers(jetStream, stream: streamName, settings: settings)
                    report.ok("consumers", "\(consumers.count) on stream \(streamName)")
                    for consumer in consumers {
                        let info = consumer.info
                        let serves = consumer.identity.map { identity in
                            identity.group.map { "group \($0) on \(identity.pattern)" } ?? "subscriber without group on \(identity.pattern)"
                        } ?? "not made by the bus"
                        report.info(
                            "consumer \(info.name)",
                            "\(serves): pending \(info.pendingCount), ack pending \(info.ackPendingCount), redelivered \(info.redeliveredCount), waiting pulls \(info.waitingCount)")
                    }
                } catch {
                    report.fail("consumers", CLIError(classifying: error).message)
                }
            }
            await connection.close()
            if startable {
                await checkHealth(settings, report)
            } else {
                report.info("health", "not checked: the bus would \(report.failures.isEmpty ? "create or update" : "not start with") the stream, and the doctor changes nothing")
            }
        }

        /// No stream yet: normal before the first start, unless another stream already takes the
        /// bus's subjects (then the bus could not create its own).
        func checkMissingStream(_ settings: EventBusSettings, _ jetStream: NATSJetStream, _ report: Report) async {
            let config = settings.jetStream
            do {
                var overlapping: [String] = []
                for subject in config.effectiveStreamSubjects {
                    overlapping += try await jetStream.streamNames(subject: subject)
                }
                overlapping = Array(Set(overlapping)).sorted()
                if !overlapping.isEmpty {
                    report.fail(
                        "stream \(config.streamName)",
                        "does not exist, and the bus cannot create it: stream(s) \(overlapping.joined(separator: ", ")) already store \(config.effectiveStreamSubjects.joined(separator: ", ")) (JetStream refuses overlapping subjects); point EVENT_BUS_JETSTREAM_STREAM at that stream, or change EVENT_BUS_JETSTREAM_SUBJECT_PREFIX")
                    return
                }
            } catch {
                report.fail("stream \(config.streamName)", CLIError(classifying: error).message)
                return
            }
            let maxAge = config.maxAge == .zero ? "unlimited" : Human.duration(config.maxAge)
            report.info(
                "stream \(config.streamName)",
                "does not exist yet: the first start of the bus (a service, or `eventbus publish`) creates it (subjects \(config.effectiveStreamSubjects.joined(separator: ", ")), \(config.storage.rawValue) storage, \(config.replicas) replica(s), max age \(maxAge))")
        }

        /// The bus's own health, as a readiness probe reads it: a bus that cannot start is not
        /// ready. Started with the update policy off, so that the doctor never changes the stream.
        func checkHealth(_ settings: EventBusSettings, _ report: Report) async {
            var configuration = settings.jetStream
            configuration.streamUpdatePolicy = .never
            let eventBus = JetStreamEventBus(configuration: configuration, logger: bus.logger())
            let startError: (any Error)?
            do {
                try await eventBus.start()
                startError = nil
            } catch {
                startError = error
            }
            let health = await eventBus.health()
            await eventBus.close()
            let summary = "\(health.status), connection \(health.connection)" + (health.server.map { " to \($0)" } ?? "")
                + (startError.map { "; the bus did not start: \(CLIError(classifying: $0).message)" } ?? "")
            if health.isReady {
                report.ok("health", summary)
            } else {
                report.fail("health", summary)
            }
        }
    }
}

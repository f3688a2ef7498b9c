import ArgumentParser
import EventBus
import EventBusBootstrap
import EventBusJetStream
import Foundation
import Logging
import NATS

/// `eventbus`: publish, subscribe and request from the command line, inspect the JetStream streams
/// and consumers, check a deployment, and measure publish rates. It reads the same `EVENT_BUS_*`
/// variables as a service (docs/configuration.md); `--server` and `--creds` override them.
@main
struct EventBusCLI: AsyncParsableCommand {
    /// This tool's version.
    static let version = "0.1.0"

    static let configuration = CommandConfiguration(
        commandName: "eventbus",
        abstract: "Publish, subscribe, request, inspect and check the event bus configured by EVENT_BUS_* variables.",
        discussion: """
            Every command takes --server and --creds (override EVENT_BUS_NATS_SERVERS and the \
            authentication), --json (one JSON object per line) and --log-level.

            Exit status: 0 success; 1 the operation failed; 2 doctor: a check failed; \
            64 usage error; 66 not found; 69 server unavailable (no connection, no JetStream, \
            nobody answered); 75 timed out; 77 authentication or permission refused; \
            78 invalid configuration (EVENT_BUS_* variables, --server, --creds); 130 interrupted.
            """,
        version: "eventbus \(version) (libnats \(NATSNativePath.current.libraryVersion))",
        subcommands: [
            Publish.self,
            Subscribe.self,
            Request.self,
            StreamCommand.self,
            ConsumerCommand.self,
            DeadLetterCommand.self,
            Doctor.self,
            Bench.self,
            StreamInfoAlias.self,
            ConsumerInfoAlias.self,
        ])

    /// Without a subcommand: the help, and a usage error for a script that forgot the command.
    func run() async throws {
        FileHandle.standardError.write(Data((Self.helpMessage() + "\n").utf8))
        throw ExitCode(ExitStatus.usage.rawValue)
    }

    /// Runs the command like `AsyncParsableCommand.main()`, except that an error the command
    /// throws is printed once, escaped (its text may quote a server's answer or an event), and
    /// ends the process with the status of its kind (``ExitStatus``).
    static func main() async {
        LoggingSystem.bootstrap(TerminalSafeLogHandler.init)
        let command: any ParsableCommand
        do {
            command = try parseAsRoot()
        } catch {
            exit(withError: error)
        }
        do {
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                var command = command
                try command.run()
            }
        } catch let error as ExitCode {
            exit(withError: error)
        } catch let error as CleanExit {
            exit(withError: error)
        } catch where String(reflecting: type(of: error)).hasPrefix("ArgumentParser.") {
            // `--help` and `help <command>` answer by throwing the parser's own errors.
            exit(withError: error)
        } catch {
            let failure = CLIError(classifying: error)
            if busOptions(of: command)?.json == true {
                FileHandle.standardError.write(Data((failure.object.line + "\n").utf8))
            } else {
                FileHandle.standardError.write(Data("eventbus: error: \(shown(failure.message))\n".utf8))
            }
            Foundation.exit(failure.status.rawValue)
        }
    }

    /// The command's ``BusOptions``, wherever it declares them.
    static func busOptions(of command: any ParsableCommand) -> BusOptions? {
        for child in Mirror(reflecting: command).children {
            if let group = child.value as? OptionGroup<BusOptions> { return group.wrappedValue }
        }
        return nil
    }
}

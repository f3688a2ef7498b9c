import ArgumentParser
import EventBus
import EventBusJetStream
import Foundation
import NATS

/// The exit statuses of `eventbus`, so that a script can tell what went wrong without reading
/// the message (README, "Operating the bus"). The numbers above 63 are the BSD `sysexits.h`
/// ones.
enum ExitStatus: Int32, CaseIterable {
    /// It worked.
    case success = 0
    /// The command ran and failed for a reason not below: the server refused the operation, or
    /// an event could not be handled.
    case failure = 1
    /// `doctor`: a check failed (the configuration, servers and stream were reachable and read,
    /// and something is wrong with them).
    case checkFailed = 2
    /// EX_USAGE: an unknown command or option, a bad value, a missing argument, no subcommand;
    /// a command that needs a shared bus run on the in-memory one.
    case usage = 64
    /// EX_NOINPUT: the stream, consumer or group named does not exist, or `--data-file` cannot be
    /// read.
    case notFound = 66
    /// EX_UNAVAILABLE: no server could be reached, JetStream is not enabled, nobody answered.
    case unavailable = 69
    /// EX_TEMPFAIL: the server did not answer in time; trying again may work.
    case timeout = 75
    /// EX_NOPERM: the server rejected the credentials, or this identity may not do that.
    case permission = 77
    /// EX_CONFIG: an `EVENT_BUS_*` variable (or `--server`, `--creds`) is invalid.
    case configuration = 78
    /// Stopped by SIGINT or SIGTERM before the command finished (128 + SIGINT, as a shell reports).
    case interrupted = 130
}

/// An error the CLI reports itself: one message, one exit status.
struct CLIError: Error, CustomStringConvertible {
    var status: ExitStatus
    var message: String
    /// The error's code for `--json` (`notFound`, `EventBusError.timeout`, ...).
    var code: String

    init(_ status: ExitStatus, _ message: String, code: String? = nil) {
        self.status = status
        self.message = message
        self.code = code ?? "\(status)"
    }

    var description: String { message }

    /// Classifies any error a command throws: the status a script sees, and the message once
    /// (no source location, no underlying error repeating what the message already says).
    init(classifying error: any Error) {
        switch error {
        case let error as CLIError:
            self = error
        case let error as ValidationError:
            self.init(.usage, error.message, code: "usage")
        case is CancellationError:
            self.init(.interrupted, "interrupted", code: "interrupted")
        case let error as NATSError:
            self.init(Self.status(of: error), error.message, code: "NATSError.\(error.code)")
        case let error as EventBusError:
            var message = error.message
            var status = Self.status(of: error)
            if let underlying = error.underlying {
                let inner = CLIError(classifying: underlying)
                // The bus's message usually quotes its cause already; say the cause only if not.
                if !message.contains(inner.message) { message += ": " + inner.message }
                // The cause knows better when something was not found.
                if inner.status == .notFound { status = .notFound }
            }
            self.init(status, message, code: "EventBusError.\(error.code)")
        default:
            self.init(.failure, String(describing: error), code: "failure")
        }
    }

    static func status(of error: NATSError) -> ExitStatus {
        switch error.jetStreamErrorCode {
        case NATSJetStreamErrorCode.streamNotFound, NATSJetStreamErrorCode.consumerNotFound, NATSJetStreamErrorCode.noMessageFound:
            return .notFound
        default: break
        }
        switch error.code {
        case .noServers, .notConnected, .connectionClosed, .connectionDraining, .disconnected, .jetStreamNotEnabled,
            .noResponders, .tls, .ioError:
            return .unavailable
        case .authenticationFailed, .permissionDenied: return .permission
        case .timeout: return .timeout
        case .invalidSubject, .invalidName, .invalidArgument, .invalidHeader, .invalidQueueGroup, .payloadTooLarge: return .usage
        case .invalidURL, .invalidConfiguration: return .configuration
        case .cancelled: return .interrupted
        default: return .failure
        }
    }

    static func status(of error: EventBusError) -> ExitStatus {
        switch error.code {
        case .backendUnavailable, .noResponders, .closed: .unavailable
        case .permissionDenied: .permission
        case .timeout: .timeout
        case .invalidSubject, .invalidPattern, .invalidEvent, .invalidOption: .usage
        // The stream exists but cannot carry the bus: the operator's settings must change.
        case .streamUnusable: .configuration
        default: .failure
        }
    }

    /// The error as `--json` prints it on standard error.
    var object: JSONObject {
        ["error": .object(["code": .string(code), "message": .string(message), "exit_status": .int(status.rawValue)])]
    }
}

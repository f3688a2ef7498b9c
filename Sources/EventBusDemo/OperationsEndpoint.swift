import EventBus
import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus

/// The demo's operations endpoint (opt-in with `--ops-port`): a minimal HTTP/1.1 server for
/// probes and scrapes, nothing else.
///
/// - `GET /health/live`: 200 while the process runs.
/// - `GET /health/ready`: 200 when the bus is connected (or in process) and every subscription
///   runs, 503 otherwise; the body is the bus's ``EventBusHealth`` as JSON either way.
/// - `GET /metrics`: the Prometheus text format of everything recorded through swift-metrics.
///
/// One response per connection (`Connection: close`): probes and scrapers open one per request
/// anyway, and it keeps the handler without keep-alive bookkeeping.
final class OperationsEndpoint: Sendable {
    typealias HealthSource = @Sendable () async -> EventBusHealth

    private let channel: any Channel
    /// The address the server listens on (the port the system chose when asked for 0).
    let localAddress: String

    private init(channel: any Channel) {
        self.channel = channel
        localAddress = channel.localAddress.map { "\($0.ipAddress ?? "?"):\($0.port ?? 0)" } ?? "?"
    }

    /// Binds `host:port` and serves until ``stop()``.
    static func start(
        host: String, port: Int, registry: PrometheusCollectorRegistry, health: @escaping HealthSource
    ) async throws -> OperationsEndpoint {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                // On the channel's event loop already: the handler never crosses threads.
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(RequestHandler(registry: registry, health: health))
                }
            }
            .bind(host: host, port: port)
            .get()
        return OperationsEndpoint(channel: channel)
    }

    /// Stops listening; requests in progress finish.
    func stop() async {
        try? await channel.close()
    }

    /// Answers one request per connection.
    private final class RequestHandler: ChannelInboundHandler {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart

        let registry: PrometheusCollectorRegistry
        let health: HealthSource

        init(registry: PrometheusCollectorRegistry, health: @escaping HealthSource) {
            self.registry = registry
            self.health = health
        }

        /// The request head, kept until its end arrives (bodies are ignored). Only touched on
        /// the channel's event loop.
        private var pending: HTTPRequestHead?

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let head):
                pending = head
            case .body:
                break
            case .end:
                guard let head = pending.take() else { return }
                respond(to: head, context: context)
            }
        }

        private func respond(to head: HTTPRequestHead, context: ChannelHandlerContext) {
            let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
            guard head.method == .GET || head.method == .HEAD else {
                write(.methodNotAllowed, "text/plain; charset=utf-8", Array("only GET and HEAD\n".utf8), head: head, context: context)
                return
            }
            switch path {
            case "/health/live":
                write(.ok, "text/plain; charset=utf-8", Array("live\n".utf8), head: head, context: context)
            case "/metrics":
                write(.ok, "text/plain; version=0.0.4; charset=utf-8", registry.emitToBuffer(), head: head, context: context)
            case "/health/ready":
                let health = self.health
                let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
                context.eventLoop.makeFutureWithTask { await health() }.whenSuccess { snapshot in
                    let (handler, context) = loopBound.value
                    handler.write(
                        snapshot.isReady ? .ok : .serviceUnavailable, "application/json",
                        Array((snapshot.json + "\n").utf8), head: head, context: context)
                }
            default:
                write(.notFound, "text/plain; charset=utf-8", Array("not found: try /health/live, /health/ready, /metrics\n".utf8), head: head, context: context)
            }
        }

        private func write(
            _ status: HTTPResponseStatus, _ contentType: String, _ body: [UInt8], head: HTTPRequestHead,
            context: ChannelHandlerContext
        ) {
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: contentType)
            headers.add(name: "Content-Length", value: "\(body.count)")
            headers.add(name: "Connection", value: "close")
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))), promise: nil)
            if head.method != .HEAD {
                var buffer = context.channel.allocator.buffer(capacity: body.count)
                buffer.writeBytes(body)
                context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
            }
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
        }
    }
}

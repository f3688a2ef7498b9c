import EventBusReliabilitySupport
import Foundation
import NATSTestSupport
import Testing

/// Set `EVENTBUS_SKIP_MULTIHOST=1` to skip the multi-host tests on a machine without root or
/// network namespaces; without it they fail, loudly, instead of passing without having run.
private let multiHostOptOut = ProcessInfo.processInfo.environment["EVENTBUS_SKIP_MULTIHOST"] == "1"

extension ReliabilityTests {
    /// Services on separate hosts (network namespaces) against a 3-node cluster on three more.
    @Suite("Across hosts", .enabled(if: !multiHostOptOut, "EVENTBUS_SKIP_MULTIHOST=1: multi-host tests skipped on purpose"))
    struct AcrossHosts {
        let profile = FaultProfile.current

        func requireLab() throws {
            if let reason = MultiHostLab.unavailableReason {
                Issue.record("""
                    MULTI-HOST TESTS CANNOT RUN HERE: \(reason).
                    They need root and iproute2 (`ip netns`); set EVENTBUS_SKIP_MULTIHOST=1 to skip them knowingly.
                    """)
                throw NetworkNamespaceLab.Failure(description: reason)
            }
        }

        /// eventbus-demo across hosts: `orders` (with `inventory`) on one host, a `billing` worker
        /// on each of two others, every process configured only by EVENT_BUS_* variables listing
        /// the three servers. Every good order is billed exactly once across the hosts, each
        /// worker gets a share, declined orders are never billed.
        @Test("M1: eventbus-demo across hosts bills every order exactly once, each worker a share", .timeLimit(.minutes(10)))
        func demoAcrossHosts() async throws {
            try requireLab()
            let began = ContinuousClock.now
            var result = ReliabilityResult(test: "M1", title: "eventbus-demo: orders host, billing-a and billing-b hosts, 3 server hosts")
            let hosts = try await MultiHostLab()
            try await hosts.use { try await runDemoAcrossHosts(hosts, began: began, result: &result) }
        }

        func runDemoAcrossHosts(_ hosts: MultiHostLab, began: ContinuousClock.Instant, result: inout ReliabilityResult) async throws {
            let demo = try ServicePrograms.demo()
            result.faults.append(FaultEvent("none: each service on its own host"))

            let inventory = try hosts.start(
                demo, ["inventory", "--max-seconds", "600"], on: "orders", label: "inventory", environment: hosts.environment(name: "inventory"))
            var workers: [String: LabProcess] = [:]
            for host in ["billing-a", "billing-b"] {
                workers[host] = try hosts.start(
                    demo, ["billing", "--worker", host, "--max-seconds", "600"], on: host, label: host,
                    environment: hosts.environment(name: host))
            }
            for service in [inventory] + Array(workers.values) {
                let ready = await eventually(timeout: .seconds(60)) { logLines(service).contains("READY") }
                #expect(ready, "\(service.command) on \(service.host) not ready: \(service.tailOfLog())")
            }
            // The billing group's durable consumer exists once a worker subscribed: only then do
            // orders placed now reach it (the demo's billing starts at new events).
            _ = try await hosts.audit(["--wait-consumer", "billing-", "--read", "none"], label: "audit-ready")

            let count = profile.multiHostEvents
            let runID = "m1\(UUID().uuidString.prefix(6).lowercased())"
            let orders = try hosts.start(
                demo, ["orders", "--count", "\(count)", "--run-id", runID], on: "orders", label: "orders",
                environment: hosts.environment(name: "orders"))
            let placed = try await offPool { orders.waitForExit(timeout: .seconds(300)) }
            #expect(placed && orders.exitStatus == 0, "orders did not finish: \(orders.tailOfLog())")

            let orderID = { (number: Int) in "order-\(String(repeating: "0", count: max(0, 4 - String(number).count)))\(number)" }
            let poison = Set((0..<count).filter { $0 % 10 == 7 }.map(orderID))
            let published = logLines(orders).filter { $0.hasPrefix("PUBLISHED ") }.map { String($0.split(separator: " ")[1]) }
            let good = Set(published).subtracting(poison)
            func billed(_ host: String) -> [String] {
                logLines(workers[host]!).filter { $0.hasPrefix("BILLED ") }.map { String($0.split(separator: " ")[1]) }
            }
            let allBilled = await eventually(timeout: .seconds(120)) { Set(billed("billing-a") + billed("billing-b")).isSuperset(of: good) }
            #expect(allBilled, "not every order was billed within 120 s")
            try await Task.sleep(for: .seconds(2))  // a second billing of anything would show by now

            let billedA = billed("billing-a")
            let billedB = billed("billing-b")
            let everything = billedA + billedB
            let twice = Dictionary(grouping: everything, by: { $0 }).filter { $0.value.count > 1 }.keys.sorted()
            #expect(published.count == count, "orders published \(published.count) of \(count)")
            #expect(twice.isEmpty, "billed more than once: \(twice.prefix(5))")
            #expect(Set(everything) == good, "billed set differs from the good orders")
            #expect(Set(everything).isDisjoint(with: poison), "a declined order was billed")
            #expect(billedA.count >= good.count / 10 && billedB.count >= good.count / 10, "a worker got almost nothing: \(billedA.count) / \(billedB.count)")

            // The stream holds each order event once.
            let records = try await withRetries(timeout: .seconds(60)) { try await hosts.audit(["--read", "orders.created"], label: "audit-final") }
            let stored = records.compactMap(\.storedMessage)
            let history = published.map {
                PublishRecord(id: "\($0)-created-\(runID)", outcome: .acked(sequence: 0, duplicate: false), attempts: 1, startedAt: 0, completedAt: 0)
            }
            let report = ConsistencyChecker.check(published: history, stored: stored)
            result.take(report)
            result.notes.append("billed: billing-a \(billedA.count), billing-b \(billedB.count), twice \(twice.count); declined orders \(poison.count) never billed")
            result.notes.append("services: eventbus-demo orders+inventory / billing / billing, EVENT_BUS_NATS_SERVERS=\(hosts.serverList)")
            result.seconds = (ContinuousClock.now - began).seconds
            result.record()
            print("M1: \(report)")
            #expect(report.isValid, "\(report)")
        }

        /// A billing group with one worker on each of two hosts; while both are busy, one worker's
        /// host is cut off the network. The other worker takes over the events the cut one held
        /// un-acked, once their ack wait (5 s) expired; every event is acknowledged on the server
        /// in the end and nothing is lost.
        @Test("M2: a worker host cut off: the other takes over its un-acked events after ack wait", .timeLimit(.minutes(10)))
        func workerHostCutOff() async throws {
            try requireLab()
            let began = ContinuousClock.now
            var result = ReliabilityResult(test: "M2", title: "billing group on two hosts; billing-b's host cut off mid-stream (ack wait 5 s)")
            let hosts = try await MultiHostLab()
            try await hosts.use { try await runWorkerHostCutOff(hosts, began: began, result: &result) }
        }

        func runWorkerHostCutOff(_ hosts: MultiHostLab, began: ContinuousClock.Instant, result: inout ReliabilityResult) async throws {
            let agent = try ServicePrograms.agent()
            let ackWait = 5.0
            let busSettings = [
                "EVENT_BUS_JETSTREAM_ACK_WAIT_MS": "\(Int(ackWait * 1_000))",
                "EVENT_BUS_JETSTREAM_MAX_ACK_PENDING": "32",
                "EVENT_BUS_NATS_PING_INTERVAL_MS": "2000",
            ]
            var logs: [String: String] = [:]
            var workers: [String: LabProcess] = [:]
            for host in ["billing-a", "billing-b"] {
                logs[host] = "\(hosts.lab.workDirectory)/\(host).jsonl"
                // 25 ms of work per event: two workers handle 80 events/s, less than the 100/s
                // published, so each always holds events it has not acked yet.
                workers[host] = try hosts.start(
                    agent, ["billing", "--worker", host, "--work-ms", "25", "--log", logs[host]!], on: host, label: host,
                    environment: hosts.environment(name: host, busSettings))
            }
            for (host, worker) in workers {
                let ready = await eventually(timeout: .seconds(60)) { readAgentLog(logs[host]!).contains { $0.kind == "ready" } }
                #expect(ready, "\(host) not ready: \(worker.tailOfLog())")
            }

            let count = profile.multiHostEvents
            let runID = "m2\(UUID().uuidString.prefix(6).lowercased())"
            let publisherLog = "\(hosts.lab.workDirectory)/orders.jsonl"
            let publisher = try hosts.start(
                agent, ["publisher", "--count", "\(count)", "--rate", "100", "--id-prefix", runID, "--log", publisherLog], on: "orders",
                label: "orders", environment: hosts.environment(name: "orders", busSettings))

            // Cut billing-b off once it is well into its share.
            let busy = await eventually(timeout: .seconds(60)) {
                readAgentLog(logs["billing-b"]!).filter { $0.kind == "delivery" }.count >= count / 6
            }
            #expect(busy, "billing-b received too little before the cut")
            let cut = FaultEvent("billing-b host cut off (switch port down)")
            try await offPool { try hosts.lab.disconnect("billing-b") }
            result.faults.append(cut)

            let published = try await offPool { publisher.waitForExit(timeout: .seconds(300)) }
            #expect(published && publisher.exitStatus == 0, "publisher did not finish: \(publisher.tailOfLog())")
            let history = readAgentLog(publisherLog).compactMap(\.publishRecord)
            func deliveries(_ host: String) -> [DeliveryRecord] { readAgentLog(logs[host]!).compactMap(\.deliveryRecord) }

            // Done when the server has nothing left: nothing pending, nothing awaiting an ack (what
            // billing-b held must have expired and been acked by billing-a).
            var state: AgentRecord?
            let settled = await eventually(timeout: .seconds(120)) {
                let records = (try? await hosts.audit(["--read", "none"], label: "audit-state")) ?? []
                state = records.first { $0.kind == "consumer" && ($0.name ?? "").hasPrefix("billing-") }
                return state?.pending == 0 && state?.ackPending == 0
            }
            let settledAt = wallClock()
            #expect(settled, "the billing consumer still has work: pending \(state?.pending ?? 0), awaiting ack \(state?.ackPending ?? 0)")

            let deliveriesA = deliveries("billing-a")
            let deliveriesB = deliveries("billing-b")
            let firstToB = Dictionary(deliveriesB.map { ($0.id, $0.at) }, uniquingKeysWith: min)
            let takeovers = deliveriesA.filter { $0.deliveryCount > 1 && firstToB[$0.id] != nil }
            let takeoverDelays = takeovers.map { $0.at - firstToB[$0.id]! }
            #expect(!takeovers.isEmpty, "billing-a never received an event billing-b had held")
            // A redelivery (count > 1) of an event billing-b never settled means its ack wait expired.
            // Measured from when billing-b's code got it, which can be later than the server sent it
            // (its client buffer), so the bound is loose; docs/reliability.md gives the figures.
            #expect(takeoverDelays.allSatisfy { $0 >= ackWait * 0.5 }, "an event moved long before its ack wait expired: \(takeoverDelays.min() ?? 0) s")
            let bAfterCut = deliveriesB.filter { $0.at > cut.at }.count
            // billing-b's acks are sent without waiting: those it sent after the cut were lost with
            // the link, so these events were billed on both hosts (at least once, as promised).
            let ackedLocallyByB = Set(readAgentLog(logs["billing-b"]!).filter { $0.kind == "ack" && $0.ok == true }.compactMap(\.id))
            let billedTwice = takeovers.filter { ackedLocallyByB.contains($0.id) }.count

            let records = try await withRetries(timeout: .seconds(60)) { try await hosts.audit(["--read", "order.created"], label: "audit-final") }
            let stored = records.compactMap(\.storedMessage)
            let report = ConsistencyChecker.check(published: history, stored: stored, deliveries: deliveriesA + deliveriesB)
            result.take(report)
            result.recoverySeconds = [takeoverDelays.max() ?? 0]
            result.notes.append("\(deliveriesA.count) deliveries to billing-a, \(deliveriesB.count) to billing-b (\(bAfterCut) of them from its buffer after the cut)")
            result.notes.append("\(billedTwice) of those billing-b had finished and acked after the cut (ack lost with the link): billed on both hosts")
            result.notes.append(
                "\(takeovers.count) events held un-acked by billing-b went to billing-a after \(String(format: "%.1f", takeoverDelays.min() ?? 0))-\(String(format: "%.1f", takeoverDelays.max() ?? 0)) s (ack wait \(Int(ackWait)) s); recovery = longest of those")
            result.notes.append(
                "server: billing consumer pending \(state?.pending ?? 0), awaiting ack \(state?.ackPending ?? 0) \(String(format: "%.0f", settledAt - cut.at)) s after the cut")
            result.seconds = (ContinuousClock.now - began).seconds
            result.record()
            print("M2: \(report)")
            #expect(report.isValid, "\(report)")
            #expect(report.acked == count, "\(report)")
        }
    }
}

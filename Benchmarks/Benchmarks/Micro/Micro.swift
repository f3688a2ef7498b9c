import Benchmark
import BenchmarkSupport
import NATS

// Server-free micro benchmarks of what the NATS module does on every publish or receive, through
// its public API only. 1,000 operations per iteration (scaling factor kilo), so the scaled
// figures read per operation. They run in CI's quick mode.
//
// Receiving copies payloads into shared slabs, which is internal (PayloadSlabWriter); its public
// entry point is a subscription, measured with a server in W2. Here the public one-allocation
// copy, NATSPayload(copying:), stands beside it for the cost a slab saves.

let benchmarks: @Sendable () -> Void = {
    let configuration = BenchmarkSettings.micro()

    Benchmark("subject validation publish 4 tokens", configuration: configuration) { benchmark in
        let subject = "orders.eu.created.v1"
        for _ in benchmark.scaledIterations {
            blackHole(NATSValidation.subjectViolation(subject, for: .publish))
        }
    }

    Benchmark("subject validation subscribe wildcards", configuration: configuration) { benchmark in
        let subject = "orders.*.created.>"
        for _ in benchmark.scaledIterations {
            blackHole(NATSValidation.subjectViolation(subject, for: .subscribe))
        }
    }

    Benchmark("subject validation long 64 bytes", configuration: configuration) { benchmark in
        // Longer than a small string: exercises the native-string path of withUTF8.
        let subject = "tenant-0042.region-eu-west.service-billing.events.invoice.created"
        for _ in benchmark.scaledIterations {
            blackHole(NATSValidation.subjectViolation(subject, for: .publish))
        }
    }

    Benchmark("subject validation rejects empty token", configuration: configuration) { benchmark in
        let subject = "orders..created"
        for _ in benchmark.scaledIterations {
            blackHole(NATSValidation.subjectViolation(subject, for: .publish))
        }
    }

    let headers: NATSHeaders = [
        "Nats-Msg-Id": "6f1c2a9e-47b1-4c4e-9a52-0c1d2e3f4a5b",
        "ce-type": "order.created",
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    ]

    Benchmark("header encodedSize 3 fields", configuration: configuration) { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(headers.encodedSize)
        }
    }

    Benchmark("header validation 3 fields", configuration: configuration) { benchmark in
        for _ in benchmark.scaledIterations {
            do { try NATSValidation.validateHeaders(headers) } catch { benchmark.error("\(error)") }
        }
    }

    Benchmark("header build 3 fields", configuration: configuration) { benchmark in
        for index in benchmark.scaledIterations {
            var built = NATSHeaders()
            built.add("id-\(index & 7)", for: "Nats-Msg-Id")
            built.add("order.created", for: "ce-type")
            built.add("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", for: "traceparent")
            blackHole(built)
        }
    }

    Benchmark("payload copy 128 B NATSPayload(copying:)", configuration: configuration) { benchmark in
        Workload.payload.withUnsafeBytes { bytes in
            for _ in benchmark.scaledIterations {
                blackHole(NATSPayload(copying: bytes))
            }
        }
    }

    Benchmark("payload from [UInt8] 128 B", configuration: configuration) { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(NATSPayload(Workload.payload))
        }
    }

    Benchmark("payload read 128 B withUnsafeBytes", configuration: configuration) { benchmark in
        let payload = NATSPayload(Workload.payload)
        for _ in benchmark.scaledIterations {
            blackHole(payload.withUnsafeBytes { $0.count &+ Int($0[0]) })
        }
    }
}

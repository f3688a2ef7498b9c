import Benchmark

// Live workloads against a nats-server (docs/DESIGN.md, "Workloads for benchmarks"). Each workload
// registers a raw cnats variant and a NATS module variant; package-benchmark runs benchmarks in
// name order, each in a process of its own, so "Wn NATS" and "Wn raw" follow each other, and
// run.sh repeats the whole suite so that they interleave. A new workload (W4-W8) is one more file
// with a register function called here.
let benchmarks: @Sendable () -> Void = {
    registerW1()
    registerW2()
    registerW3()
}

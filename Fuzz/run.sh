#!/usr/bin/env bash
# Builds the fuzz targets (libFuzzer and AddressSanitizer) and runs each one for a while.
#
#   Fuzz/run.sh [target] [seconds]      # make fuzz: every target, 600 s each
#
# target: all (default), validation, server-url, header-block, jetstream-ack, cloudevents, or
# the executable's name (FuzzHeaderBlock). Each target starts from its committed seeds
# (Fuzz/Seeds/<Target>/, hand-written valid inputs and the inputs of fixed crashes) plus what
# earlier runs found; its working corpus, log and crash artifacts stay in .build/fuzz/<Target>/.
# Prints one line per target: seconds, runs, execs/s, crashes, corpus size. Exits non-zero when
# a target crashed; rerun a crash with `.build/fuzz/bin/<Target> <artifact>`.
#
# Extra libFuzzer flags may come from FUZZ_FLAGS (for example FUZZ_FLAGS=-jobs=2).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
swift=${SWIFT:-$(command -v swift 2>/dev/null || echo /opt/swift/usr/bin/swift)}
target=${1:-all}
seconds=${2:-600}

all=(FuzzValidation FuzzServerURL FuzzHeaderBlock FuzzJetStreamAck FuzzCloudEvents)
case "$target" in
    all) targets=("${all[@]}") ;;
    validation) targets=(FuzzValidation) ;;
    server-url) targets=(FuzzServerURL) ;;
    header-block) targets=(FuzzHeaderBlock) ;;
    jetstream-ack) targets=(FuzzJetStreamAck) ;;
    cloudevents) targets=(FuzzCloudEvents) ;;
    Fuzz*) targets=("$target") ;;
    *) echo "unknown target '$target'; one of: all validation server-url header-block jetstream-ack cloudevents" >&2; exit 2 ;;
esac

# -sanitize=fuzzer links libFuzzer (the toolchain's libclang_rt.fuzzer) and instruments every
# module for coverage; -parse-as-library because each target starts from @main; -enable-testing
# because the targets reach internal parsers with @testable import.
build_flags=(-c release --package-path "$here"
    -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library -Xswiftc -enable-testing)
mkdir -p "$root/.build/fuzz"
echo "building the fuzz targets (release, fuzzer + address sanitizer)"
"$swift" build "${build_flags[@]}" >"$root/.build/fuzz/build.log" 2>&1 || { tail -40 "$root/.build/fuzz/build.log"; exit 1; }
bin=$("$swift" build "${build_flags[@]}" --show-bin-path)
ln -sfn "$bin" "$root/.build/fuzz/bin"

# Swift's own crash handler would print a backtrace by reading the crashed process's memory,
# which AddressSanitizer reports as an overflow of its own: libFuzzer's report is enough.
export SWIFT_BACKTRACE=enable=no

status=0
summary=()
for name in "${targets[@]}"; do
    work="$root/.build/fuzz/$name"
    mkdir -p "$work/corpus"
    cp -n "$here/Seeds/$name"/* "$work/corpus/" 2>/dev/null || true
    before=$(find "$work" -maxdepth 1 -name 'crash-*' -o -maxdepth 1 -name 'leak-*' -o -maxdepth 1 -name 'timeout-*' -o -maxdepth 1 -name 'oom-*' | wc -l)
    echo "fuzzing $name for $seconds s (log: $work/log)"
    set +e
    "$bin/$name" -max_total_time="$seconds" -max_len=4096 -timeout=10 -print_final_stats=1 \
        -artifact_prefix="$work/" ${FUZZ_FLAGS:-} "$work/corpus" >"$work/log" 2>&1
    rc=$?
    set -e
    after=$(find "$work" -maxdepth 1 -name 'crash-*' -o -maxdepth 1 -name 'leak-*' -o -maxdepth 1 -name 'timeout-*' -o -maxdepth 1 -name 'oom-*' | wc -l)
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$work/log" | tail -1)
    took=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$work/log" | tail -1)
    corpus=$(find "$work/corpus" -type f | wc -l)
    crashes=$((after - before))
    if [ "$rc" -ne 0 ] && [ "$crashes" -eq 0 ]; then crashes="failed (exit $rc)"; fi
    line="$name: ${took:-?} s, ${runs:-?} runs, ${rate:-?} execs/s, crashes $crashes, corpus $corpus"
    echo "$line"
    summary+=("$line")
    if [ "$rc" -ne 0 ]; then
        status=1
        grep -E 'invariant failed|ERROR: (AddressSanitizer|libFuzzer)|Fatal error|Test unit written' "$work/log" | head -5 || true
    fi
done
echo
echo "summary"
printf '%s\n' "${summary[@]}"
exit $status

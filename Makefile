# Entry points for people and CI. `make test` is what CI runs (.ci/run).
SWIFT ?= $(shell command -v swift 2>/dev/null || echo /opt/swift/usr/bin/swift)

.PHONY: deps build test test-unit test-asan test-tsan fuzz demo docs bench bench-quick reliability reliability-short clean

## Install system packages and the project virtualenv (idempotent).
deps:
	./deploy/install-deps.sh

## Build everything (library, tools, tests).
build: deps
	$(SWIFT) build --build-tests

## Set everything up, then run the whole test suite (unit tests and tests against real nats-servers).
## The core NATS suites run a second time with cnats's public API only (see README, "cnats internals").
## The fault tests (short profile, about 3 minutes) run after the rest, not beside it: their
## clusters would take the 2 cores that other suites' timing-sensitive tests need. The suites
## that run the built executables (Tests/EventBusDemoTests: the demo's three services, every CLI
## command) have their own phase for the same reason: started beside everything else, dozens of
## debug-build processes and their servers made a 2 s request time out on a 2-core machine.
## Each phase runs under Tests/watchdog.py: a phase far over its usual time (about 2 min, 15 s,
## 15 s and 4 min on 2 cores) is stopped with the tests still running and their stacks printed.
test: deps
	$(SWIFT) build --build-tests
	Tests/watchdog.py 1200 $(SWIFT) test --skip-build --skip 'EventBusReliabilityTests.ReliabilityTests' --skip 'EventBusDemoTests'
	Tests/watchdog.py 600 $(SWIFT) test --skip-build --filter 'EventBusDemoTests'
	NATS_PUBLIC_API_ONLY=1 Tests/watchdog.py 600 $(SWIFT) test --skip-build --filter 'NATSTests'
	Tests/watchdog.py 1200 $(SWIFT) test --skip-build --filter 'EventBusReliabilityTests.ReliabilityTests'

## The test suites (with their real nats-servers) under AddressSanitizer, in their own build
## directory (.build-asan) so that the normal build stays as it is. The fault suite is left out:
## its timings do not hold under a sanitizer. LeakSanitizer is off by default: what it lists at
## exit are tasks and test fixtures still waiting when the process ends (docs/reliability.md);
## ASAN_OPTIONS=detect_leaks=1 turns it on. Timing-sensitive tests may fail at this speed.
ASAN_OPTIONS ?= detect_leaks=0
test-asan: deps
	$(SWIFT) build --build-tests --sanitize=address --scratch-path .build-asan
	ASAN_OPTIONS=$(ASAN_OPTIONS) $(SWIFT) test --skip-build --sanitize=address --scratch-path .build-asan \
		--skip 'EventBusReliabilityTests.ReliabilityTests'

## The same under ThreadSanitizer (.build-tsan), then Tests/Sanitizers/tsan-triage.py sorts the
## reports: with Swift 6.3 on Linux, accesses under Mutex.withLock and continuations resumed on
## another thread are reported though they do not race (see docs/reliability.md); the script
## prints every other report and fails when there is one. exitcode=0: a process's exit status
## is its own (the demo's process tests check it), not TSan's 66 for "reported something".
test-tsan: deps
	$(SWIFT) build --build-tests --sanitize=thread --scratch-path .build-tsan
	{ TSAN_OPTIONS="exitcode=0 $(TSAN_OPTIONS)" $(SWIFT) test --skip-build --sanitize=thread --scratch-path .build-tsan \
		--skip 'EventBusReliabilityTests.ReliabilityTests' 2>&1; echo $$? >.build-tsan/test.status; } \
		| tee .build-tsan/test.log
	python3 Tests/Sanitizers/tsan-triage.py .build-tsan/test.log
	exit $$(cat .build-tsan/test.status)

## libFuzzer targets (Fuzz/, a nested package) with AddressSanitizer: every target 600 s, or
## FUZZ_TARGET=header-block FUZZ_SECONDS=60. Crash artifacts: .build/fuzz/<Target>/.
fuzz:
	Fuzz/run.sh $(or $(FUZZ_TARGET),all) $(or $(FUZZ_SECONDS),600)

## Set everything up, then run the order workflow on the in-memory bus (EVENT_BUS_BACKEND switches it).
demo: deps
	$(SWIFT) build --product eventbus-demo
	.build/debug/eventbus-demo

## DocC documentation of the library modules (swift-docc-plugin): articles, tutorials and every
## public symbol, failing on any warning (a broken symbol link, say). Archives:
## .build/plugins/Swift-DocC/outputs/<Module>.doccarchive. Not part of `make test`.
DOC_MODULES = NATS EventBus EventBusJetStream EventBusBootstrap EventBusConformance
docs: deps
	$(SWIFT) package generate-documentation $(foreach module,$(DOC_MODULES),--target $(module)) --warnings-as-errors

## Only the tests that need no nats-server.
test-unit: deps
	$(SWIFT) test --skip 'NATSConnectionTests|NATSConnectionServiceTests|NATSTests.ReadmeExampleTests|JetStreamTests|JetStreamConsumerTests|NATSKeyValueTests|JetStreamConformanceTests|InteropTests|rolesAsSeparateProcesses|factoryMakesTheChosenBackend|unreachableServer|EventBusReliabilityTests.ReliabilityTests'

## Every benchmark (Benchmarks/, package-benchmark): raw cnats, the NATS module, the EventBus and
## nats.go (Benchmarks/natsgo) side by side in 5 interleaved rounds, then docs/performance.md from
## the results (about 35 minutes on 2 cores, plus a first release build of about 3).
bench: deps
	Benchmarks/run.sh full

## The server-free benchmarks (in-memory bus, micro), briefly: what CI runs.
bench-quick: deps
	Benchmarks/run.sh quick

## Fault tests, long profile (more kills, step-downs and events; about 15 minutes, needs root for
## the multi-host tests). Figures: .build/reliability/long.md, the source of docs/reliability.md.
reliability: deps
	EVENTBUS_FAULTS=long $(SWIFT) test --filter 'EventBusReliabilityTests'

## Fault tests at the size CI runs them in `make test` (about 3 minutes).
reliability-short: deps
	$(SWIFT) test --filter 'EventBusReliabilityTests'

clean:
	rm -rf .build

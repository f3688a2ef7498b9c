// Command natsgo-bench runs the live workloads W1-W8 of the project's benchmark report with
// nats.go (the NATS Go client), so that the report sets the Swift client beside the Go one,
// measured on the same machine in the same run (issue 15).
//
// Every connection uses nats.go's default options (nats.Connect(url) with no option: "default
// settings on both sides of the wire", the W3 responder included), and the JetStream contexts
// too, except W5's (PublishAsyncMaxPending 4,096: the workload's in-flight window, as raw cnats's
// MaxPending). Sizes, counts, the stream (EVENTS on events.>, file storage) and the consumers
// (durable, explicit ack, MaxAckPending 1,000; push ones with flow control and 5 s heartbeats)
// are the raw cnats baselines' (Benchmarks/Sources/BenchmarkSupport/Workload.swift,
// RawJetStream.swift; Benchmarks/Benchmarks/{CoreNATS,JetStream}). W2 sets the subscription's
// pending limits to a whole iteration, as raw does.
//
// As package-benchmark does, every workload runs in a process of its own (this program starting
// itself with -workload), against a nats-server of its own (127.0.0.1, a free port, a temporary
// store, stopped by its pid), with one warmup iteration and then the measured ones. Metrics, per
// iteration, measured the way the Swift benchmarks measure them: messages per second and process
// CPU time per message (CLOCK_MONOTONIC through Go's monotonic clock, CLOCK_PROCESS_CPUTIME_ID)
// around the measured part; for W3 and W8 every round trip's latency and the iteration's p50 and
// p99; peak resident memory (VmHWM, reset after the warmup through /proc/self/clear_refs, as
// package-benchmark samples from after the warmup); Go heap allocations during the measured part
// (runtime.MemStats.Mallocs, reported as mallocCountTotal).
//
// Usage (Benchmarks/run.sh builds it in GOPATH mode and runs it in every round of `full`):
//
//	natsgo-bench [-iterations N] [-run REGEXP] [-out FILE]
//
// -out writes a JSON document that Benchmarks/report.py pools with package-benchmark's
// results (variant "nats.go" of each workload). Environment: NATS_BENCH_ITERATIONS (default
// iterations, 5), NATS_SERVER_BIN (the server binary; otherwise the project's .venv, then PATH),
// NATS_BENCH_URL (a running server instead; nothing is started or stopped then).
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/nats-io/nats.go"
)

// The workloads' parameters: Benchmarks/Sources/BenchmarkSupport/Workload.swift.
const (
	payloadSize      = 128
	w1Messages       = 1_000_000
	w2Messages       = 1_000_000
	w3Requests       = 20_000
	w4Messages       = 20_000
	w5Messages       = 200_000
	w5InFlight       = 4_096
	w6Messages       = 200_000
	w6Batch          = 500
	w7Messages       = 200_000
	maxAckPending    = 1_000
	w8Messages       = 10_000
	streamName       = "EVENTS"
	streamSubjects   = "events.>"
	jetStreamSubject = "events.bench"
	receiveTimeout   = 60 * time.Second
	variant          = "nats.go"
)

var payload = []byte(strings.Repeat("x", payloadSize))

// ---- clocks and samples ---------------------------------------------------------------------

var epoch = time.Now()

// monotonicNanos reads the monotonic clock (Go's time.Since uses CLOCK_MONOTONIC).
func monotonicNanos() int64 { return int64(time.Since(epoch)) }

// processCPUNanos is CLOCK_PROCESS_CPUTIME_ID: every thread of this process, user and system.
func processCPUNanos() int64 {
	var ts syscall.Timespec
	const clockProcessCPUTimeID = 2
	syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockProcessCPUTimeID, uintptr(unsafe.Pointer(&ts)), 0)
	return ts.Nano()
}

func heapAllocations() uint64 {
	var stats runtime.MemStats
	runtime.ReadMemStats(&stats)
	return stats.Mallocs
}

// sample is one measured iteration.
type sample struct {
	operations int
	wall, cpu  int64
	mallocs    uint64
	latencies  []int64 // W3, W8: every round trip, ns
	running    bool
}

// start begins the measured part (allocation count first, so that reading it is not measured).
func (s *sample) start() {
	s.mallocs = heapAllocations()
	s.running = true
	s.cpu = processCPUNanos()
	s.wall = monotonicNanos()
}

// stop ends the measured part: `operations` messages (or round trips) were handled.
func (s *sample) stop(operations int) {
	wall, cpu := monotonicNanos(), processCPUNanos()
	s.wall, s.cpu = wall-s.wall, cpu-s.cpu
	s.mallocs = heapAllocations() - s.mallocs
	s.operations = operations
	s.running = false
}

// peakResidentBytes is VmHWM of /proc/self/status.
func peakResidentBytes() int64 {
	file, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer file.Close()
	scanner := bufio.NewScanner(file)
	for scanner.Scan() {
		line := scanner.Text()
		if strings.HasPrefix(line, "VmHWM:") {
			fields := strings.Fields(line)
			if len(fields) >= 2 {
				kib, _ := strconv.ParseInt(fields[1], 10, 64)
				return kib * 1024
			}
		}
	}
	return 0
}

// resetPeakResident sets VmHWM to the current resident size (Linux 4.0+), so that the peak
// covers the measured iterations only, as package-benchmark's sampling (started after the warmup).
func resetPeakResident() bool {
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
}

// percentile is the value at or below which `fraction` of the sorted samples lie (nearest rank, as
// an HDR histogram's valueAtPercentile).
func percentile(sorted []int64, fraction float64) int64 {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(fraction*float64(len(sorted)))) - 1
	if rank < 0 {
		rank = 0
	}
	return sorted[rank]
}

// ---- the server -------------------------------------------------------------------------------

type server struct {
	url       string
	process   *exec.Cmd
	exited    chan struct{} // closed when the process has exited (and been reaped)
	directory string
}

// locateServer: NATS_SERVER_BIN, then .venv/bin/nats-server of the project (searched upwards from
// this executable and the working directory), then PATH.
func locateServer() (string, error) {
	if explicit := os.Getenv("NATS_SERVER_BIN"); explicit != "" {
		if info, err := os.Stat(explicit); err == nil && !info.IsDir() {
			return explicit, nil
		}
	}
	var starts []string
	if executable, err := os.Executable(); err == nil {
		starts = append(starts, filepath.Dir(executable))
	}
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	for _, start := range starts {
		for directory := start; ; directory = filepath.Dir(directory) {
			candidate := filepath.Join(directory, ".venv", "bin", "nats-server")
			if info, err := os.Stat(candidate); err == nil && !info.IsDir() {
				return candidate, nil
			}
			if filepath.Dir(directory) == directory {
				break
			}
		}
	}
	if path, err := exec.LookPath("nats-server"); err == nil {
		return path, nil
	}
	return "", errors.New("no nats-server: set NATS_SERVER_BIN or run deploy/install-deps.sh")
}

func freePort() (int, error) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer listener.Close()
	return listener.Addr().(*net.TCPAddr).Port, nil
}

// answersINFO tells whether a NATS server on 127.0.0.1:port greets with INFO.
func answersINFO(port int) bool {
	connection, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
	if err != nil {
		return false
	}
	defer connection.Close()
	_ = connection.SetReadDeadline(time.Now().Add(time.Second))
	greeting := make([]byte, 4)
	_, err = io.ReadFull(connection, greeting)
	return err == nil && string(greeting) == "INFO"
}

// startServer starts a nats-server with JetStream (or adopts NATS_BENCH_URL) and waits until it
// accepts clients.
func startServer() (*server, error) {
	if external := os.Getenv("NATS_BENCH_URL"); external != "" {
		return &server{url: external}, nil
	}
	executable, err := locateServer()
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	directory, err := os.MkdirTemp("", fmt.Sprintf("natsgo-bench-%d-%d-", os.Getpid(), port))
	if err != nil {
		return nil, err
	}
	log, err := os.Create(filepath.Join(directory, "server.log"))
	if err != nil {
		os.RemoveAll(directory)
		return nil, err
	}
	defer log.Close()
	process := exec.Command(executable, "-a", "127.0.0.1", "-p", strconv.Itoa(port), "-js", "-sd", directory)
	process.Stdout, process.Stderr = log, log
	// The server goes with this process if it dies without stopping it.
	process.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := process.Start(); err != nil {
		os.RemoveAll(directory)
		return nil, err
	}
	s := &server{
		url: fmt.Sprintf("nats://127.0.0.1:%d", port), process: process, exited: make(chan struct{}), directory: directory,
	}
	go func() { _ = process.Wait(); close(s.exited) }()
	deadline := time.Now().Add(15 * time.Second)
	for !answersINFO(port) {
		select {
		case <-s.exited:
		default:
			if time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
				continue
			}
		}
		tail, _ := os.ReadFile(filepath.Join(directory, "server.log"))
		if len(tail) > 1000 {
			tail = tail[len(tail)-1000:]
		}
		s.stop()
		return nil, fmt.Errorf("nats-server did not start on port %d: %s", port, tail)
	}
	return s, nil
}

// stop stops the server by its pid (SIGTERM, SIGKILL after 10 s) and removes its store.
func (s *server) stop() {
	if s.process != nil && s.process.Process != nil {
		pid := s.process.Process.Pid
		_ = syscall.Kill(pid, syscall.SIGTERM)
		select {
		case <-s.exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(pid, syscall.SIGKILL)
			<-s.exited
		}
		s.process = nil
	}
	if s.directory != "" {
		os.RemoveAll(s.directory)
		s.directory = ""
	}
}

// ---- helpers ---------------------------------------------------------------------------------

func connect(url string) (*nats.Conn, error) {
	// nats.go's defaults: no option at all.
	return nats.Connect(url)
}

// connectTwo opens two connections with the defaults (a workload's two sides), or neither.
func connectTwo(url string) (*nats.Conn, *nats.Conn, error) {
	first, err := connect(url)
	if err != nil {
		return nil, nil, err
	}
	second, err := connect(url)
	if err != nil {
		first.Close()
		return nil, nil, err
	}
	return first, second, nil
}

// workloadStream creates the workloads' stream as raw cnats does (file storage, events.>) and
// empties it (a no-op on a fresh server; on NATS_BENCH_URL's it may hold an earlier run's).
func workloadStream(js nats.JetStreamContext) error {
	if _, err := js.AddStream(&nats.StreamConfig{
		Name: streamName, Subjects: []string{streamSubjects}, Storage: nats.FileStorage,
	}); err != nil {
		return fmt.Errorf("adding stream %s: %w", streamName, err)
	}
	return js.PurgeStream(streamName)
}

// preload stores count workload messages with asynchronous publishes, as raw's preloading.
func preload(nc *nats.Conn, count int) error {
	var failed int64
	js, err := nc.JetStream(nats.PublishAsyncMaxPending(w5InFlight),
		nats.PublishAsyncErrHandler(func(nats.JetStream, *nats.Msg, error) { atomic.AddInt64(&failed, 1) }))
	if err != nil {
		return err
	}
	for index := 0; index < count; index++ {
		if err := publishAsync(js); err != nil {
			return fmt.Errorf("preloading message %d: %w", index, err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(120 * time.Second):
		return fmt.Errorf("preloading: acks missing after 120 s")
	}
	if failed > 0 {
		return fmt.Errorf("preloading: %d of %d publishes failed", failed, count)
	}
	return nil
}

// publishAsync is one asynchronous JetStream publish, tried again while the window stays full
// (nats.go gives up after its stall wait of 200 ms, as cnats returns NATS_TIMEOUT after StallWait).
func publishAsync(js nats.JetStreamContext) error {
	for {
		_, err := js.PublishAsync(jetStreamSubject, payload)
		if err == nil || !strings.Contains(err.Error(), "stalled") {
			return err
		}
	}
}

func expectMessageCount(js nats.JetStreamContext, expected int) error {
	info, err := js.StreamInfo(streamName)
	if err != nil {
		return err
	}
	if info.State.Msgs != uint64(expected) {
		return fmt.Errorf("stream %s holds %d messages, expected %d", streamName, info.State.Msgs, expected)
	}
	return nil
}

// addConsumer creates the workloads' durable consumer as raw does: explicit acks, MaxAckPending
// 1,000, from the start (or only new messages); a push consumer (flow control, 5 s heartbeats)
// when deliverSubject is given.
func addConsumer(js nats.JetStreamContext, durable, deliverSubject string, deliverNew bool) error {
	config := &nats.ConsumerConfig{
		Durable: durable, AckPolicy: nats.AckExplicitPolicy, DeliverPolicy: nats.DeliverAllPolicy,
		MaxAckPending: maxAckPending,
	}
	if deliverNew {
		config.DeliverPolicy = nats.DeliverNewPolicy
	}
	if deliverSubject != "" {
		config.DeliverSubject = deliverSubject
		config.FlowControl = true
		config.Heartbeat = 5 * time.Second
	}
	if _, err := js.AddConsumer(streamName, config); err != nil {
		return fmt.Errorf("adding consumer %s: %w", durable, err)
	}
	return nil
}

// watchdog closes the returned channel when progress() stops moving for `stall` (so that a lost
// message fails the iteration instead of hanging it); close `done` to stop it.
func watchdog(progress func() int64, stall time.Duration, done <-chan struct{}) <-chan struct{} {
	stalled := make(chan struct{})
	go func() {
		last, since := progress(), time.Now()
		ticker := time.NewTicker(200 * time.Millisecond)
		defer ticker.Stop()
		for {
			select {
			case <-done:
				return
			case <-ticker.C:
				if now := progress(); now != last {
					last, since = now, time.Now()
				} else if time.Since(since) > stall {
					close(stalled)
					return
				}
			}
		}
	}()
	return stalled
}

// ---- the workloads ---------------------------------------------------------------------------

// fixture is what a workload's setup built; iterate runs one iteration (warmup or measured).
type fixture struct {
	iterate func(iteration int, s *sample) error
	close   func()
}

type workload struct {
	name, target string
	latency      bool
	setup        func(url string) (*fixture, error)
}

var workloads = []workload{
	{"W1", "CoreNATS", false, setupW1},
	{"W2", "CoreNATS", false, setupW2},
	{"W3", "CoreNATS", true, setupW3},
	{"W4", "JetStream", false, setupW4},
	{"W5", "JetStream", false, setupW5},
	{"W6", "JetStream", false, setupW6},
	{"W7", "JetStream", false, setupW7},
	{"W8", "JetStream", true, setupW8},
}

// W1: 1,000,000 core publishes of 128 bytes, then one flush (a PING/PONG round trip).
func setupW1(url string) (*fixture, error) {
	nc, err := connect(url)
	if err != nil {
		return nil, err
	}
	const subject = "bench.w1"
	return &fixture{
		iterate: func(_ int, s *sample) error {
			s.start()
			for i := 0; i < w1Messages; i++ {
				if err := nc.Publish(subject, payload); err != nil {
					return err
				}
			}
			if err := nc.Flush(); err != nil {
				return err
			}
			s.stop(w1Messages)
			return nil
		},
		close: nc.Close,
	}, nil
}

// W2: 1,000,000 core publishes with one subscriber (its own connection) in this process; the
// iteration ends when the subscriber counted every message. The subscription (new each iteration,
// interest confirmed by a flush) holds a whole iteration, as raw's: a dropped message fails.
func setupW2(url string) (*fixture, error) {
	publisher, subscriber, err := connectTwo(url)
	if err != nil {
		return nil, err
	}
	const subject = "bench.w2"
	return &fixture{
		iterate: func(_ int, s *sample) error {
			received := 0
			done := make(chan struct{})
			subscription, err := subscriber.Subscribe(subject, func(*nats.Msg) {
				// Counting is all this subscriber does (nats.go calls it on one goroutine).
				received++
				if received == w2Messages {
					close(done)
				}
			})
			if err != nil {
				return err
			}
			defer subscription.Unsubscribe()
			if err := subscription.SetPendingLimits(w2Messages, 1<<30); err != nil {
				return err
			}
			if err := subscriber.Flush(); err != nil {
				return err
			}
			s.start()
			for i := 0; i < w2Messages; i++ {
				if err := publisher.Publish(subject, payload); err != nil {
					return err
				}
			}
			deadline := time.Now().Add(receiveTimeout)
			ticker := time.NewTicker(200 * time.Millisecond)
			defer ticker.Stop()
			for waiting := true; waiting; {
				select {
				case <-done:
					waiting = false
				case <-ticker.C:
					dropped, _ := subscription.Dropped()
					if dropped > 0 || time.Now().After(deadline) {
						return fmt.Errorf("received fewer than %d, dropped %d (slow consumer)", w2Messages, dropped)
					}
				}
			}
			s.stop(w2Messages)
			return nil
		},
		close: func() { publisher.Close(); subscriber.Close() },
	}, nil
}

// W3: 20,000 sequential requests of 128 bytes to an echo responder in this process (its own
// connection, nats.go's defaults, replying from its subscription's handler).
func setupW3(url string) (*fixture, error) {
	requester, responder, err := connectTwo(url)
	if err != nil {
		return nil, err
	}
	const subject = "bench.w3"
	_, err = responder.Subscribe(subject, func(request *nats.Msg) { _ = request.Respond(request.Data) })
	if err == nil {
		err = responder.Flush()
	}
	if err != nil {
		requester.Close()
		responder.Close()
		return nil, err
	}
	return &fixture{
		iterate: func(_ int, s *sample) error {
			s.latencies = make([]int64, 0, w3Requests)
			s.start()
			for i := 0; i < w3Requests; i++ {
				start := monotonicNanos()
				if _, err := requester.Request(subject, payload, 5*time.Second); err != nil {
					return fmt.Errorf("request %d: %w", i, err)
				}
				s.latencies = append(s.latencies, monotonicNanos()-start)
			}
			s.stop(w3Requests)
			return nil
		},
		close: func() { responder.Close(); requester.Close() },
	}, nil
}

// W4: 20,000 JetStream publishes, one at a time, each awaiting its ack; the stream is purged
// before (unmeasured) and must hold exactly those afterwards.
func setupW4(url string) (*fixture, error) {
	nc, js, err := connectWithStream(url, 0)
	if err != nil {
		return nil, err
	}
	return &fixture{
		iterate: func(_ int, s *sample) error {
			if err := js.PurgeStream(streamName); err != nil {
				return err
			}
			s.start()
			for i := 0; i < w4Messages; i++ {
				if _, err := js.Publish(jetStreamSubject, payload); err != nil {
					return fmt.Errorf("publish %d: %w", i, err)
				}
			}
			s.stop(w4Messages)
			return expectMessageCount(js, w4Messages)
		},
		close: nc.Close,
	}, nil
}

// W5: 200,000 asynchronous JetStream publishes with at most 4,096 awaiting their acks; the
// iteration ends when every ack arrived.
func setupW5(url string) (*fixture, error) {
	nc, err := connect(url)
	if err != nil {
		return nil, err
	}
	var failed int64
	js, err := nc.JetStream(nats.PublishAsyncMaxPending(w5InFlight),
		nats.PublishAsyncErrHandler(func(nats.JetStream, *nats.Msg, error) { atomic.AddInt64(&failed, 1) }))
	if err == nil {
		err = workloadStream(js)
	}
	if err != nil {
		nc.Close()
		return nil, err
	}
	return &fixture{
		iterate: func(_ int, s *sample) error {
			if err := js.PurgeStream(streamName); err != nil {
				return err
			}
			failedBefore := atomic.LoadInt64(&failed)
			s.start()
			for i := 0; i < w5Messages; i++ {
				if err := publishAsync(js); err != nil {
					return fmt.Errorf("publish %d: %w", i, err)
				}
			}
			select {
			case <-js.PublishAsyncComplete():
			case <-time.After(receiveTimeout):
				return fmt.Errorf("%d acks missing after %v", js.PublishAsyncPending(), receiveTimeout)
			}
			s.stop(w5Messages)
			if failures := atomic.LoadInt64(&failed) - failedBefore; failures > 0 {
				return fmt.Errorf("%d publishes failed", failures)
			}
			return expectMessageCount(js, w5Messages)
		},
		close: nc.Close,
	}, nil
}

// connectWithStream connects with the defaults, creates the workload's stream (empty) and stores
// `stored` messages in it (none for 0).
func connectWithStream(url string, stored int) (*nats.Conn, nats.JetStreamContext, error) {
	nc, err := connect(url)
	if err != nil {
		return nil, nil, err
	}
	js, err := nc.JetStream()
	if err == nil {
		err = workloadStream(js)
	}
	if err == nil && stored > 0 {
		err = preload(nc, stored)
	}
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

// W6: a durable pull consumer (new each iteration, unmeasured) reads the 200,000 messages stored
// in setup in batches of 500 and acks each; a flush at the end.
func setupW6(url string) (*fixture, error) {
	nc, js, err := connectWithStream(url, w6Messages)
	if err != nil {
		return nil, err
	}
	return &fixture{
		iterate: func(iteration int, s *sample) error {
			durable := fmt.Sprintf("w6-natsgo-%d", iteration)
			if err := addConsumer(js, durable, "", false); err != nil {
				return err
			}
			defer js.DeleteConsumer(streamName, durable)
			subscription, err := js.PullSubscribe(jetStreamSubject, durable, nats.Bind(streamName, durable))
			if err != nil {
				return err
			}
			defer subscription.Unsubscribe()
			s.start()
			received := 0
			for received < w6Messages {
				messages, err := subscription.Fetch(w6Batch, nats.MaxWait(5*time.Second))
				if err != nil {
					return fmt.Errorf("fetch after %d: %w", received, err)
				}
				for _, message := range messages {
					if err := message.Ack(); err != nil {
						return err
					}
				}
				received += len(messages)
			}
			if err := nc.Flush(); err != nil {
				return err
			}
			s.stop(w6Messages)
			return nil
		},
		close: nc.Close,
	}, nil
}

// W7: a durable push consumer (new each iteration, unmeasured) delivers the 200,000 messages
// stored in setup; subscribing is measured, as raw's js_Subscribe; the handler acks and counts.
func setupW7(url string) (*fixture, error) {
	nc, js, err := connectWithStream(url, w7Messages)
	if err != nil {
		return nil, err
	}
	return &fixture{
		iterate: func(iteration int, s *sample) error {
			durable := fmt.Sprintf("w7-natsgo-%d", iteration)
			if err := addConsumer(js, durable, fmt.Sprintf("w7.deliver.natsgo.%d", iteration), false); err != nil {
				return err
			}
			defer js.DeleteConsumer(streamName, durable)
			var received int64
			done := make(chan struct{})
			s.start()
			subscription, err := js.Subscribe(jetStreamSubject, func(message *nats.Msg) {
				_ = message.Ack()
				if atomic.AddInt64(&received, 1) == w7Messages {
					close(done)
				}
			}, nats.Bind(streamName, durable), nats.ManualAck())
			if err != nil {
				return err
			}
			defer subscription.Unsubscribe()
			select {
			case <-done:
			case <-time.After(receiveTimeout):
				return fmt.Errorf("received %d of %d within %v", atomic.LoadInt64(&received), w7Messages, receiveTimeout)
			}
			if err := nc.Flush(); err != nil {
				return err
			}
			s.stop(w7Messages)
			return nil
		},
		close: nc.Close,
	}, nil
}

// W8: 10,000 JetStream messages published one at a time (each awaiting its ack), each timed from
// the start of its publish until a push consumer's handler (its own connection, deliver new,
// manual acks) received it; the next is published only then.
func setupW8(url string) (*fixture, error) {
	publisher, subscriber, err := connectTwo(url)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*fixture, error) { publisher.Close(); subscriber.Close(); return nil, err }
	publishing, err := publisher.JetStream()
	if err != nil {
		return fail(err)
	}
	if err := workloadStream(publishing); err != nil {
		return fail(err)
	}
	js, err := subscriber.JetStream()
	if err != nil {
		return fail(err)
	}
	return &fixture{
		iterate: func(iteration int, s *sample) error {
			durable := fmt.Sprintf("w8-natsgo-%d", iteration)
			if err := addConsumer(js, durable, fmt.Sprintf("w8.deliver.natsgo.%d", iteration), true); err != nil {
				return err
			}
			defer js.DeleteConsumer(streamName, durable)
			var receivedAt, count int64
			arrived := make(chan struct{}, 1)
			subscription, err := js.Subscribe(jetStreamSubject, func(message *nats.Msg) {
				atomic.StoreInt64(&receivedAt, monotonicNanos())
				_ = message.Ack()
				atomic.AddInt64(&count, 1)
				arrived <- struct{}{}
			}, nats.Bind(streamName, durable), nats.ManualAck())
			if err != nil {
				return err
			}
			defer subscription.Unsubscribe()
			if err := subscriber.Flush(); err != nil {
				return err
			}
			stop := make(chan struct{})
			defer close(stop)
			stalled := watchdog(func() int64 { return atomic.LoadInt64(&count) }, 30*time.Second, stop)
			s.latencies = make([]int64, 0, w8Messages)
			s.start()
			for i := 0; i < w8Messages; i++ {
				start := monotonicNanos()
				if _, err := publishing.Publish(jetStreamSubject, payload); err != nil {
					return fmt.Errorf("publish %d: %w", i, err)
				}
				select {
				case <-arrived:
				case <-stalled:
					return fmt.Errorf("message %d did not arrive within 30 s", i)
				}
				s.latencies = append(s.latencies, atomic.LoadInt64(&receivedAt)-start)
			}
			s.stop(w8Messages)
			return nil
		},
		close: func() { publisher.Close(); subscriber.Close() },
	}, nil
}

// ---- running and reporting -------------------------------------------------------------------

// result is one workload's samples, in the shape report.py reads.
type result struct {
	Target   string             `json:"target"`
	Name     string             `json:"name"`
	Messages int                `json:"messages"`
	Metrics  map[string][]int64 `json:"metrics"`
	Error    string             `json:"error,omitempty"`
	// PeakReset: false when /proc/self/clear_refs could not reset VmHWM (the peak then
	// includes setup and warmup).
	PeakReset bool `json:"peakResidentFromFirstIteration"`
}

type document struct {
	Client     string   `json:"client"`
	Go         string   `json:"go"`
	Iterations int      `json:"iterations"`
	Benchmarks []result `json:"benchmarks"`
}

// runWorkload runs one workload in this process: server, setup, warmup, measured iterations.
func runWorkload(w workload, iterations int) result {
	out := result{Target: w.target, Name: w.name + " " + variant, Metrics: map[string][]int64{}}
	fail := func(format string, arguments ...interface{}) result {
		out.Error = fmt.Sprintf(format, arguments...)
		fmt.Fprintf(os.Stderr, "%s: failed: %s\n", out.Name, out.Error)
		return out
	}
	srv, err := startServer()
	if err != nil {
		return fail("starting the server: %v", err)
	}
	defer srv.stop()
	stopOnSignal(srv)
	f, err := w.setup(srv.url)
	if err != nil {
		return fail("setup: %v", err)
	}
	defer f.close()
	var warmup sample
	if err := f.iterate(0, &warmup); err != nil {
		return fail("warmup: %v", err)
	}
	out.PeakReset = resetPeakResident()
	add := func(metric string, value int64) { out.Metrics[metric] = append(out.Metrics[metric], value) }
	for iteration := 1; iteration <= iterations; iteration++ {
		var s sample
		if err := f.iterate(iteration, &s); err != nil {
			return fail("iteration %d: %v", iteration, err)
		}
		out.Messages = s.operations
		perSecond := int64(float64(s.operations) * 1e9 / float64(max64(s.wall, 1)))
		cpuPerMessage := int64(math.Round(float64(s.cpu) / float64(s.operations)))
		peak := peakResidentBytes()
		add("messagesPerSecond", perSecond)
		add("cpuNanosPerMessage", cpuPerMessage)
		add("wallClock", s.wall)
		add("mallocCountTotal", int64(s.mallocs))
		add("peakMemoryResident", peak)
		line := fmt.Sprintf("%s iteration %d: %d msgs/s, %d CPU ns/msg, %.2f heap allocations/msg, peak RSS %.1f MiB",
			out.Name, iteration, perSecond, cpuPerMessage, float64(s.mallocs)/float64(s.operations), float64(peak)/(1<<20))
		if w.latency {
			sorted := append([]int64(nil), s.latencies...)
			sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
			p50, p99 := percentile(sorted, 0.50), percentile(sorted, 0.99)
			out.Metrics["latencyNanos"] = append(out.Metrics["latencyNanos"], s.latencies...)
			add("latencyP50Nanos", p50)
			add("latencyP99Nanos", p99)
			line += fmt.Sprintf(", p50 %.1f µs, p99 %.1f µs", float64(p50)/1e3, float64(p99)/1e3)
		}
		fmt.Println(line)
	}
	return out
}

func max64(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

// stopOnSignal stops the server before this process ends on SIGINT or SIGTERM.
func stopOnSignal(srv *server) {
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		received := <-signals
		srv.stop()
		fmt.Fprintf(os.Stderr, "natsgo-bench: %v, server stopped\n", received)
		os.Exit(1)
	}()
}

func defaultIterations() int {
	if value, err := strconv.Atoi(os.Getenv("NATS_BENCH_ITERATIONS")); err == nil && value > 0 {
		return value
	}
	return 5
}

func main() {
	iterations := flag.Int("iterations", defaultIterations(), "measured iterations per workload (after one warmup)")
	filter := flag.String("run", "", "run only the workloads whose name (W1 ... W8) matches this regular expression")
	output := flag.String("out", "", "write the samples as JSON to this file (for Benchmarks/report.py)")
	only := flag.String("workload", "", "run this one workload in this process (used by the parent process)")
	flag.Parse()

	if *only != "" {
		// A child: one workload, its result as JSON to -out.
		for _, w := range workloads {
			if w.name == *only {
				out := runWorkload(w, *iterations)
				encoded, _ := json.Marshal(out)
				if err := os.WriteFile(*output, encoded, 0o644); err != nil {
					fmt.Fprintln(os.Stderr, "natsgo-bench:", err)
					os.Exit(1)
				}
				return
			}
		}
		fmt.Fprintf(os.Stderr, "natsgo-bench: no workload %q\n", *only)
		os.Exit(2)
	}

	pattern, err := regexp.Compile(*filter)
	if err != nil {
		fmt.Fprintln(os.Stderr, "natsgo-bench: -run:", err)
		os.Exit(2)
	}
	executable, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "natsgo-bench:", err)
		os.Exit(1)
	}
	scratch, err := os.MkdirTemp("", "natsgo-bench-results-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "natsgo-bench:", err)
		os.Exit(1)
	}
	defer os.RemoveAll(scratch)
	doc := document{Client: "nats.go " + nats.Version, Go: runtime.Version(), Iterations: *iterations}
	failed := false
	for _, w := range workloads {
		if !pattern.MatchString(w.name) {
			continue
		}
		// One process per workload, as package-benchmark: no heap, goroutine or peak resident
		// memory carried from one workload to the next.
		path := filepath.Join(scratch, w.name+".json")
		child := exec.Command(executable, "-workload", w.name, "-iterations", strconv.Itoa(*iterations), "-out", path)
		child.Stdout, child.Stderr = os.Stdout, os.Stderr
		runErr := child.Run()
		var out result
		encoded, readErr := os.ReadFile(path)
		if readErr == nil {
			readErr = json.Unmarshal(encoded, &out)
		}
		if readErr != nil {
			out = result{Target: w.target, Name: w.name + " " + variant, Error: fmt.Sprintf("no result (%v, %v)", runErr, readErr)}
			fmt.Fprintf(os.Stderr, "%s: failed: %s\n", out.Name, out.Error)
		}
		if out.Error != "" {
			failed = true
		}
		doc.Benchmarks = append(doc.Benchmarks, out)
	}
	if *output != "" {
		encoded, _ := json.MarshalIndent(doc, "", " ")
		if err := os.WriteFile(*output, encoded, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "natsgo-bench:", err)
			os.Exit(1)
		}
	}
	if failed {
		os.Exit(1)
	}
}

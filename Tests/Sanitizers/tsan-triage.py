#!/usr/bin/env python3
"""Sorts the ThreadSanitizer reports of a `swift test --sanitize=thread` log (make test-tsan).

With Swift 6.3 on Linux two kinds of report are false positives, each reproduced by a few
lines that race on nothing (Tests/Sanitizers/mutex-probe.swift, continuation-probe.swift):

- lock: both accesses happen inside `Mutex.withLock` (Synchronization). The Mutex waits on a
  futex with atomics in the uninstrumented standard library, so TSan sees no lock at all.
- continuation: a continuation's resume on another thread (cnats's delivery thread, the blocking
  executor's queue) against the awaiting task's frame; the hand-over happens inside the
  uninstrumented concurrency runtime.

Every other report is printed in full, and the exit status is 1 when there is one.
Usage: tsan-triage.py LOG [PROJECT_ROOT]
"""
import collections
import os
import re
import sys

log = open(sys.argv[1], errors="replace").read()
root = os.path.abspath(sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(__file__), "..", "..")) + "/"
sources = {}


def source_line(path, number):
    if path not in sources:
        try:
            sources[path] = open(root + path, errors="replace").read().split("\n")
        except OSError:
            sources[path] = []
    lines = sources[path]
    return lines[number - 1] if 0 < number <= len(lines) else ""


def frames(section):
    return re.findall(r"#\d+ (\S+) (\S+)", section)


def under_lock(section):
    for _, location in frames(section):
        match = re.match(re.escape(root) + r"((?:Sources|Tests)/[^:]+):(\d+)", location)
        if match and re.search(r"withLock|withState", source_line(match.group(1), int(match.group(2)))):
            return True
    return False


def top(section):
    found = frames(section)
    return found[0][0] if found else ""


counts = collections.Counter()
others = []
for report in log.split("WARNING: ThreadSanitizer: ")[1:]:
    report = report.split("\nSUMMARY: ThreadSanitizer")[0]
    # Indented further when a child process (eventbus-demo) reports through a test's output.
    sections = re.split(r"\n\s+(?=Previous |Location is|Mutex |Thread T)", report)
    first, second = sections[0], sections[1] if len(sections) > 1 else ""
    tops = (top(first), top(second))
    if under_lock(first) and under_lock(second):
        counts["lock (both accesses inside Mutex.withLock)"] += 1
    elif any(re.match(r"\$s(Scc|s19CheckedContinuationV)6resume", t) for t in tops):
        # One side is the continuation's resume itself; the other the awaiting task's frame
        # (withUnsafeContinuation, or the async function that awaited).
        counts["continuation (resumed on another thread)"] += 1
    else:
        counts["other"] += 1
        others.append(report)

total = sum(counts.values())
print(f"ThreadSanitizer reports: {total}")
for kind, count in counts.most_common():
    print(f"  {count:5d}  {kind}")
for report in others:
    print("\n==================\nWARNING: ThreadSanitizer: " + report)
sys.exit(1 if others else 0)

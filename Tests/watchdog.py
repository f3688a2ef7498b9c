#!/usr/bin/env python3
"""Runs one `make test` phase with a time limit, so that a hung test fails the phase with a diagnosis
instead of running into CI's overall limit with none.

Usage: Tests/watchdog.py SECONDS command [arguments...]

The command's output is passed through line by line. If the command is still running after SECONDS,
the watchdog prints the Swift Testing tests that started and have not finished, the threads' stacks
of each test process (through gdb, or the toolchain's lldb), kills the command's process group and
exits with 124 (as timeout(1) does). Otherwise it exits with the command's status.
"""

import collections
import os
import re
import shutil
import signal
import subprocess
import sys
import threading

# Swift Testing's console lines; the cases of a parameterized test have no end line of their own.
STARTED = re.compile(r"^\S+ (?:Test|Suite) (?!case passing |run started)(\S.*?) started\.$")
ENDED = re.compile(r"^\S+ (?:Test|Suite) (\S.*?)(?: with \d+ test cases?)? (?:passed|failed|skipped)(?: after |$)")


def stacks(pid):
    """The threads' stacks of a running process, as text."""
    if shutil.which("gdb"):
        command = [
            "gdb", "-p", str(pid), "-batch", "-iex", "set debuginfod enabled off", "-ex", "set complaints 0",
            "-ex", "thread apply all bt",
        ]
    elif shutil.which("lldb"):
        command = ["lldb", "--batch", "-p", str(pid), "-o", "thread backtrace all"]
    else:
        return "(neither gdb nor lldb is installed: no stacks)\n"
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        noise = ("[New LWP", "During symbol reading", "warning: Section .debug_names")
        return "".join(
            line for line in (result.stdout + result.stderr).splitlines(keepends=True) if not line.startswith(noise)
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"(could not read the stacks: {error})\n"


def descendants(root):
    """The processes under `root` (its children, theirs, ...), as (pid, command line) pairs."""
    try:
        listing = subprocess.run(["ps", "-e", "-o", "pid=,ppid=,args="], capture_output=True, text=True).stdout
    except OSError:
        return []
    children = collections.defaultdict(list)
    arguments = {}
    for line in listing.splitlines():
        parts = line.split(None, 2)
        if len(parts) < 3:
            continue
        pid, ppid = int(parts[0]), int(parts[1])
        children[ppid].append(pid)
        arguments[pid] = parts[2]
    found = []
    pending = list(children[root])
    while pending:
        pid = pending.pop()
        found.append((pid, arguments.get(pid, "")))
        pending.extend(children[pid])
    return found


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 64
    limit = float(sys.argv[1])
    command = sys.argv[2:]
    running = collections.Counter()
    # Line-buffered: into a pipe the test process's output is otherwise written in blocks, and
    # what names the hung test could still sit in its buffer when it is killed.
    if shutil.which("stdbuf"):
        command = ["stdbuf", "-oL", "-eL"] + command
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True, bufsize=0
    )

    def relay():
        for raw in iter(process.stdout.readline, b""):
            sys.stdout.buffer.write(raw)
            sys.stdout.buffer.flush()
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if match := STARTED.match(line):
                running[match.group(1)] += 1
            elif match := ENDED.match(line):
                running[match.group(1)] -= 1

    reader = threading.Thread(target=relay, daemon=True)
    reader.start()
    try:
        status = process.wait(timeout=limit)
        reader.join(timeout=10)
        return status
    except subprocess.TimeoutExpired:
        pass
    reader.join(timeout=1)
    print(f"\nwatchdog: `{' '.join(command)}` still running after {limit:.0f} s", flush=True)
    unfinished = sorted(name for name, count in running.items() if count > 0)
    print(f"watchdog: {len(unfinished)} tests and suites started and not finished:", flush=True)
    for name in unfinished:
        print(f"  {name}", flush=True)
    for pid, arguments in descendants(process.pid):
        if ".xctest" in arguments:
            print(f"watchdog: stacks of test process {pid}:", flush=True)
            print(stacks(pid), flush=True)
    # Everything under the command, including the servers its tests started (they would otherwise
    # outlive the run), collected before anything dies and is reparented.
    for pid, _ in descendants(process.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()
    return 124


if __name__ == "__main__":
    sys.exit(main())

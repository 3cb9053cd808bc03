#!/usr/bin/env bash
# Load run: for each body, a release plane-server on loopback with a fresh
# SQLite file, and the loadgen example at several sender counts. One line per
# run: deliveries/s, p50, p99, p99.9, the inbox backlog's maximum, and the
# server's CPU time per delivery (user and system, from /proc/PID/stat), and
# the machine's steal time (CPU the hypervisor gave to other guests, as a share
# of the run's CPU time: above a few percent, the run's figures are not comparable).
#
#   scripts/load.sh                      # 2k fixture 8k small, at 1 16 64 senders
#   BODIES=2k LEVELS=64 RUNS=3 scripts/load.sh
#
# TOTAL deliveries per run (default 100000; TOTAL_1 for one sender, default 20000).
# The server logs at warn: at the default info it writes a line per delivery (see BENCHMARKS).
# SAME_TIME=1 keeps the recorded data.updated_at on every body (the dedupe index's worst case).
# SERVER_BIN runs another build of the server (an older one, for a before/after).
# PERF=1 records the server with `perf record -g` into $PERF_OUT (default /tmp/plane-server.perf).
set -euo pipefail
cd "$(dirname "$0")/.."
total="${TOTAL:-100000}"
total_1="${TOTAL_1:-20000}"
cargo build --quiet --release -p plane-server --bin plane-server --example loadgen
dir="$(mktemp -d)"
port="${PORT:-18080}"
export PLANE_WEBHOOK_SECRET="plane_wh_$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
server=""
perf=""
stop() {
  [ -n "$perf" ] && kill -INT "$perf" 2>/dev/null && wait "$perf" 2>/dev/null || true
  perf=""
  [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null || true
  server=""
}
trap 'stop; rm -rf "$dir"' EXIT
ticks="$(getconf CLK_TCK)"
cpu() { awk '{print $14, $15}' "/proc/$1/stat"; }
# The machine's steal time so far (ticks the hypervisor gave to others), all CPUs.
steal() { awk '/^cpu / {print $9}' /proc/stat; }
ncpu="$(getconf _NPROCESSORS_ONLN)"
# Bytes handed to write calls (socket and files) and write calls made.
io() { awk '/^wchar/ {w=$2} /^syscw/ {c=$2} END {print w, c}' "/proc/$1/io"; }

for body in ${BODIES:-2k fixture 8k small}; do
  for level in ${LEVELS:-1 16 64}; do
    for _ in $(seq "${RUNS:-1}"); do
      rm -f "$dir"/load.db*
      RUST_LOG=warn "${SERVER_BIN:-target/release/plane-server}" serve --listen "127.0.0.1:$port" --db "$dir/load.db" &
      server=$!
      for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
      if [ "${PERF:-0}" = 1 ]; then
        perf record -F 999 -g -p "$server" -o "${PERF_OUT:-/tmp/plane-server.perf}" 2>/dev/null &
        perf=$!
      fi
      n="$total"; [ "$level" = 1 ] && n="$total_1"
      read -r u0 s0 < <(cpu "$server")
      read -r w0 c0 < <(io "$server")
      st0="$(steal)"; t0="$(date +%s.%N)"
      line="$(target/release/examples/loadgen "http://127.0.0.1:$port/webhooks/plane" \
        --senders "$level" --total "$n" --body "$body" ${SAME_TIME:+--same-time})"
      read -r u1 s1 < <(cpu "$server")
      read -r w1 c1 < <(io "$server")
      st1="$(steal)"; t1="$(date +%s.%N)"
      awk -v line="$line" -v u=$((u1 - u0)) -v s=$((s1 - s0)) -v n="$n" -v t="$ticks" \
        -v w=$((w1 - w0)) -v c=$((c1 - c0)) -v st=$((st1 - st0)) -v t0="$t0" -v t1="$t1" -v cpus="$ncpu" \
        'BEGIN { printf "%s, server CPU %.0f us/delivery (user %.0f, system %.0f), written %.1f KiB and %.1f write calls/delivery, steal %.0f%%\n", line, (u+s)/t/n*1e6, u/t/n*1e6, s/t/n*1e6, w/n/1024, c/n, st/t/((t1-t0)*cpus)*100 }'
      stop
    done
  done
done

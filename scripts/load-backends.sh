#!/usr/bin/env bash
# Durable deliveries on each backend under the same load: release `plane-server serve`
# on SQLite with one replica, on PostgreSQL with one, and on PostgreSQL with three
# (three processes on one schema, the load spread over them round robin), each fed by
# the loadgen example with the same senders, total and body. After each run the servers
# are killed with SIGKILL (and PostgreSQL is crashed with `pg_ctl -m immediate` and
# started again, when this script started it), then the stored deliveries are counted
# and must equal the acknowledged ones: a 200 means committed.
#
#   scripts/load-backends.sh                         # 64 senders, 50,000 fixture bodies, 2 runs
#   SENDERS=64 TOTAL=20000 BODY=2k RUNS=3 scripts/load-backends.sh
#   CASES="pg-1 pg-3" scripts/load-backends.sh
#   SERVER_BIN=/tmp/plane-server-before scripts/load-backends.sh   # another build of the server
#   LOAD_BACKENDS_BUILT=1 scripts/load-backends.sh   # no cargo build: the binaries in target/release
#
# SQLite with three replicas is not a setup the server supports (the SQLite file is one
# machine's: one writer process), so there is no `sqlite-3` case.
#
# PostgreSQL: without PLANE_TEST_DATABASE_URL, the script runs itself under
# scripts/with-postgres.sh (a throwaway PostgreSQL 15, fsync on, its settings printed
# below). With one, it uses that database, and crashes and restarts it only when
# PLANE_TEST_PG_DATA and PLANE_TEST_PG_BIN say where it is (with-postgres.sh sets them).
# Each PostgreSQL run gets a fresh schema, each SQLite run a fresh file.
#
# One line per run: the loadgen line (deliveries/s, p50, p99, p99.9, backlog), then CPU
# per delivery of the servers (all replicas), of PostgreSQL (postmaster and backends),
# how busy the machine's cores were during the run and how much of that was not this
# run's processes (another session's builds, say), the load average before the run,
# and the durable-ack check. PostgreSQL runs add the transactions committed, the WAL
# syncs and the WAL written per delivery (pg_stat_database, pg_stat_wal and the WAL
# position: the worker's claims and completions included), and the checkpoints begun. Runs go round the cases RUNS times (interleaved).
set -euo pipefail
self="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
cd "$(dirname "$0")/.."

senders="${SENDERS:-64}"
total="${TOTAL:-50000}"
body="${BODY:-fixture}"
runs="${RUNS:-2}"
cases="${CASES:-sqlite-1 pg-1 pg-3}"
port="${PORT:-18180}"

if [ -z "${LOAD_BACKENDS_BUILT:-}" ]; then
  cargo build --quiet --release -p plane-server --bin plane-server --example loadgen
  export LOAD_BACKENDS_BUILT=1
fi
if [ -z "${PLANE_TEST_DATABASE_URL:-}" ]; then
  case " $cases " in
    *" pg-"*) exec bash scripts/with-postgres.sh bash "$self" "$@" ;;
  esac
fi
for c in $cases; do
  case "$c" in
    sqlite-1 | pg-[1-9]) ;;
    sqlite-*) echo "load-backends: $c: SQLite runs one replica (one file, one machine)" >&2; exit 2 ;;
    *) echo "load-backends: unknown case $c (sqlite-1, pg-N)" >&2; exit 2 ;;
  esac
done

dir="$(mktemp -d)"
# Copies, so that a build in the same target directory meanwhile changes nothing mid-run.
mkdir "$dir/bin"
cp "${SERVER_BIN:-target/release/plane-server}" "$dir/bin/plane-server"
cp target/release/examples/loadgen "$dir/bin/loadgen"
server_bin="$dir/bin/plane-server"
export PLANE_WEBHOOK_SECRET="plane_wh_$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
servers=()
stop() {
  for pid in "${servers[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  for pid in "${servers[@]}"; do wait "$pid" 2>/dev/null || true; done
  servers=()
}
trap 'stop; rm -rf "$dir"' EXIT

ticks="$(getconf CLK_TCK)"
ncpu="$(getconf _NPROCESSORS_ONLN)"
pg_url="${PLANE_TEST_DATABASE_URL:-}"
pg_data="${PLANE_TEST_PG_DATA:-}"
pg_bin="${PLANE_TEST_PG_BIN:-}"

# CPU ticks (user + system) of a process.
ticks_of() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
# CPU ticks of this run's PostgreSQL: the postmaster with its reaped children, and the
# children still alive. Another cluster on the machine (another session's) is not counted.
pg_ticks() {
  if [ -z "$pg_data" ] || [ ! -r "$pg_data/postmaster.pid" ]; then echo 0; return; fi
  local pm
  pm="$(head -1 "$pg_data/postmaster.pid")"
  awk -v pm="$pm" '
    FNR == 1 {
      # The command name may hold spaces: count fields after its closing parenthesis.
      line = $0; sub(/^.*\) /, "", line); split(line, f, " ")
      # f[1] is field 3 (state), so field k is f[k - 2].
      if (FILENAME == "/proc/" pm "/stat") t += f[12] + f[13] + f[14] + f[15]
      else if (f[2] == pm) t += f[12] + f[13]
    }
    END { print t + 0 }' /proc/[0-9]*/stat 2>/dev/null
}
# The machine: busy and all ticks, all CPUs (busy leaves out idle and iowait).
machine() { awk '/^cpu / {t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t}' /proc/stat; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
# Transactions committed in the database so far, the WAL position in bytes, WAL syncs
# (fdatasync calls, the commits' and the WAL writer's) and checkpoints, cluster-wide.
pg_counters() {
  psql "$pg_url" -AtF' ' -c "SELECT d.xact_commit, pg_current_wal_lsn() - '0/0', w.wal_sync,
      b.checkpoints_timed + b.checkpoints_req
    FROM pg_stat_database d, pg_stat_wal w, pg_stat_bgwriter b WHERE d.datname = current_database()"
}
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

if [ -n "$pg_url" ]; then
  echo "PostgreSQL: $(psql "$pg_url" -Atc 'SELECT version()')"
  psql "$pg_url" -Atc "SELECT string_agg(name || '=' || current_setting(name), ', ' ORDER BY name)
    FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'wal_sync_method', 'full_page_writes',
      'shared_buffers', 'wal_buffers', 'max_wal_size', 'checkpoint_timeout', 'commit_delay',
      'max_connections', 'wal_level')" | sed 's/^/PostgreSQL settings: /'
fi
echo "load: $senders senders, $total deliveries, body $body, cases: $cases, runs: $runs; load average $(loadavg)"

mismatches=0
for run in $(seq "$runs"); do
  for c in $cases; do
    kind="${c%-*}"
    replicas="${c#*-}"
    urls=()
    db="$dir/$c-$run.db"
    schema="load_${c//-/_}_r${run}_$$"
    for i in $(seq 0 $((replicas - 1))); do
      p=$((port + i))
      if [ "$kind" = sqlite ]; then
        RUST_LOG=warn "$server_bin" serve --listen "127.0.0.1:$p" --db "$db" 2> "$dir/server-$i.log" &
      else
        RUST_LOG=warn PLANE_DATABASE_URL="$pg_url" PLANE_DATABASE_SCHEMA="$schema" \
          "$server_bin" serve --listen "127.0.0.1:$p" 2> "$dir/server-$i.log" &
      fi
      servers+=("$!")
      urls+=("http://127.0.0.1:$p/webhooks/plane")
    done
    for i in $(seq 0 $((replicas - 1))); do
      p=$((port + i))
      for _ in $(seq 300); do (echo > "/dev/tcp/127.0.0.1/$p") 2>/dev/null && break; sleep 0.1; done
      if ! kill -0 "${servers[$i]}" 2>/dev/null; then
        echo "load-backends: $c run $run: server $i did not start (port $p taken?):" >&2
        tail -n 20 "$dir/server-$i.log" >&2
        exit 1
      fi
    done
    load_before="$(loadavg)"
    s0=0; for pid in "${servers[@]}"; do s0=$((s0 + $(ticks_of "$pid"))); done
    g0="$(pg_ticks)"
    read -r b0 a0 < <(machine)
    x0=0 w0=0 y0=0 k0=0
    if [ "$kind" = pg ]; then read -r x0 w0 y0 k0 < <(pg_counters); fi
    status=0
    line="$("$dir/bin/loadgen" "${urls[@]}" --senders "$senders" --total "$total" --body "$body")" || status=$?
    read -r b1 a1 < <(machine)
    g1="$(pg_ticks)"
    s1=0; for pid in "${servers[@]}"; do s1=$((s1 + $(ticks_of "$pid"))); done
    # The durable-ack check: kill the servers (and crash PostgreSQL), then count.
    stop
    if [ "$kind" = sqlite ]; then
      stored="$(sqlite3 "$db" 'SELECT count(*) FROM deliveries')"
      rm -f "$db" "$db"-*
    else
      # The servers' backends report their counts as they exit.
      sleep 1
      read -r x1 w1 y1 k1 < <(pg_counters)
      if [ -n "$pg_data" ] && [ -n "$pg_bin" ]; then
        # A crash (immediate stop), then a start with the options it had
        # (postmaster.opts): recovery replays the WAL.
        as_pg "$pg_bin/pg_ctl" -D "$pg_data" -l "$(dirname "$pg_data")/postgres.log" -m immediate -w -t 120 restart > /dev/null
      fi
      stored="$(psql "$pg_url" -Atc "SELECT count(*) FROM \"$schema\".deliveries")"
      psql "$pg_url" -qc "SET client_min_messages = warning; DROP SCHEMA \"$schema\" CASCADE"
    fi
    acked="$(sed -n 's/.*: \([0-9]*\) deliveries in .*/\1/p' <<< "$line")"
    check="stored $stored = acknowledged $acked"
    if [ "$kind" = pg ]; then
      check="$(awk -v x=$((x1 - x0)) -v w="$w1" -v w0="$w0" -v y=$((y1 - y0)) -v k=$((k1 - k0)) -v n="${acked:-0}" \
        'BEGIN { if (n < 1) n = 1
          printf "%.2f transactions, %.3f WAL syncs and %.1f KiB of WAL per delivery, %d checkpoints", x / n, y / n, (w - w0) / n / 1024, k }'), $check"
    fi
    if [ "$status" -ne 0 ] || [ -z "$acked" ] || [ "$stored" != "$acked" ]; then
      check="MISMATCH: stored $stored, acknowledged ${acked:-?}, loadgen exit $status"
      mismatches=$((mismatches + 1))
      for i in $(seq 0 $((replicas - 1))); do
        echo "load-backends: $c run $run, server $i's log (last lines):" >&2
        tail -n 20 "$dir/server-$i.log" >&2
      done
    fi
    awk -v c="$c" -v r="$run" -v line="$line" -v s=$((s1 - s0)) -v g=$((g1 - g0)) -v n="${acked:-0}" \
      -v t="$ticks" -v busy=$((b1 - b0)) -v all=$((a1 - a0)) -v la="$load_before" -v check="$check" \
      'BEGIN {
        n = (n > 0) ? n : 1
        lg = 0; if (match(line, /loadgen CPU [0-9.]+/)) lg = substr(line, RSTART + 12, RLENGTH - 12) * n / 1e6 * t
        printf "%s run %s: %s, servers CPU %.0f us/delivery, PostgreSQL CPU %.0f us/delivery, cores busy %.0f%% (others %.0f%%), load average before %s, %s\n",
          c, r, line, s / t / n * 1e6, g / t / n * 1e6, busy / all * 100, (busy - s - g - lg) / all * 100, la, check
      }'
  done
done
echo "load average after: $(loadavg)"
if [ "$mismatches" -ne 0 ]; then
  echo "load-backends: $mismatches run(s) failed the durable-ack check" >&2
  exit 1
fi

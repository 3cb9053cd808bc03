#!/usr/bin/env bash
# Runs a command with a throwaway PostgreSQL 15 beside it, then stops and deletes it.
#
#   bash scripts/with-postgres.sh cargo test --workspace
#
# The cluster lives in a temporary folder, runs as the `postgres` user (initdb refuses
# root) on a free loopback port, trusts loopback connections (it holds nothing), and is
# handed to the command as PLANE_TEST_DATABASE_URL. PLANE_TEST_REQUIRE_POSTGRES=1 makes a
# PostgreSQL test fail, not skip, if the URL ever goes missing on the way.
#
# PG_BIN overrides where initdb, pg_ctl and postgres are (default: the first of
# /usr/lib/postgresql/15/bin and PATH).
set -euo pipefail

if [ "$#" -eq 0 ]; then
    echo "usage: $0 COMMAND [ARG...]" >&2
    exit 2
fi

bin="${PG_BIN:-}"
if [ -z "$bin" ]; then
    if [ -x /usr/lib/postgresql/15/bin/initdb ]; then
        bin=/usr/lib/postgresql/15/bin
    else
        bin="$(dirname "$(command -v initdb || echo /nonexistent/initdb)")"
    fi
fi
for tool in initdb pg_ctl postgres; do
    if [ ! -x "$bin/$tool" ]; then
        echo "with-postgres: $bin/$tool not found; install PostgreSQL 15 (Debian: postgresql-15) or set PG_BIN" >&2
        exit 1
    fi
done

# Run the server tools as `postgres` when we are root; as ourselves otherwise.
as_pg() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

dir="$(mktemp -d /tmp/plane-pg.XXXXXX)"
chmod 0755 "$dir"
if [ "$(id -u)" -eq 0 ]; then
    chown postgres: "$dir"
fi
data="$dir/data"
log="$dir/postgres.log"

stop() {
    as_pg "$bin/pg_ctl" -D "$data" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap stop EXIT

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"

as_pg "$bin/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 || {
    cat "$dir/initdb.log" >&2
    echo "with-postgres: initdb failed (log above)" >&2
    exit 1
}
# fsync stays on: the tests check what survives a kill. Many connections: three replicas
# and parallel tests each hold a pool.
as_pg "$bin/pg_ctl" -D "$data" -l "$log" -w -t 60 \
    -o "-h 127.0.0.1 -p $port -k $dir -c max_connections=400 -c shared_buffers=64MB" start >/dev/null || {
    cat "$log" >&2
    echo "with-postgres: the server did not start (log above)" >&2
    exit 1
}
as_pg "$bin/postgres" --version >&2
as_pg psql -h 127.0.0.1 -p "$port" -U postgres -d postgres -qc "CREATE DATABASE plane_test" ||
    as_pg "$bin/../bin/createdb" -h 127.0.0.1 -p "$port" -U postgres plane_test

export PLANE_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$port/plane_test"
export PLANE_TEST_REQUIRE_POSTGRES=1
# Tests that restart the database need to know where it is and how.
export PLANE_TEST_PG_DATA="$data" PLANE_TEST_PG_BIN="$bin" PLANE_TEST_PG_PORT="$port" PLANE_TEST_PG_SOCKETS="$dir"
echo "with-postgres: PostgreSQL on 127.0.0.1:$port (data in $data)" >&2

set +e
"$@"
status=$?
set -e
exit "$status"

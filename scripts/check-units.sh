#!/usr/bin/env bash
# Checks deploy/systemd/ with systemd's own tools (run by .ci/run):
#   - `systemd-analyze verify` on every unit: any message fails, since an unknown key or a
#     bad value is only a warning to systemd (it ignores the line) but a bug to us;
#   - `systemd-analyze security --offline=true` on every service: its exposure score must
#     stay at or below MAX_EXPOSURE, so the hardening cannot silently get worse.
# The units name /usr/local/bin/plane-server; verify needs an executable there, so a copy
# of each unit points at the binary built here instead ($PLANE_SERVER_BIN, or
# target/debug/plane-server, built if missing).
set -euo pipefail
cd "$(dirname "$0")/.."

# The score of the units as written (systemd 252, Debian 12); lower it when hardening
# improves, never raise it to make a check pass.
MAX_EXPOSURE="${MAX_EXPOSURE:-1.2}"
UNITS_DIR="${UNITS_DIR:-deploy/systemd}"

if ! command -v systemd-analyze >/dev/null; then
    echo "check-units: systemd-analyze is not installed (Debian: apt-get install systemd)" >&2
    exit 1
fi
BIN="${PLANE_SERVER_BIN:-$PWD/target/debug/plane-server}"
if [ ! -x "$BIN" ]; then
    cargo build -q -p plane-server
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for unit in "$UNITS_DIR"/*.service "$UNITS_DIR"/*.timer; do
    sed "s#/usr/local/bin/plane-server#$BIN#g" "$unit" > "$work/$(basename "$unit")"
done

failed=0
if ! out="$(cd "$work" && systemd-analyze verify ./*.service ./*.timer 2>&1)" || [ -n "$out" ]; then
    echo "check-units: systemd-analyze verify found problems:" >&2
    echo "$out" >&2
    failed=1
else
    echo "check-units: systemd-analyze verify: $(ls "$work" | wc -l) units, no message"
fi

for unit in "$work"/*.service; do
    name="$(basename "$unit")"
    score="$(systemd-analyze security --offline=true "$unit" 2>&1 \
        | sed -n 's/.*Overall exposure level for .*: \([0-9.]*\).*/\1/p')"
    if [ -z "$score" ]; then
        echo "check-units: no exposure score for $name" >&2
        failed=1
    elif awk -v s="$score" -v max="$MAX_EXPOSURE" 'BEGIN { exit !(s > max) }'; then
        echo "check-units: $name exposure $score is above $MAX_EXPOSURE: its hardening got worse" >&2
        failed=1
    else
        echo "check-units: $name exposure $score (at most $MAX_EXPOSURE)"
    fi
done
exit "$failed"

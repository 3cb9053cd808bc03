#!/usr/bin/env bash
# The main job until plane-server exists: start plane-fake as a real process
# (Plane's 60 requests/minute budget, 250 work items), then walk every work item
# with plane-core's `walk` example, exactly as against a real Plane.
set -euo pipefail
cd "$(dirname "$0")/.."

items="${SEED_WORK_ITEMS:-250}"
cargo build --quiet -p plane-fake -p plane-core --example walk
out="$(mktemp)"
target/debug/plane-fake --listen 127.0.0.1:0 --seed-work-items "$items" --rate-limit 60/60s >"$out" &
fake=$!
trap 'kill $fake 2>/dev/null || true; rm -f "$out"' EXIT
for _ in $(seq 100); do grep -q '^api_key:' "$out" && break; sleep 0.1; done
value() { sed -n "s/^$1: //p" "$out"; }

echo "plane-fake serving $(value base_url) (workspace $(value workspace_slug), $items work items)"
PLANE_BASE_URL="$(value base_url)" \
PLANE_API_KEY="$(value api_key)" \
PLANE_WORKSPACE_SLUG="$(value workspace_slug)" \
PLANE_PROJECT_ID="$(value project_id)" \
  cargo run --quiet -p plane-core --example walk

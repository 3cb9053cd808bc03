#!/usr/bin/env bash
# Checks the alerting rules and the dashboard in deploy/:
#   1. promtool check rules   deploy/prometheus/plane-connector.rules.yml
#   2. promtool test rules    deploy/prometheus/plane-connector.tests.yml (every alert,
#                             firing and not firing)
#   3. the dashboard is valid JSON, and each of its queries parses as PromQL (promtool
#      check rules on the queries, Grafana's variables replaced by plain values)
#   4. cargo test --test deploy_files: every plane_* metric the rules, their tests and
#      the dashboard name is in a real scrape of plane-server's /metrics.
# promtool and jq come from Debian's `prometheus` and `jq` packages, installed here when
# missing (CI runs as root on Debian bookworm). Any failure exits non-zero with
# promtool's, jq's or cargo's message.
set -euo pipefail
cd "$(dirname "$0")/.."

rules=deploy/prometheus/plane-connector.rules.yml
tests=deploy/prometheus/plane-connector.tests.yml
dashboard=deploy/grafana/plane-connector.json

cleanup=()
trap 'rm -rf "${cleanup[@]}"' EXIT

missing=()
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v jq >/dev/null 2>&1 || missing+=(jq)
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "check-alerts: missing ${missing[*]}; install with: sudo apt-get install ${missing[*]}" >&2
        exit 1
    fi
    echo "check-alerts: installing Debian's ${missing[*]}"
    # The prometheus package would start a Prometheus server: policy-rc.d's 101 says
    # no, and is removed again unless it was there before.
    policy=/usr/sbin/policy-rc.d
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        cleanup+=("$policy")
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
promtool --version 2>&1 | head -n 1

echo "== promtool check rules $rules"
promtool check rules "$rules"

echo "== promtool test rules $tests"
promtool test rules "$tests"

echo "== $dashboard: JSON, and each query as PromQL"
jq empty "$dashboard"
queries=$(mktemp -d)
cleanup+=("$queries")
{
    echo "groups:"
    echo "  - name: dashboard-queries"
    echo "    rules:"
    jq -r '
        [.. | objects | select(has("expr")) | .expr]
        | to_entries[]
        | "      - record: dashboard:query_\(.key)\n        expr: \(
            .value
            | gsub("\\$__rate_interval"; "5m")
            | gsub("\\$job"; "plane-connector")
            | gsub("\\$instance|\\$profile"; ".*")
            | tojson)"' "$dashboard"
} >"$queries/dashboard.rules.yml"
promtool check rules "$queries/dashboard.rules.yml"

echo "== metric names against a real scrape (cargo test -p plane-server --test deploy_files)"
cargo test --quiet -p plane-server --test deploy_files

echo "check-alerts: ok"

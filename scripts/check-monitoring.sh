#!/usr/bin/env bash
# Validate the Prometheus side of monitoring/ with promtool (Debian/Ubuntu package `prometheus`):
#   promtool check config  monitoring/prometheus.yml   (also loads rules/*.yml it points at)
#   promtool check rules   monitoring/rules/*.yml
#   promtool test rules    monitoring/tests/*.test.yml (alerts fire and stay quiet where they should)
#   amtool check-config    monitoring/alertmanager.yml (package `prometheus-alertmanager`)
# Installs nothing. The Grafana dashboards and the metric names are checked against the running
# service by the Rust test crates/rps-serve/tests/it/monitoring.rs.
# Usage: scripts/check-monitoring.sh     Exit: 0 all passed, 1 a check failed, 2 promtool or amtool missing.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root/monitoring"

promtool=${PROMTOOL:-promtool}
if ! command -v "$promtool" >/dev/null 2>&1; then
  echo "check-monitoring: promtool not found (set PROMTOOL or install it:" >&2
  echo "  apt-get install -y --no-install-recommends prometheus)" >&2
  exit 2
fi

shopt -s nullglob
rules=(rules/*.yml)
tests=(tests/*.test.yml)
if (( ${#rules[@]} == 0 || ${#tests[@]} == 0 )); then
  echo "check-monitoring: no rule files in monitoring/rules or no tests in monitoring/tests" >&2
  exit 1
fi

echo "== $("$promtool" --version 2>&1 | head -n1)"
echo "== promtool check config monitoring/prometheus.yml"
"$promtool" check config prometheus.yml
echo "== promtool check rules ${rules[*]}"
"$promtool" check rules "${rules[@]}"
echo "== promtool test rules ${tests[*]}"
"$promtool" test rules "${tests[@]}"
amtool=${AMTOOL:-amtool}
if command -v "$amtool" >/dev/null 2>&1; then
  echo "== amtool check-config monitoring/alertmanager.yml"
  "$amtool" check-config alertmanager.yml
else
  echo "check-monitoring: amtool not found (apt-get install -y --no-install-recommends prometheus-alertmanager)" >&2
  exit 2
fi
echo "check-monitoring: all passed"

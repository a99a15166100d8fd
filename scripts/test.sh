#!/usr/bin/env bash
# Every test: Rust unit and integration tests (including the ones that need real servers,
# marked #[ignore] for plain `cargo test`), then the Python interop tests. Servers are started on
# 127.0.0.1 with free ports and stopped on exit. Usage: test.sh TARGET BIN_DIR VENV
set -euo pipefail
target=$1 bin=$2 venv=$3
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
state=$(mktemp -d "${TMPDIR:-/tmp}/rps-test.XXXXXX")
cleanup() {
  for s in "$root"/crates/*/tests/servers.sh; do [[ -f "$s" ]] && bash "$s" stop "$state" >/dev/null 2>&1 || true; done
  rm -rf "$state"
}
trap cleanup EXIT

echo "== build (release, $target)"
cargo build --release --locked --target "$target" --workspace --bins --examples

echo "== start servers on loopback"
export PATH="$venv/bin:$PATH"
for s in crates/*/tests/servers.sh; do
  [[ -f "$s" ]] || continue
  env_lines=$(bash "$s" start "$venv/bin/python" "$state")
  eval "$env_lines"
done

echo "== monitoring: promtool check config / check rules / test rules"
bash scripts/check-monitoring.sh

echo "== cargo test (every test, including those that need the servers)"
export RPS_BIN_DIR="$bin"
status=0
cargo test --release --locked --target "$target" --workspace --no-fail-fast -- --include-ignored || status=$?

echo "== python tests: interop, Airflow, shipping (the image build included), docs"
export RPS_REQUIRE_IMAGE=1
RPS_MDBOOK=$(bash scripts/docs.sh --install-only) || status=$?
export RPS_MDBOOK
"$venv/bin/python" -m pytest -q -p no:cacheprovider tests/python || status=$?

echo "== lint: rustfmt --check, clippy -D warnings (what make lint runs)"
cargo fmt --all -- --check || status=$?
cargo clippy --workspace --all-targets --locked -- -D warnings || status=$?
# Every suite always runs; any failing fails the run.
exit "$status"

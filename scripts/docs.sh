#!/usr/bin/env bash
# Build the reference book (docs/ → target/book) with mdBook. mdBook is taken from $RPS_MDBOOK,
# the PATH or ~/.cache/rps-tools/bin, and installed there from crates.io when missing (once,
# ≈ 3 min on 2 cores; only its HTML renderer and search are built). Usage: docs.sh [--install-only]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tools="${RPS_TOOLS_ROOT:-$HOME/.cache/rps-tools}"
mdbook="${RPS_MDBOOK:-}"
if [[ -z "$mdbook" ]]; then
  if command -v mdbook >/dev/null; then mdbook=$(command -v mdbook)
  else
    mdbook="$tools/bin/mdbook"
    if [[ ! -x "$mdbook" ]]; then
      echo "installing mdBook into $tools (once)" >&2
      cargo install mdbook --version '^0.4' --locked --no-default-features --features search --root "$tools" >&2
    fi
  fi
fi
if [[ "${1:-}" == "--install-only" ]]; then echo "$mdbook"; exit 0; fi
"$mdbook" build "$root"
echo "the book is in $root/target/book/index.html"

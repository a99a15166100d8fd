#!/usr/bin/env bash
# Build the RPS container image from docker/Dockerfile with buildah (no Docker engine needed) and
# check it: static binary, image config (entrypoint, non-root user), size under the limit, `--help`,
# the whole pipeline on the bundled sample inside the image, and `rps serve` answering /ready.
#
# The binary is compiled here with the same command as the Dockerfile's builder stage, then given
# to the Dockerfile's `prebuilt` stage (BIN_SOURCE=prebuilt): the registry-only builder stage needs
# a Rust base image, which this machine cannot pull. Everything lives in a private buildah store
# under a temporary folder that is removed on exit, so nothing is left behind and a rerun starts
# clean. Needs: buildah (Debian), cargo with the musl target, musl-tools, python3, curl.
#
# Usage: scripts/image.sh [--export FILE.tar]
#   --export FILE.tar   also write the image as an OCI archive (`buildah push … oci-archive:`)
# Environment:
#   CARGO_TARGET_DIR    cargo's build folder (default: ./target)
#   RPS_IMAGE_PROFILE   cargo profile of the binary (default: dist)
#   RPS_IMAGE_BINARY    use this static binary instead of building one
#   RPS_IMAGE_MAX_MB    size limit in MB of 10^6 bytes, uncompressed (default: 25)
#   RPS_IMAGE_TAG       image name (default: localhost/rps:<version>)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
target=x86_64-unknown-linux-musl
profile=${RPS_IMAGE_PROFILE:-dist}
max_mb=${RPS_IMAGE_MAX_MB:-25}
export_to=
while (($#)); do
  case $1 in
    --export) export_to=${2:?--export needs a file}; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "error: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
command -v buildah >/dev/null || { echo "error: buildah not found (apt-get install buildah)" >&2; exit 3; }

t0=$SECONDS
phase() { printf '\n== %s (at %ds)\n' "$*" $((SECONDS - t0)); }
fail() { echo "image check FAILED: $*" >&2; exit 1; }

version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml)
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
tag=${RPS_IMAGE_TAG:-localhost/rps:$version}

state=$(mktemp -d "${TMPDIR:-/tmp}/rps-image.XXXXXX")
serve_pid=
bah() { buildah --root "$state/storage" --runroot "$state/run" --storage-driver vfs "$@"; }
cleanup() {
  if [[ -n "$serve_pid" ]]; then kill "$serve_pid" 2>/dev/null || true; wait "$serve_pid" 2>/dev/null || true; fi
  bah rm --all >/dev/null 2>&1 || true
  bah rmi --all --force >/dev/null 2>&1 || true
  rm -rf "$state"
}
trap cleanup EXIT
echo "scratch folder (removed on exit): $state"

# ---- the binary -------------------------------------------------------------------------------
if [[ -n "${RPS_IMAGE_BINARY:-}" ]]; then
  bin=$RPS_IMAGE_BINARY
  phase "binary: $bin (given)"
else
  phase "binary: cargo build --profile $profile -p rps ($target)"
  t=$SECONDS
  cargo build --profile "$profile" --locked --target "$target" -p rps
  echo "build time: $((SECONDS - t)) s"
  bin=${CARGO_TARGET_DIR:-$root/target}/$target/$profile/rps
fi
[[ -x "$bin" ]] || fail "no executable at $bin"
if readelf -lW "$bin" | grep -q 'INTERP' || readelf -dW "$bin" | grep -q '(NEEDED)'; then
  fail "$bin is dynamically linked: $(ldd "$bin" 2>&1 | head -3)"
fi
echo "static: yes (ldd: $(ldd "$bin" 2>&1 | head -1 | sed 's/^[[:space:]]*//'))"
echo "binary size: $(stat -c %s "$bin") bytes"

# ---- build ------------------------------------------------------------------------------------
phase "buildah bud -f docker/Dockerfile --build-arg BIN_SOURCE=prebuilt -t $tag"
ctx=$state/context
mkdir -p "$ctx/dist" "$ctx/docker"
cp "$bin" "$ctx/dist/rps"
cp /etc/ssl/certs/ca-certificates.crt "$ctx/dist/ca-certificates.crt"
cp -R docker/rootfs "$ctx/docker/rootfs"
mkdir -p "$ctx/docker/rootfs/tmp" && chmod 1777 "$ctx/docker/rootfs/tmp"
t=$SECONDS
bah bud --quiet --isolation chroot --file docker/Dockerfile --tag "$tag" \
  --build-arg BIN_SOURCE=prebuilt --build-arg VERSION="$version" --build-arg REVISION="$revision" \
  "$ctx" >/dev/null
echo "image build time: $((SECONDS - t)) s"

phase "image config"
bah inspect --type image "$tag" >"$state/inspect.json"
python3 - "$state/inspect.json" "$revision" <<'PY' || fail "image config"
import json, sys
c, revision = json.load(open(sys.argv[1]))["OCIv1"]["config"], sys.argv[2]
print(json.dumps(c))
env = dict(e.split("=", 1) for e in c.get("Env", []))
problems = []
if c.get("Entrypoint") != ["/rps"]: problems.append(f"entrypoint {c.get('Entrypoint')}")
if c.get("User") != "65532:65532": problems.append(f"user {c.get('User')!r}")
if c.get("WorkingDir") != "/work": problems.append(f"workdir {c.get('WorkingDir')!r}")
if env.get("SSL_CERT_FILE") != "/etc/ssl/certs/ca-certificates.crt": problems.append("SSL_CERT_FILE")
if env.get("RPS_GIT_COMMIT") != revision: problems.append(f"RPS_GIT_COMMIT {env.get('RPS_GIT_COMMIT')!r}")
if problems: sys.exit("; ".join(problems))
PY

phase "size"
bah push --quiet "$tag" "oci:$state/oci:rps" >/dev/null
read -r uncompressed compressed files < <(python3 - "$state/oci" <<'PY'
import json, os, sys
d = sys.argv[1]
blob = lambda dg: os.path.join(d, "blobs", *dg.split(":"))
index = json.load(open(os.path.join(d, "index.json")))
manifest = json.load(open(blob(index["manifests"][0]["digest"])))
compressed = sum(l["size"] for l in manifest["layers"]) + manifest["config"]["size"]
import gzip, tarfile
uncompressed, files = 0, 0
for l in manifest["layers"]:
    with tarfile.open(blob(l["digest"]), "r:*") as t:
        for m in t:
            files += 1
            uncompressed += m.size
print(uncompressed, compressed, files)
PY
)
limit=$((max_mb * 1000 * 1000))
awk -v u="$uncompressed" -v c="$compressed" -v f="$files" -v m="$max_mb" 'BEGIN {
  printf "image size: %d bytes uncompressed (%.1f MB), %d bytes compressed (%.1f MB), %d files; limit %s MB\n", u, u / 1e6, c, c / 1e6, f, m }'
((uncompressed < limit)) || fail "image is $uncompressed bytes, over the $max_mb MB limit"

# ---- run it -----------------------------------------------------------------------------------
ctr=$(bah from --quiet "$tag")
run() { bah run --isolation chroot "$@"; }

phase "rps --help inside the image"
help=$(run "$ctr" -- /rps --help)
grep -q '^Usage: rps <COMMAND>' <<<"$help" || fail "rps --help: $help"
for stage in extract quality transform train evaluate serve; do
  grep -qE "^  $stage " <<<"$help" || fail "rps --help does not list $stage"
done
echo "$help" | head -3
run "$ctr" -- /rps --version

phase "pipeline on the bundled sample inside the image (uid 65532, /work mounted)"
work=$state/work
mkdir -p "$work/data/sample"
cp params.yaml "$work/"
cp data/sample/btc_usdt_1h_binance_2020-2021.csv "$work/data/sample/"
chown -R 65532:65532 "$work"
stage() { run --volume "$work:/work" --workingdir /work "$ctr" -- /rps "$@" --home /work/.rps --log-format json -q; }
t=$SECONDS
stage extract --full-refresh
[[ -f "$work/.rps/data/raw/BTC-USDT/_manifest.json" ]] || fail "extract wrote no manifest"
stage quality --report-dir /work/reports
python3 -c 'import json, sys; sys.exit(0 if json.load(open(sys.argv[1]))["passed"] is True else "quality gate not passed")' \
  "$work/reports/quality.json" || fail "quality.json"
stage transform
stage train
stage evaluate --report-dir /work/reports >/dev/null
for f in data/features/BTC-USDT/features.parquet models/candidate/model.json registry/btc-volatility/aliases.json; do
  [[ -s "$work/.rps/$f" ]] || fail "missing .rps/$f"
done
grep -q 'promoted to champion' "$work/reports/evaluation.md" || fail "evaluation.md has no promotion"
echo "extract, quality, transform, train, evaluate: ok in $((SECONDS - t)) s (files owned by $(stat -c %u:%g "$work/reports/quality.json"))"

phase "rps serve inside the image (docs/deploy.md: -v \"\$PWD/.rps:/work/.rps:ro\" rps serve)"
# As on a host where another user ran the pipeline: the home belongs to root now, and the image's
# user 65532 reads it through a read-only mount. What RPS writes follows the umask (0644 files,
# 0755 folders under 022), so that works; tempfile's 0600 once made it fail.
chown -R 0:0 "$work/.rps"
unreadable=$(find "$work/.rps" \( -type f ! -perm -o+r \) -o \( -type d ! -perm -o+rx \) | head -5)
[[ -z "$unreadable" ]] || fail "files other users cannot read: $unreadable"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# Called directly (not through a function) so that $! is buildah itself, which passes SIGTERM on.
buildah --root "$state/storage" --runroot "$state/run" --storage-driver vfs run --isolation chroot \
  --volume "$work/.rps:/work/.rps:ro" --workingdir /work "$ctr" -- /rps serve --bind "127.0.0.1:$port" \
  >"$state/serve.log" 2>&1 &
serve_pid=$!
ready=
for _ in $(seq 1 100); do
  if curl -fsS "http://127.0.0.1:$port/ready" >/dev/null 2>&1; then ready=1; break; fi
  kill -0 "$serve_pid" 2>/dev/null || break
  sleep 0.1
done
[[ -n "$ready" ]] || { cat "$state/serve.log" >&2; fail "rps serve never became ready"; }
curl -fsS "http://127.0.0.1:$port/health" >/dev/null || fail "/health"
curl -fsS "http://127.0.0.1:$port/metrics" | grep -q '^model_info' || fail "/metrics has no model_info"
echo "serve: /ready, /health and /metrics answer on 127.0.0.1:$port"
# The compose health check, from inside the image; and it must fail on a port nobody serves.
run "$ctr" -- /rps probe "http://127.0.0.1:$port/ready" || fail "rps probe /ready failed inside the image"
if run "$ctr" -- /rps probe --timeout 1 "http://127.0.0.1:1/ready" 2>/dev/null; then fail "rps probe passed on a closed port"; fi
echo "serve: rps probe (the compose health check) passes inside the image"
# buildah's chroot runtime answers its own SIGTERM with SIGKILL for the child, so send SIGTERM to
# rps itself (the innermost descendant: buildah → chroot runtime → chroot exec → /rps).
leaf=$serve_pid
while child=$(ps -o pid= --ppid "$leaf" | head -1 | tr -d ' ') && [[ -n "$child" ]]; do leaf=$child; done
[[ "$(cat "/proc/$leaf/comm" 2>/dev/null)" == rps ]] || fail "could not find the rps process under buildah ($leaf)"
kill -TERM "$leaf"
status=0
wait "$serve_pid" || status=$?
((status == 0)) || { cat "$state/serve.log" >&2; fail "rps serve did not stop cleanly on SIGTERM (exit $status)"; }
serve_pid=
echo "serve: stopped cleanly on SIGTERM"

if [[ -n "$export_to" ]]; then
  phase "export"
  rm -f "$export_to"
  bah push --quiet "$tag" "oci-archive:$export_to:$tag" >/dev/null
  echo "wrote $export_to ($(stat -c %s "$export_to") bytes)"
fi

printf '\nimage ok: %s, %s bytes, %d s in all\n' "$tag" "$uncompressed" $((SECONDS - t0))

"""The real image, built from docker/Dockerfile with buildah by scripts/image.sh, and checked there:
static binary, image config, size under 25 MB, `--help`, the whole pipeline on the bundled sample
and `rps serve` inside the image. Needs buildah and root (vfs storage, chroot isolation).

Skipped only when buildah is absent and RPS_REQUIRE_IMAGE is not set (`make test` sets it).
"""

import json
import os
import re
import shutil
import subprocess

import pytest

from ship_helpers import ROOT, TARGET, run, tool

MAX_BYTES = 25 * 1000 * 1000


def buildah_or_skip() -> str:
    found = shutil.which("buildah")
    if found:
        return found
    if os.environ.get("RPS_REQUIRE_IMAGE"):
        pytest.fail("RPS_REQUIRE_IMAGE is set but buildah is not installed (apt-get install buildah)")
    pytest.skip("buildah is not installed (apt-get install buildah); set RPS_REQUIRE_IMAGE=1 to make this a failure")


@pytest.fixture(scope="module")
def image_run():
    """One run of scripts/image.sh (it builds the dist binary, the image, and runs the checks)."""
    buildah_or_skip()
    out = subprocess.run(["bash", str(ROOT / "scripts" / "image.sh")], cwd=ROOT, capture_output=True, text=True, timeout=5400)
    return out


def test_image_build_and_checks_pass(image_run):
    assert image_run.returncode == 0, f"scripts/image.sh failed ({image_run.returncode}):\n{image_run.stdout[-6000:]}\n{image_run.stderr[-6000:]}"
    print(image_run.stdout)


def test_image_build_size_is_under_25_mb(image_run):
    m = re.search(r"^image size: (\d+) bytes uncompressed .*?, (\d+) bytes compressed", image_run.stdout, re.M)
    assert m, f"no size line in the output:\n{image_run.stdout[-3000:]}"
    uncompressed, compressed = int(m.group(1)), int(m.group(2))
    assert uncompressed < MAX_BYTES, f"{uncompressed} bytes"
    assert compressed < uncompressed


def test_image_build_ran_the_stages_inside(image_run):
    out = image_run.stdout
    assert re.search(r"^Usage: rps <COMMAND>|^RPS: Bitcoin volatility", out, re.M)
    assert "extract, quality, transform, train, evaluate: ok" in out
    assert "files owned by 65532:65532" in out, "stages must run as the image's non-root user"
    assert "serve: /ready, /health and /metrics answer" in out
    assert "serve: rps probe (the compose health check) passes inside the image" in out
    assert "serve: stopped cleanly on SIGTERM" in out
    assert "static: yes" in out


def test_image_build_leaves_nothing_behind(image_run):
    m = re.search(r"^scratch folder \(removed on exit\): (\S+)$", image_run.stdout, re.M)
    assert m, "scripts/image.sh names its scratch folder"
    assert not os.path.exists(m.group(1)), f"scripts/image.sh left {m.group(1)} behind"


def test_image_build_fails_over_the_size_limit(image_run):
    """The size check can fail: the same binary against a 1 MB limit."""
    binary = os.path.join(os.environ.get("CARGO_TARGET_DIR", str(ROOT / "target")), TARGET, "dist", "rps")
    assert os.path.isfile(binary), binary
    env = {**os.environ, "RPS_IMAGE_BINARY": binary, "RPS_IMAGE_MAX_MB": "1"}
    out = subprocess.run(["bash", str(ROOT / "scripts" / "image.sh")], cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 1, out.stdout[-2000:] + out.stderr[-2000:]
    assert "over the 1 MB limit" in out.stderr


def test_image_build_context_of_the_builder_stage_is_a_cargo_workspace(tmp_path):
    """What the builder stage's `COPY . .` receives (the repository through .dockerignore) is a
    complete workspace for cargo, and nothing heavy (target/, .git, local data) comes along."""
    buildah = buildah_or_skip()
    store = tmp_path / "store"
    bah = [buildah, "--root", store / "root", "--runroot", store / "run", "--storage-driver", "vfs"]
    dockerfile = tmp_path / "Context.Dockerfile"
    dockerfile.write_text("FROM scratch\nCOPY . /ctx/\n")
    try:
        run(*bah, "bud", "--quiet", "--isolation", "chroot", "-f", dockerfile, "-t", "localhost/rps-context", ROOT, check=True)
        ctr = run(*bah, "from", "--quiet", "localhost/rps-context", check=True).stdout.strip()
        mount = run(*bah, "mount", ctr, check=True).stdout.strip()
        ctx = os.path.join(mount, "ctx")
        names = set(os.listdir(ctx))
        assert {"Cargo.toml", "Cargo.lock", "crates", "tests", "docker"} <= names, names
        for heavy in ("target", ".git", ".rps", "data", "reports", ".venv", "dags", "monitoring"):
            assert heavy not in names, f"{heavy} is in the build context"
        meta = run("cargo", "metadata", "--offline", "--locked", "--no-deps", "--format-version", "1",
                   "--manifest-path", os.path.join(ctx, "Cargo.toml"), check=True)
        packages = {p["name"] for p in json.loads(meta.stdout)["packages"]}
        assert "rps" in packages
        size = int(run("du", "-sb", ctx, check=True).stdout.split()[0])
        assert size < 20 * 1000 * 1000, f"build context is {size} bytes"
    finally:
        run(*bah, "rm", "--all")
        run(*bah, "rmi", "--all", "--force")


def test_image_script_passes_shellcheck():
    out = run(tool("shellcheck"), "--severity=style", ROOT / "scripts" / "image.sh")
    assert out.returncode == 0, out.stdout

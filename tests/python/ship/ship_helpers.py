"""Helpers of the shipping tests: the container image, the compose stack, the Kubernetes manifests, the workflows.

The checkers come from tests/python/requirements-ship.txt (wheels with their binaries, offline):
hadolint, actionlint, shellcheck, kubernetes-validate and the Docker Compose CLI. They are looked
up next to this Python first (the venv's bin/), then on PATH; a missing one fails its test.
"""

import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[3]
DOCKER = ROOT / "docker"
K8S = ROOT / "deploy" / "k8s"
WORKFLOWS = ROOT / ".github" / "workflows"
MONITORING = ROOT / "monitoring"
TARGET = "x86_64-unknown-linux-musl"


def tool(name: str) -> str:
    """The path of a checker binary: the venv's bin/ first, then PATH."""
    local = pathlib.Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if not found:
        pytest.fail(f"{name} not found: install tests/python/requirements-ship.txt into this venv")
    return found


def run(*args, check=False, **kw):
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("timeout", 600)
    out = subprocess.run([str(a) for a in args], **kw)
    if check:
        assert out.returncode == 0, f"{args[0]} exited {out.returncode}:\n{out.stdout}\n{out.stderr}"
    return out


def load_all(path: pathlib.Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def workspace_version() -> str:
    m = re.search(r'^\[workspace\.package\]\s*\n(?:[^\[].*\n)*?version\s*=\s*"([^"]+)"', (ROOT / "Cargo.toml").read_text(), re.M)
    assert m, "no [workspace.package] version in Cargo.toml"
    return m.group(1)


def rps_binary() -> pathlib.Path | None:
    """A built `rps` (any profile), for checking flags against `rps <stage> --help`."""
    candidates = []
    if os.environ.get("RPS_BIN_DIR"):
        candidates.append(pathlib.Path(os.environ["RPS_BIN_DIR"]) / "rps")
    target_dir = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    candidates += [target_dir / TARGET / p / "rps" for p in ("release", "dist")]
    candidates += [target_dir / p / "rps" for p in ("release", "debug")]
    return next((c for c in candidates if c.is_file() and os.access(c, os.X_OK)), None)


def option_names(args: list[str]) -> list[str]:
    """The long options in an argument list (`--flag=value` or `--flag value`)."""
    return [a.split("=", 1)[0] for a in args if a.startswith("--")]

"""Shared fixtures: where the Rust binaries are, and a pipeline run on the bundled sample."""
import os
import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def bin_dir() -> pathlib.Path:
    d = os.environ.get("RPS_BIN_DIR")
    if not d:
        pytest.fail("RPS_BIN_DIR is not set: run the Python tests through `make test`")
    return pathlib.Path(d)


def run_stage(stage, cwd, *args):
    out = subprocess.run([str(bin_dir() / stage), *args], cwd=cwd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"{stage} failed ({out.returncode}):\n{out.stderr}"
    return out


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory):
    """The whole pipeline on the bundled sample, in a temporary project folder."""
    proj = tmp_path_factory.mktemp("project")
    shutil.copy(ROOT / "params.yaml", proj / "params.yaml")
    (proj / "data" / "sample").mkdir(parents=True)
    shutil.copy(ROOT / "data/sample/btc_usd_1h_coinbase_2018.csv", proj / "data/sample/")
    for stage in ["rps-extract", "rps-quality", "rps-transform", "rps-train", "rps-evaluate"]:
        run_stage(stage, proj)
    return proj

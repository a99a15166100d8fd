"""Helpers for the Python tests: where the Rust binaries are, and running the pipeline.

A plain module, not conftest.py: test folders below may have their own conftest.py, which would
shadow `from conftest import ...`."""
import os
import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
STAGES = ["rps-extract", "rps-quality", "rps-transform", "rps-train", "rps-evaluate"]
MLFLOW_VARS = ["MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN", "MLFLOW_EXPERIMENT_NAME"]


def bin_dir() -> pathlib.Path:
    d = os.environ.get("RPS_BIN_DIR")
    if not d:
        pytest.fail("RPS_BIN_DIR is not set: run the Python tests through `make test`")
    return pathlib.Path(d)


def stage_env(**extra):
    """The environment for a stage: this process's, without MLflow settings unless given."""
    env = {k: v for k, v in os.environ.items() if k not in MLFLOW_VARS}
    env.update(extra)
    return env


def run_stage(stage, cwd, *args, env=None):
    out = subprocess.run([str(bin_dir() / stage), *args], cwd=cwd, capture_output=True, text=True, timeout=600, env=env if env is not None else stage_env())
    assert out.returncode == 0, f"{stage} failed ({out.returncode}):\n{out.stderr}"
    return out


def run_pipeline(proj, env=None):
    """The whole pipeline on the bundled sample, in the project folder `proj`."""
    shutil.copy(ROOT / "params.yaml", proj / "params.yaml")
    (proj / "data" / "sample").mkdir(parents=True)
    shutil.copy(ROOT / "data/sample/btc_usdt_1h_binance_2020-2021.csv", proj / "data/sample/")
    for stage in STAGES:
        run_stage(stage, proj, env=env)
    return proj



"""Shared by the Airflow tests: paths, a throw-away AIRFLOW_HOME, environment helpers, fixtures.

Airflow reads AIRFLOW_HOME when it is first imported and writes airflow.cfg, a sqlite DB and logs
there, so every test module imports this module before Airflow. The folder is removed when the
process exits; nothing is written into the repository (no byte code next to the DAG file either).

This is a plain module, not a conftest.py: tests/python/test_*.py import their helpers with
`from conftest import ...`, which a second conftest.py in a sub-folder would shadow.
"""

import atexit
import importlib.util
import os
import pathlib
import shutil
import sys
import tempfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]
DAGS = ROOT / "dags"
DAG_FILE = DAGS / "crypto_volatility_pipeline.py"
K8S_DIR = ROOT / "deploy" / "k8s"

# Settings the DAG reads; the tests decide every one of them.
DAG_ENV_PREFIXES = ("RPS_AIRFLOW_",)
DAG_ENV_NAMES = ("RPS_BIN", "RPS_HOME", "RPS_PARAMS", "RPS_LOG_FORMAT", "RPS_SERVE_TOKEN")

if "RPS_TEST_AIRFLOW_HOME" not in os.environ:
    _home = tempfile.mkdtemp(prefix="rps-airflow-home-")
    atexit.register(shutil.rmtree, _home, ignore_errors=True)
    os.environ["RPS_TEST_AIRFLOW_HOME"] = _home
    os.environ["AIRFLOW_HOME"] = _home
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(DAGS)
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    # build_pod_request_obj(dry_run=True) needs no cluster: a missing kube config proves it.
    os.environ["KUBECONFIG"] = str(pathlib.Path(_home) / "no-kubeconfig")
    sys.dont_write_bytecode = True

NO_AIRFLOW = "Airflow is not installed: pip install -r tests/python/requirements-airflow.txt"


def clean_env(extra=None):
    """os.environ without any DAG setting, MLflow or S3 configuration, plus `extra`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(DAG_ENV_PREFIXES)
        and k not in DAG_ENV_NAMES
        and not k.startswith(("MLFLOW_", "AWS_"))
        and k != "RPS_TEST_AIRFLOW_HOME"
    }
    env.update(extra or {})
    return env


@pytest.fixture(scope="session")
def dag_module():
    """The DAG file imported as a module (helpers, Settings, build_dags) with default settings."""
    pytest.importorskip("airflow", reason=NO_AIRFLOW)
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(clean_env())
    try:
        spec = importlib.util.spec_from_file_location("rps_dag_under_test", DAG_FILE)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
        spec.loader.exec_module(module)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return module

"""With MLFLOW_TRACKING_URI set, the pipeline registers its model in MLflow as a real MLflow
model: `mlflow.pyfunc.load_model("models:/btc-volatility@champion")` predicts exactly what
Python's xgboost predicts with the model file rps-train wrote (raw outputs)."""
import json
import os
import uuid

import numpy as np
import pyarrow.parquet as pq
import pytest
import xgboost as xgb

from rps_testing import run_pipeline, stage_env

MODEL = "btc-volatility"


@pytest.fixture(scope="module")
def mlflow_pipeline(tmp_path_factory):
    uri = os.environ.get("RPS_TEST_MLFLOW_URI")
    if not uri:
        pytest.fail("RPS_TEST_MLFLOW_URI is not set: start a server with crates/rps-mlflow/tests/servers.sh or run `make test`")
    experiment = f"rps-python-{uuid.uuid4().hex[:12]}"
    proj = run_pipeline(tmp_path_factory.mktemp("mlflow-project"), env=stage_env(MLFLOW_TRACKING_URI=uri, MLFLOW_EXPERIMENT_NAME=experiment))
    return proj, uri, experiment


def split_features(proj):
    feats = proj / ".rps/data/features/BTC-USD"
    schema = json.loads((feats / "schema.json").read_text())
    table = pq.read_table(feats / "features.parquet").to_pandas()
    test = table[table["split"] == "test"]
    return schema["features"], test[schema["features"]].astype("float64").reset_index(drop=True)


def test_pyfunc_champion_predicts_what_xgboost_predicts_with_the_rust_model(mlflow_pipeline):
    import mlflow
    import pandas as pd

    proj, uri, experiment = mlflow_pipeline
    mlflow.set_tracking_uri(uri)
    names, X = split_features(proj)
    assert isinstance(X, pd.DataFrame) and len(X) > 1000

    client = mlflow.MlflowClient()
    champion = client.get_model_version_by_alias(MODEL, "champion")
    run = client.get_run(champion.run_id)
    assert run.data.tags["rps.stage"] == "train"
    assert run.info.status == "FINISHED"

    pyfunc = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion")
    got = np.asarray(pyfunc.predict(X)).ravel()

    booster = xgb.Booster()
    booster.load_model(str(proj / ".rps/models/candidate/model.json"))
    want = booster.predict(xgb.DMatrix(X.to_numpy(dtype=np.float32), missing=np.nan))
    np.testing.assert_array_equal(got.astype(np.float32), want)

    # The signature names the schema's features and the volatility output.
    inputs = [c.name for c in pyfunc.metadata.get_input_schema().inputs]
    assert inputs == names


def test_every_stage_run_is_in_the_experiment(mlflow_pipeline):
    import mlflow

    _, uri, experiment = mlflow_pipeline
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=[experiment], output_format="list")
    assert sorted(r.data.tags["rps.stage"] for r in runs) == ["evaluate", "extract", "quality", "train", "transform"]
    assert all(r.info.status == "FINISHED" for r in runs)
    train = next(r for r in runs if r.data.tags["rps.stage"] == "train")
    history = mlflow.MlflowClient().get_metric_history(train.info.run_id, next(k for k in train.data.metrics if k.startswith("validation_") and len(mlflow.MlflowClient().get_metric_history(train.info.run_id, k)) > 10))
    assert len(history) > 10

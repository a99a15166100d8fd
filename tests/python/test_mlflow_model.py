"""With MLFLOW_TRACKING_URI set, the pipeline registers its model in MLflow as a real MLflow
model: `mlflow.pyfunc.load_model("models:/btc-volatility@champion").predict(df)` returns the
volatility forecasts `rps evaluate` scored (RPS's own loader, shipped in the model directory),
and `mlflow.xgboost.load_model` the booster, which predicts exactly what Python's xgboost predicts
with the model file rps-train wrote (raw outputs)."""
import json
import os
import uuid

import numpy as np
import pandas as pd
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
    env = stage_env(MLFLOW_TRACKING_URI=uri, MLFLOW_EXPERIMENT_NAME=experiment, RPS_PIPELINE_RUN=f"test-{experiment}")
    proj = run_pipeline(tmp_path_factory.mktemp("mlflow-project"), env=env)
    return proj, uri, experiment


def split_features(proj):
    feats = proj / ".rps/data/features/BTC-USDT"
    schema = json.loads((feats / "schema.json").read_text())
    table = pq.read_table(feats / "features.parquet").to_pandas()
    test = table[table["split"] == "test"]
    # As predictions.csv writes them.
    ts = pd.to_datetime(test["ts"], utc=True).dt.strftime("%Y-%m-%dT%H:%M:%SZ").reset_index(drop=True)
    return schema["features"], test[schema["features"]].astype("float64").reset_index(drop=True), ts


def test_pyfunc_champion_predicts_the_volatility_rps_evaluate_scored(mlflow_pipeline):
    import mlflow
    import pandas as pd

    proj, uri, experiment = mlflow_pipeline
    mlflow.set_tracking_uri(uri)
    names, X, ts = split_features(proj)
    assert isinstance(X, pd.DataFrame) and len(X) > 1000

    client = mlflow.MlflowClient()
    champion = client.get_model_version_by_alias(MODEL, "champion")
    run = client.get_run(champion.run_id)
    assert run.data.tags["rps.stage"] == "train"
    assert run.info.status == "FINISHED"

    pyfunc = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion")
    assert pyfunc.metadata.flavors["python_function"]["loader_module"] == "rps_pyfunc"
    got = pyfunc.predict(X)
    levels = ["q05", "q10", "q25", "q50", "q75", "q90", "q95"]
    assert list(got.columns) == ["volatility", "median", *levels]
    vol = got["volatility"].to_numpy()
    # Hourly sigma of log returns: around 0.5 %, never a raw booster value in the thousands.
    assert 1e-4 < np.median(vol) < 0.05, np.median(vol)

    # The same numbers rps-evaluate scored on the test split (predictions.csv keeps 8 decimals).
    scored = pd.read_csv(proj / ".rps/reports/predictions.csv")
    both = pd.DataFrame({"ts": ts, "pyfunc": vol}).merge(scored[["ts", "model"]], on="ts")
    assert len(both) > 1000
    np.testing.assert_allclose(both["pyfunc"], both["model"], rtol=0, atol=6e-9)

    # The distribution: the same median and quantiles rps-evaluate wrote, monotone per row.
    dist = got.assign(ts=ts).merge(scored, on="ts")
    assert len(dist) == len(both)
    np.testing.assert_allclose(dist["median"], dist["model_median"], rtol=0, atol=6e-9)
    for q in levels:
        np.testing.assert_allclose(dist[q], dist[f"model_{q}"], rtol=0, atol=6e-9)
    assert (np.diff(got[levels].to_numpy(), axis=1) >= 0).all(), "quantiles never cross"
    np.testing.assert_array_equal(got["median"].to_numpy(), got["q50"].to_numpy())

    # Columns by name, in any order, extra columns ignored; a missing one is a clear error.
    shuffled = X[list(reversed(names))].assign(extra=1.0)
    np.testing.assert_array_equal(pyfunc.predict(shuffled)["volatility"].to_numpy(), vol)
    with pytest.raises(Exception, match=names[0]):
        pyfunc.predict(X.drop(columns=[names[0]]))

    # The signature names the schema's features and the volatility output.
    inputs = [c.name for c in pyfunc.metadata.get_input_schema().inputs]
    assert inputs == names
    assert [c.name for c in pyfunc.metadata.get_output_schema().inputs] == ["volatility", "median", *levels]

    # The input example (each feature's training median) is a valid request.
    example = pyfunc.input_example
    assert list(example.columns) == names and len(example) == 1
    assert 1e-4 < pyfunc.predict(example)["volatility"].iloc[0] < 0.05


def test_xgboost_flavor_is_the_booster_rps_train_wrote(mlflow_pipeline):
    import mlflow
    import mlflow.xgboost

    proj, uri, _ = mlflow_pipeline
    mlflow.set_tracking_uri(uri)
    _, X, _ = split_features(proj)
    booster = mlflow.xgboost.load_model(f"models:/{MODEL}@champion")
    got = booster.predict(xgb.DMatrix(X.to_numpy(dtype=np.float32), missing=np.nan))
    local = xgb.Booster()
    local.load_model(str(proj / ".rps/models/candidate/model.json"))
    want = local.predict(xgb.DMatrix(X.to_numpy(dtype=np.float32), missing=np.nan))
    np.testing.assert_array_equal(got, want)


def test_one_pipeline_run_with_the_five_stage_runs_nested_under_it(mlflow_pipeline):
    import mlflow

    _, uri, experiment = mlflow_pipeline
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=[experiment], output_format="list")
    parents = [r for r in runs if r.data.tags.get("rps.stage") == "pipeline"]
    assert len(parents) == 1, [r.data.tags for r in runs]
    parent = parents[0]
    assert parent.data.tags["rps.pipeline_run"] == f"test-{experiment}"
    assert parent.info.status == "FINISHED"
    stages = [r for r in runs if r is not parent]
    assert sorted(r.data.tags["rps.stage"] for r in stages) == ["evaluate", "extract", "quality", "train", "transform"]
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in stages)
    assert all(r.info.status == "FINISHED" for r in stages)
    train = next(r for r in stages if r.data.tags["rps.stage"] == "train")
    history = mlflow.MlflowClient().get_metric_history(train.info.run_id, next(k for k in train.data.metrics if k.startswith("validation_") and len(mlflow.MlflowClient().get_metric_history(train.info.run_id, k)) > 10))
    assert len(history) > 10
    assert train.data.tags["git_dirty"] in ("true", "false")


def test_runs_name_their_dataset_and_the_version_says_where_it_came_from(mlflow_pipeline):
    import mlflow

    proj, uri, experiment = mlflow_pipeline
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient()
    runs = mlflow.search_runs(experiment_names=[experiment], output_format="list")
    train = next(r for r in runs if r.data.tags.get("rps.stage") == "train")
    inputs = train.inputs.dataset_inputs
    assert len(inputs) == 1, inputs
    ds = inputs[0].dataset
    assert ds.name == "features/BTC-USDT"
    assert ds.digest and len(ds.digest) <= 36
    source = json.loads(ds.source)["uri"].rstrip("/")
    assert source.endswith(".rps/data/features/BTC-USDT") and source.startswith("/"), source
    assert [t.value for t in inputs[0].tags if t.key == "mlflow.data.context"] == ["training"]

    champion = client.get_model_version_by_alias(MODEL, "champion")
    assert "BTC-USDT" in champion.description and "validation" in champion.description
    tags = champion.tags
    assert tags["rps.symbol"] == "BTC-USDT"
    assert tags["rps.data_hash"] == train.data.tags["data_hash"]
    assert float(tags["rps.validation_qlike"]) > 0
    assert tags["rps.git_dirty"] in ("true", "false")
    assert "champion" in client.get_registered_model(MODEL).description

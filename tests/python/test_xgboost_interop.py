"""RPS models are XGBoost models: Python's xgboost loads what the Rust stages save and predicts the
same numbers, and a model saved by Python's xgboost predicts identically in RPS's engine."""
import json
import math
import subprocess

import numpy as np
import pyarrow.parquet as pq
import xgboost as xgb

from rps_testing import bin_dir


def examples_dir():
    return bin_dir() / "examples"


def rust_predict(model_path, rows, tmp_path):
    csv = tmp_path / "rows.csv"
    with open(csv, "w") as f:
        for r in rows:
            f.write(",".join("" if math.isnan(v) else repr(float(v)) for v in r) + "\n")
    out = subprocess.run([str(examples_dir() / "xgb_predict"), str(model_path), str(csv)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return np.array([float(x) for x in out.stdout.split()], dtype=np.float32)


def volatility_from_raw(meta, features, X, raw):
    """What RPS's `VolatilityModel::to_volatility` does, from meta.json alone: the optional linear
    base margin L on log volatility (missing inputs replaced by their training means), the target
    transform, the validation scale factor, then the floor."""
    raw = raw.astype(np.float64)
    margin = np.zeros(len(X))
    if meta.get("margin"):
        m = meta["margin"]
        margin += m["coefficients"][0]
        for term, b, mean in zip(m["terms"], m["coefficients"][1:], m["means"]):
            col = X[:, features.index(term)].astype(np.float64)
            margin += b * np.where(np.isfinite(col), col, mean)
    transform = meta["transform"]
    if transform == "log":
        vol = np.exp(raw + margin)
    elif transform in ("variance", "power"):
        k = 2.0 if transform == "variance" else meta["power"]
        vol = np.power(np.maximum(raw, 0.0), 1.0 / k) / 100.0 * np.exp(margin)
    else:
        vol = raw
    vol = vol * meta["smearing"]
    return np.where(np.isfinite(vol), np.maximum(vol, meta["floor"]), meta["floor"])


def load_test_split(pipeline):
    feats = pipeline / ".rps/data/features/BTC-USDT"
    schema = json.loads((feats / "schema.json").read_text())
    table = pq.read_table(feats / "features.parquet").to_pydict()
    test_rows = [i for i, s in enumerate(table["split"]) if s == "test"]
    X = np.array([[np.nan if table[f][i] is None else table[f][i] for f in schema["features"]] for i in test_rows], dtype=np.float32)
    return schema, X, test_rows


def test_python_xgboost_loads_rust_models_and_predicts_the_same(pipeline, tmp_path):
    schema, X, _ = load_test_split(pipeline)
    model_dir = pipeline / ".rps/models/candidate"
    meta = json.loads((model_dir / "meta.json").read_text())
    assert len(X) > 1000
    preds = {}
    for name in ["model.json", "model.ubj"]:
        booster = xgb.Booster()
        booster.load_model(str(model_dir / name))
        preds[name] = booster.predict(xgb.DMatrix(X, missing=np.nan, feature_names=None))
    np.testing.assert_array_equal(preds["model.json"], preds["model.ubj"])
    # Exactly the numbers RPS's engine computes from the same file.
    rust = rust_predict(model_dir / "model.json", X, tmp_path)
    np.testing.assert_array_equal(preds["model.json"], rust)
    # And the volatility forecasts evaluate reported come from those raw outputs, through the
    # documented mapping in meta.json (README "Model quality").
    vol = volatility_from_raw(meta, schema["features"], X, preds["model.json"])
    reported = np.genfromtxt(pipeline / ".rps/reports/predictions.csv", delimiter=",", names=True, dtype=None, encoding="utf-8")["model"]
    np.testing.assert_allclose(vol, reported, rtol=1e-6, atol=1e-8)
    # base_score is explicit, so both sides agree on it.
    cfg = json.loads(booster.save_config())
    assert math.isclose(float(cfg["learner"]["learner_model_param"]["base_score"].strip("[]")), meta["base_score"], rel_tol=1e-6)


def test_python_xgboost_loads_the_quantile_booster_and_predicts_the_same(pipeline, tmp_path):
    """#16: the distribution's booster (`quantiles.json` / `.ubj`, reg:quantileerror with one
    output per level) loads in Python's xgboost and predicts, for every test row, the raw outputs
    RPS's engine computes (sorted per row, as the engine returns them); through meta.json's documented mapping (exp(raw + L + correction),
    sorted, floored) they give monotone quantiles whose 0.5 level is inside [q0.05, q0.95]."""
    schema, X, _ = load_test_split(pipeline)
    model_dir = pipeline / ".rps/models/candidate"
    meta = json.loads((model_dir / "meta.json").read_text())
    q = meta["quantiles"]
    assert q["levels"] == [0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95]
    preds = {}
    for name in ["quantiles.json", "quantiles.ubj"]:
        booster = xgb.Booster()
        booster.load_model(str(model_dir / name))
        preds[name] = booster.predict(xgb.DMatrix(X, missing=np.nan))
    np.testing.assert_array_equal(preds["quantiles.json"], preds["quantiles.ubj"])
    raw = preds["quantiles.json"]
    assert raw.shape == (len(X), len(q["levels"]))
    rust = rust_predict(model_dir / "quantiles.ubj", X, tmp_path)
    # The engine returns each row's quantile outputs sorted ascending (a non-crossing
    # rearrangement); XGBoost sums the trees as they are. Equal once Python's are sorted, and
    # Python's unsorted rows differ only where the trees cross (a permutation of the same values).
    raw = np.sort(raw, axis=1)
    np.testing.assert_array_equal(raw.reshape(-1), rust)
    margin = np.zeros(len(X))
    m = meta["margin"]
    margin += m["coefficients"][0]
    for term, b, mean in zip(m["terms"], m["coefficients"][1:], m["means"]):
        col = X[:, schema["features"].index(term)].astype(np.float64)
        margin += b * np.where(np.isfinite(col), col, mean)
    sigma = np.sort(np.exp(raw.astype(np.float64) + margin[:, None] + np.array(q["corrections"])[None, :]), axis=1)
    sigma = np.maximum(sigma, meta["floor"])
    assert np.all(np.diff(sigma, axis=1) >= 0)
    assert np.all((sigma[:, 3] >= sigma[:, 0]) & (sigma[:, 3] <= sigma[:, 6]))


def test_rps_engine_predicts_python_xgboost_models_identically(tmp_path):
    rng = np.random.default_rng(7)
    X = rng.normal(size=(3000, 8)).astype(np.float32)
    X[rng.random(X.shape) < 0.05] = np.nan
    y = (np.nan_to_num(X[:, 0]) * 2 + np.sin(np.nan_to_num(X[:, 1])) + 0.1 * rng.normal(size=3000)).astype(np.float32)
    for objective in ["reg:squarederror", "reg:gamma"]:
        label = y if objective == "reg:squarederror" else np.exp(y / 3)
        booster = xgb.train(
            {"objective": objective, "tree_method": "hist", "max_depth": 5, "eta": 0.1, "subsample": 0.8, "seed": 3, "base_score": float(np.mean(label))},
            xgb.DMatrix(X, label=label, missing=np.nan),
            num_boost_round=120,
        )
        expected = booster.predict(xgb.DMatrix(X[:500], missing=np.nan))
        for ext in ["json", "ubj"]:
            path = tmp_path / f"py_{objective.replace(':', '_')}.{ext}"
            booster.save_model(str(path))
            np.testing.assert_allclose(rust_predict(path, X[:500], tmp_path), expected, rtol=1e-6, atol=1e-7)


def test_python_xgboost_loads_the_signal_model_and_predicts_the_same_probabilities(tmp_path):
    """`train.task: signal`: Python's xgboost loads the multi:softprob model RPS saved (JSON and
    UBJ) and predicts, for every labelled test row, the class probabilities (sell, hold, buy) that
    rps-evaluate wrote to predictions.csv."""
    import datetime
    import shutil

    from rps_testing import ROOT, STAGES, run_stage

    proj = tmp_path / "signal"
    (proj / "data" / "sample").mkdir(parents=True)
    shutil.copy(ROOT / "data/sample/btc_usdt_1h_binance_2020-2021.csv", proj / "data/sample/")
    params = (ROOT / "params.yaml").read_text()
    assert "  task: volatility " in params
    (proj / "params.yaml").write_text(params.replace("  task: volatility ", "  task: signal ", 1))
    for stage in STAGES:
        run_stage(stage, proj)
    model_dir = proj / ".rps/models/candidate"
    meta = json.loads((model_dir / "meta.json").read_text())
    assert meta["task"] == "signal" and meta["signal"]["classes"] == ["sell", "hold", "buy"]
    feats = proj / ".rps/data/features/BTC-USDT"
    schema = json.loads((feats / "schema.json").read_text())
    table = pq.read_table(feats / "features.parquet").to_pydict()
    row_of = {ts.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"): i for i, ts in enumerate(table["ts"])}
    reported = np.genfromtxt(proj / ".rps/reports/predictions.csv", delimiter=",", names=True, dtype=None, encoding="utf-8")
    rows = [row_of[t] for t in reported["ts"]]
    assert len(rows) > 1000 and all(table["split"][i] == "test" for i in rows)
    X = np.array([[np.nan if table[f][i] is None else table[f][i] for f in schema["features"]] for i in rows], dtype=np.float32)
    preds = {}
    for name in ["model.json", "model.ubj"]:
        booster = xgb.Booster()
        booster.load_model(str(model_dir / name))
        preds[name] = booster.predict(xgb.DMatrix(X, missing=np.nan))
    np.testing.assert_array_equal(preds["model.json"], preds["model.ubj"])
    p = preds["model.json"]
    assert p.shape == (len(rows), 3)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=0, atol=1e-5)
    want = np.stack([reported["p_sell"], reported["p_hold"], reported["p_buy"]], axis=1)
    np.testing.assert_allclose(p, want, rtol=0, atol=1e-6)
    classes = np.array(meta["signal"]["classes"])
    assert (classes[p.argmax(axis=1)] == reported["model"]).all()

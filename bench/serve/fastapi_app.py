"""Reference prediction service, written the way the seed design serves the model:
FastAPI + pydantic request model + xgboost.Booster loaded from the registry's model.json,
one DMatrix and one Booster.predict per request, served by uvicorn.

Same request and response shape as rps-serve's canonical form:
  POST /predict {"features": {"ret_1b_pct": 0.1, ...}} -> {"model", "version", "prediction"}

Environment: RPS_REGISTRY (registry folder), RPS_MODEL_NAME (default btc-volatility),
RPS_SERVE_ALIAS (default champion).
"""

import json
import math
import os
from pathlib import Path
from typing import Dict

import numpy as np
import xgboost as xgb
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

REGISTRY = Path(os.environ.get("RPS_REGISTRY", ".rps/registry"))
MODEL_NAME = os.environ.get("RPS_MODEL_NAME", "btc-volatility")
ALIAS = os.environ.get("RPS_SERVE_ALIAS", "champion")


def load():
    aliases = json.loads((REGISTRY / MODEL_NAME / "aliases.json").read_text())
    version = aliases[ALIAS]
    folder = REGISTRY / MODEL_NAME / "versions" / str(version)
    booster = xgb.Booster()
    booster.load_model(str(folder / "model.json"))
    meta = json.loads((folder / "meta.json").read_text())
    return version, booster, meta


VERSION, BOOSTER, META = load()
FEATURES = META["features"]

app = FastAPI(title="btc-volatility (FastAPI reference)")


class PredictRequest(BaseModel):
    features: Dict[str, float]


def to_volatility(raw: float) -> float:
    transform = META["transform"]
    if transform == "log":
        v = math.exp(raw) * META["smearing"]
    elif transform == "variance":
        v = math.sqrt(max(raw, 0.0)) / 100.0
    else:
        v = raw
    return max(v, META["floor"]) if math.isfinite(v) else META["floor"]


@app.get("/health")
def health():
    return {"status": "ok"}


@app.post("/predict")
def predict(req: PredictRequest):
    missing = [f for f in FEATURES if f not in req.features]
    if missing:
        raise HTTPException(status_code=422, detail=f"missing features: {missing}")
    row = np.array([[req.features[f] for f in FEATURES]], dtype=np.float32)
    raw = float(BOOSTER.predict(xgb.DMatrix(row, feature_names=FEATURES))[0])
    return {"model": MODEL_NAME, "version": VERSION, "prediction": to_volatility(raw)}

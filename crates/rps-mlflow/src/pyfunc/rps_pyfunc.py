"""RPS's MLflow pyfunc loader: what `mlflow.pyfunc.load_model(...)` returns for an RPS model.

It is shipped inside every model directory RPS logs (`code/rps_pyfunc.py`, named by the
`python_function` flavor's `loader_module`), so loading needs nothing from RPS but this file,
`model.json` (the booster, XGBoost's JSON format) and `meta.json` (how a raw booster output maps
to a forecast). `predict(df)` takes the engineered features by name (a pandas DataFrame with the
schema's columns; extra columns are ignored, a missing one is an error; NaN means missing) and
returns what `rps evaluate`, `rps serve` and `rps stream` answer for the same rows:

- a volatility model (`meta.task` absent or `volatility`): the column `volatility`, the next
  hour's sigma of log returns (the mean, sqrt E[sigma^2]): the booster's raw output mapped back by
  `meta.transform` on top of the linear base margin `meta.margin`, times `meta.smearing`, floored
  at `meta.floor`; and, for a model with a forecast distribution (`meta.quantiles`, the booster
  `quantiles.json` beside `model.json`), `median` and one column per level, `q05` ... `q95`:
  the booster's raw outputs sorted ascending per row (RPS's engine sorts a quantile booster's
  outputs, XGBoost does not), then exp(raw + base margin + the level's correction), floored,
  sorted across levels (no crossing), as `rps serve` answers them;
- a signal model (`meta.task == "signal"`): `signal` (`sell` / `hold` / `buy`, the most probable
  class, ties to the first) and one probability column per class, `p_sell`, `p_hold`, `p_buy`.

The booster itself stays reachable as MLflow's xgboost flavor
(`mlflow.xgboost.load_model(uri)` gives the raw `xgboost.Booster`).
"""

import json
import os

import numpy as np
import pandas as pd
import xgboost as xgb

#: The power and variance transforms learn (100 sigma)^k: returns in percent.
PERCENT = 100.0


def _load_pyfunc(data_path):
    """MLflow's entry point: `data_path` is the model directory's `model.json`."""
    return RpsModel(data_path)


class RpsModel:
    """An RPS model as MLflow's pyfunc: `predict(DataFrame) -> DataFrame`."""

    def __init__(self, model_file):
        folder = os.path.dirname(model_file)
        with open(os.path.join(folder, "meta.json"), encoding="utf-8") as f:
            self.meta = json.load(f)
        self.features = list(self.meta["features"])
        self.booster = xgb.Booster()
        self.booster.load_model(model_file)
        self.task = self.meta.get("task", "volatility")
        self.quantiles = None
        q = self.meta.get("quantiles")
        if q and self.task != "signal":
            path = os.path.join(folder, "quantiles.json")
            if not os.path.exists(path):
                raise FileNotFoundError(
                    f"meta.json describes a forecast distribution but {path} is missing"
                )
            booster = xgb.Booster()
            booster.load_model(path)
            self.quantiles = (booster, [float(l) for l in q["levels"]], np.asarray(q["corrections"], dtype=np.float64))

    def _matrix(self, model_input):
        if isinstance(model_input, pd.DataFrame):
            missing = [c for c in self.features if c not in model_input.columns]
            if missing:
                raise ValueError(
                    f"missing feature column(s) {missing}; the model needs {self.features}"
                )
            frame = model_input[self.features]
        else:
            arr = np.asarray(model_input, dtype=np.float64)
            if arr.ndim != 2 or arr.shape[1] != len(self.features):
                raise ValueError(
                    f"expected a 2-D input with {len(self.features)} columns in the order "
                    f"{self.features}, got shape {arr.shape}"
                )
            frame = pd.DataFrame(arr, columns=self.features)
        # The engine reads features as float32, as XGBoost does; NaN is missing.
        return frame.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float32, na_value=np.nan)

    def _margin(self, x):
        """The linear base margin L(x) on log volatility (0 without one)."""
        m = self.meta.get("margin")
        if not m:
            return np.zeros(x.shape[0])
        idx = [self.features.index(t) for t in m["terms"]]
        coef = m["coefficients"]
        z = np.full(x.shape[0], float(coef[0]))
        for j, b, mean in zip(idx, coef[1:], m["means"]):
            v = x[:, j].astype(np.float64)
            z = z + b * np.where(np.isfinite(v), v, mean)
        return z

    def _volatility(self, raw, x):
        meta = self.meta
        transform = meta["transform"]
        if transform == "variance":
            k = 2.0
        elif transform == "power":
            k = meta.get("power") or 1.0
        else:
            k = None
        margin = self._margin(x)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            if k is not None:
                v = np.power(np.maximum(raw, 0.0), 1.0 / k) / PERCENT * np.exp(margin)
            elif transform == "log":
                v = np.exp(raw + margin)
            else:
                v = raw
            v = v * meta["smearing"]
        floor = meta["floor"]
        return np.where(np.isfinite(v), np.maximum(v, floor), floor)

    def predict(self, model_input, params=None):
        x = self._matrix(model_input)
        out = self.booster.predict(xgb.DMatrix(x, missing=np.nan))
        index = model_input.index if isinstance(model_input, pd.DataFrame) else None
        if self.task == "signal":
            classes = (self.meta.get("signal") or {}).get("classes") or ["sell", "hold", "buy"]
            p = np.asarray(out, dtype=np.float64).reshape(len(x), len(classes))
            result = pd.DataFrame({"signal": [classes[i] for i in np.argmax(p, axis=1)]}, index=index)
            for i, c in enumerate(classes):
                result[f"p_{c}"] = p[:, i]
            return result
        raw = np.asarray(out, dtype=np.float32).astype(np.float64)
        result = pd.DataFrame({"volatility": self._volatility(raw, x)}, index=index)
        if self.quantiles is not None:
            levels = self.quantiles[1]
            q = self._distribution(x)
            if 0.5 in levels:
                result["median"] = q[:, levels.index(0.5)]
            for j, level in enumerate(levels):
                result[level_column(level)] = q[:, j]
        return result

    def _distribution(self, x):
        """The sigma quantiles, one row per input and one column per level."""
        booster, levels, corrections = self.quantiles
        raw = np.asarray(booster.predict(xgb.DMatrix(x, missing=np.nan)), dtype=np.float32)
        # RPS's engine (hessboost) returns each row's quantile outputs sorted ascending; XGBoost
        # returns them as the trees sum them. Sort first, so the corrections apply as in RPS.
        raw = np.sort(raw.astype(np.float64).reshape(x.shape[0], len(levels)), axis=1)
        with np.errstate(over="ignore", invalid="ignore"):
            v = np.exp(raw + self._margin(x)[:, None] + corrections[None, :])
        floor = self.meta["floor"]
        v = np.where(np.isfinite(v), np.maximum(v, floor), floor)
        return np.sort(v, axis=1)


def level_column(level):
    """A level's column name, as RPS names it everywhere: 0.05 -> q05, 0.1 -> q10, 0.975 -> q975."""
    digits = repr(float(level)).split(".", 1)[1]
    return f"q{digits}0" if len(digits) == 1 else f"q{digits}"


__all__ = ["RpsModel", "_load_pyfunc", "level_column", "PERCENT"]

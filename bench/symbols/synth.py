"""Synthetic hourly candles for `make bench-symbols`, calibrated to the bundled BTC sample.

Usage: python synth.py SAMPLE_CSV OUT_DIR N [--seed S] [--start 2020-01-01] [--hours H]

Writes OUT_DIR/SYN01-USD.csv .. SYN<N>-USD.csv in the sample's layout (Binance klines: date, open,
high, low, close, volume, close_time, quote_asset_volume, number_of_trades,
taker_buy_base_asset_volume, taker_buy_quote_asset_volume), so the shipped params.yaml's
data.file.columns read them unchanged and features.flow: auto builds the order-flow features, as
for BTC. Prints the fitted parameters as one JSON line.

The model is a multi-factor log-normal stochastic-volatility model fitted to the log range, the
approach of Alizadeh, Brandt & Diebold (2002, "Range-based estimation of stochastic volatility
models", J. Finance 57(3)), who found that one factor cannot match the persistence of log-range
volatility and two can. Each part is fitted to SAMPLE_CSV (by default the 17,514 Binance BTCUSDT
hours of 2020-2021):

* Volatility: ln sigma_t = mu + s_{hour(t)} + sum_i x_i(t), where the x_i are independent
  Gaussian AR(1) factors. Their weights and persistences are fitted by least squares to the
  autocorrelations of the sample's hour-of-day-adjusted log range (ln ln(high/low)) at 26 lags
  from 1 to 720 hours: corr(k) = sum_i w_i phi_i^k, with w_i the share of each factor in the log
  range's variance (the remainder is the range's own sampling noise). FACTORS = 3 here: the third
  (a half-life of about 20 days) is what matches the autocorrelation still at 0.18 after 30 days.
  s_h is the sample's mean log range by hour of day (UTC) less the overall mean, and mu matches
  the sample's mean log range (the mean level).
* Inside a bar: the log price is a Gaussian random walk of 60 one-minute steps with standard
  deviation sigma_t / sqrt(60) each; open_t = close_{t-1}, high and low are the path's extremes.
  So returns are conditionally normal, and the tails come from the volatility mixture only: the
  sample's rare jumps (6 returns beyond 20 robust sigmas) are not reproduced.
* Volume, trade count and taker-buy share: each is a linear regression on a bar quantity plus an
  AR(1) Gaussian residual, fitted by OLS on the sample: ln volume on ln(high/low); ln trades on
  ln volume; the taker-buy share of volume on the close location (close - open) / (high - low)
  (clipped to [0.01, 0.99]). Quote volumes are the base volumes times (high + low + close) / 3.

Every symbol uses the same fitted parameters with its own seed (S + i) and start price
(log-spaced from 0.5 to 5,000; base-asset volumes scaled by the sample's mean close / start price,
so quote volumes are comparable). Same arguments, same files. Needs numpy only.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

STEPS = 60  # one-minute steps inside an hourly bar
FACTORS = 3  # AR(1) factors of log volatility
LAGS = np.unique(np.geomspace(1, 720, 30).astype(int))  # 26 lags, 1 hour .. 30 days
HEADER = [
    "date", "open", "high", "low", "close", "volume", "close_time", "quote_asset_volume",
    "number_of_trades", "taker_buy_base_asset_volume", "taker_buy_quote_asset_volume",
]


def read_sample(path: Path) -> dict[str, np.ndarray]:
    cols: dict[str, list[float]] = {k: [] for k in ("hour", "open", "high", "low", "close", "volume", "trades", "buy")}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            cols["hour"].append(float(row["date"][11:13]))
            cols["open"].append(float(row["open"]))
            cols["high"].append(float(row["high"]))
            cols["low"].append(float(row["low"]))
            cols["close"].append(float(row["close"]))
            cols["volume"].append(float(row["volume"]))
            cols["trades"].append(float(row["number_of_trades"]))
            cols["buy"].append(float(row["taker_buy_base_asset_volume"]))
    return {k: np.asarray(v) for k, v in cols.items()}


def nelder_mead(f, x0: np.ndarray, step: np.ndarray, iters: int = 4000, tol: float = 1e-12) -> np.ndarray:
    """The textbook Nelder-Mead simplex (reflection 1, expansion 2, contraction 1/2, shrink 1/2)."""
    pts = [x0] + [x0 + np.eye(len(x0))[i] * step[i] for i in range(len(x0))]
    vals = [f(p) for p in pts]
    for _ in range(iters):
        order = np.argsort(vals)
        pts, vals = [pts[i] for i in order], [vals[i] for i in order]
        if abs(vals[-1] - vals[0]) <= tol * (abs(vals[0]) + tol):
            break
        centroid = np.mean(pts[:-1], axis=0)
        xr = centroid + (centroid - pts[-1])
        fr = f(xr)
        if fr < vals[0]:
            xe = centroid + 2 * (centroid - pts[-1])
            fe = f(xe)
            pts[-1], vals[-1] = (xe, fe) if fe < fr else (xr, fr)
        elif fr < vals[-2]:
            pts[-1], vals[-1] = xr, fr
        else:
            xc = centroid + 0.5 * (pts[-1] - centroid)
            fc = f(xc)
            if fc < vals[-1]:
                pts[-1], vals[-1] = xc, fc
            else:
                pts = [pts[0]] + [pts[0] + 0.5 * (p - pts[0]) for p in pts[1:]]
                vals = [vals[0]] + [f(p) for p in pts[1:]]
    return pts[int(np.argmin(vals))]


def ols_ar1(y: np.ndarray, x: np.ndarray) -> dict[str, float]:
    """y = a + b x + u, u_t = phi u_{t-1} + eta_t, eta ~ N(0, s^2): OLS, then the residual's AR(1)."""
    b, a = np.polyfit(x, y, 1)
    u = y - (a + b * x)
    phi = float(np.corrcoef(u[1:], u[:-1])[0, 1])
    s = float(np.std(u[1:] - phi * u[:-1]))
    return {"a": float(a), "b": float(b), "phi": phi, "s": s}


def ar1(rng: np.random.Generator, n: int, phi: float, s: float) -> np.ndarray:
    """A stationary Gaussian AR(1) path with innovation standard deviation s."""
    eta = rng.standard_normal(n) * s
    u = np.empty(n)
    prev = rng.standard_normal() * s / math.sqrt(max(1e-12, 1 - phi * phi))
    for i, e in enumerate(eta.tolist()):
        prev = phi * prev + e
        u[i] = prev
    return u


def _sigmoid(u: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-u))


def calibrate(sample: dict[str, np.ndarray]) -> dict[str, object]:
    # Bars with a zero range or volume (the sample has a few, from exchange outages) are left out
    # of everything that takes their logarithm.
    ok = (sample["high"] > sample["low"]) & (sample["volume"] > 0) & (sample["trades"] > 0)
    hl = sample["high"][ok] / sample["low"][ok]
    x, hour = np.log(np.log(hl)), sample["hour"][ok].astype(int)
    profile = np.array([x[hour == h].mean() for h in range(24)]) - x.mean()
    d = x - profile[hour]
    d = d - d.mean()
    rho = np.array([np.corrcoef(d[k:], d[:-k])[0, 1] for k in LAGS])
    var = float(d.var())
    # The log range of a bar = ln sigma_t + the log range of a unit-variance 60-step walk, whose
    # variance is known (by simulation, fixed seed): the factors share the rest of the variance.
    # Its mean gives mu, the log volatility whose mean log range is the sample's.
    walk = np.cumsum(np.random.default_rng(0).standard_normal((50_000, STEPS)) / math.sqrt(STEPS), axis=1)
    ln_unit_range = np.log(np.maximum(walk.max(axis=1), 0) - np.minimum(walk.min(axis=1), 0))
    latent = 1 - float(ln_unit_range.var()) / var

    def fitted(th: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        e = np.exp(th[:FACTORS] - th[:FACTORS].max())
        w, phi = latent * e / e.sum(), _sigmoid(th[FACTORS:])
        return sum(w[i] * phi[i] ** LAGS for i in range(FACTORS)), w, phi

    def loss(th: np.ndarray) -> float:
        return float(((rho - fitted(th)[0]) ** 2).sum())

    th = nelder_mead(loss, np.array([0.0] * FACTORS + list(np.linspace(1, 6, FACTORS))), np.ones(2 * FACTORS))
    _, w, phi = fitted(th)
    order = np.argsort(phi)
    w, phi = w[order], phi[order]
    loc = (sample["close"][ok] - sample["open"][ok]) / (sample["high"][ok] - sample["low"][ok])
    return {
        "volatility": {
            "mu": float(x.mean() - ln_unit_range.mean()),
            "hour_profile": [round(float(v), 4) for v in profile],
            "weights": [float(v) for v in w],
            "phi": [float(v) for v in phi],
            "half_life_hours": [float(math.log(0.5) / math.log(v)) for v in phi],
            "log_range_var": var,
            "acf_rmse": math.sqrt(loss(th) / len(LAGS)),
            "walk_share": 1 - latent,
        },
        "volume_on_log_range": ols_ar1(np.log(sample["volume"][ok]), np.log(np.log(hl))),
        "log_trades_on_log_volume": ols_ar1(np.log(sample["trades"][ok]), np.log(sample["volume"][ok])),
        "taker_buy_share_on_close_location": ols_ar1(sample["buy"][ok] / sample["volume"][ok], loc),
        "mean_close": float(sample["close"].mean()),
        "sample_hours": int(sample["close"].size),
    }


def simulate(cal: dict, seed: int, start_price: float, n: int, first_hour: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    v = cal["volatility"]
    log_sigma = v["mu"] + np.asarray(v["hour_profile"])[(first_hour + np.arange(n)) % 24]
    for w, phi in zip(v["weights"], v["phi"]):
        log_sigma += ar1(rng, n, phi, math.sqrt(w * v["log_range_var"] * (1 - phi * phi)))
    sigma = np.exp(log_sigma)
    path = np.cumsum(rng.standard_normal((n, STEPS)) * (sigma / math.sqrt(STEPS))[:, None], axis=1)
    closes = start_price * np.exp(np.cumsum(path[:, -1]))  # ln(price / open) along each bar
    opens = np.concatenate([[start_price], closes[:-1]])
    high = opens * np.exp(np.maximum(path.max(axis=1), 0.0))
    low = opens * np.exp(np.minimum(path.min(axis=1), 0.0))
    vc, tc = cal["volume_on_log_range"], cal["log_trades_on_log_volume"]
    bc = cal["taker_buy_share_on_close_location"]
    log_range = np.log(np.log(np.maximum(high / low, 1 + 1e-12)))
    log_vol_btc = vc["a"] + vc["b"] * log_range + ar1(rng, n, vc["phi"], vc["s"])
    trades = np.maximum(1, np.rint(np.exp(tc["a"] + tc["b"] * log_vol_btc + ar1(rng, n, tc["phi"], tc["s"]))))
    loc = (closes - opens) / np.maximum(high - low, 1e-300)
    share = np.clip(bc["a"] + bc["b"] * loc + ar1(rng, n, bc["phi"], bc["s"]), 0.01, 0.99)
    volume = np.exp(log_vol_btc) * cal["mean_close"] / start_price
    return {"open": opens, "high": high, "low": low, "close": closes, "volume": volume,
            "trades": trades, "buy": volume * share}


def write_csv(path: Path, bars: dict[str, np.ndarray], start: datetime) -> None:
    typical = (bars["high"] + bars["low"] + bars["close"]) / 3
    with path.open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(HEADER)
        for i in range(bars["close"].size):
            t = start + timedelta(hours=i)
            w.writerow([
                t.strftime("%Y-%m-%d %H:%M:%S"),
                f"{bars['open'][i]:.8g}", f"{bars['high'][i]:.8g}", f"{bars['low'][i]:.8g}",
                f"{bars['close'][i]:.8g}", f"{bars['volume'][i]:.8g}",
                (t + timedelta(minutes=59, seconds=59)).strftime("%Y-%m-%d %H:%M:%S"),
                f"{bars['volume'][i] * typical[i]:.10g}", int(bars["trades"][i]),
                f"{bars['buy'][i]:.8g}", f"{bars['buy'][i] * typical[i]:.10g}",
            ])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("sample", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("n", type=int)
    ap.add_argument("--seed", type=int, default=2020)
    ap.add_argument("--start", default="2020-01-01")
    ap.add_argument("--hours", type=int, default=17544, help="bars per symbol (17,544 = 2020-2021)")
    args = ap.parse_args()
    cal = calibrate(read_sample(args.sample))
    args.out.mkdir(parents=True, exist_ok=True)
    start = datetime.fromisoformat(args.start).replace(tzinfo=timezone.utc)
    prices = np.geomspace(0.5, 5000.0, args.n) if args.n > 1 else np.array([100.0])
    for i in range(args.n):
        bars = simulate(cal, args.seed + i, float(prices[i]), args.hours, start.hour)
        write_csv(args.out / f"SYN{i + 1:02d}-USD.csv", bars, start)
    print(json.dumps(cal, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())

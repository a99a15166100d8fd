#!/usr/bin/env python3
"""The pandas peer of `rps transform` (issue #17), measured as a whole process by run.sh.

The same work on the same input: read the raw dataset's Parquet partitions (the ones
`rps extract` writes, listed in `_manifest.json`), resample the one-minute candles to hours
(OHLCV, and realized variance, the two semivariances and bipower variation from the minute log
returns — the first return of an hour taken from the previous hour's close when that hour
exists), lay the hours on a regular grid, build the hourly features of
`rps_core::features::build` with the default `features:` knobs, the next-hour target, the
chronological split with a purge gap and reference statistics of the training rows, and write one
zstd Parquet file.

Usage: peer.py RAW_DATASET_DIR OUT.parquet
It is written the way a data scientist would write it with pandas + numpy (vectorised, no
Python loops over rows); it is not tuned to be slow or fast.
"""

import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

FLOOR = 1e-4
RETURN_WINDOWS = [1, 4, 24]
HAR_WINDOWS = [1, 4, 24, 168]
LONG = 24
SEASONAL_DAYS = 28
EWMA_LAMBDAS = [0.8, 0.9, 0.97]
HORIZON = 1
TRAIN, VALIDATION, GAP = 0.7, 0.15, 24


def half(k):
    return (k + 1) // 2


def read_minutes(root: Path) -> pd.DataFrame:
    manifest = json.loads((root / "_manifest.json").read_text())
    tables = [
        pq.read_table(root / p["key"], columns=["ts", "open", "high", "low", "close", "volume"])
        for p in manifest["partitions"]
    ]
    df = pa.concat_tables(tables).to_pandas()
    return df.sort_values("ts").drop_duplicates("ts", keep="last").set_index("ts")


def hourly(m: pd.DataFrame) -> pd.DataFrame:
    hour = m.index.floor("h")
    close = m["close"].to_numpy()
    prev = np.concatenate([[np.nan], close[:-1]])
    step = np.diff(hour.asi8, prepend=hour.asi8[0] - 1)
    hour_ns = 3_600_000_000_000
    # Within an hour every sub-bar return counts; across hours only from the adjacent hour.
    keep = (step == 0) | (step == hour_ns)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(keep & (prev > 0) & (close > 0), np.log(close / prev), np.nan)
    r[~np.isfinite(r)] = np.nan
    r_prev = np.concatenate([[np.nan], r[:-1]])
    same = np.concatenate([[False], hour.asi8[1:] == hour.asi8[:-1]])
    frame = pd.DataFrame(
        {
            "open": m["open"].to_numpy(),
            "high": m["high"].to_numpy(),
            "low": m["low"].to_numpy(),
            "close": close,
            "volume": m["volume"].to_numpy(),
            "r2": r * r,
            "r2_neg": np.where(r < 0, r * r, 0.0),
            "r2_pos": np.where(r > 0, r * r, 0.0),
            "bpv": np.where(same, np.abs(r) * np.abs(r_prev), np.nan),
            "n": np.isfinite(r).astype(np.int64),
        },
        index=hour,
    )
    g = frame.groupby(level=0, sort=True)
    h = g.agg(
        open=("open", "first"),
        high=("high", "max"),
        low=("low", "min"),
        close=("close", "last"),
        volume=("volume", "sum"),
        rv=("r2", "sum"),
        rs_neg=("r2_neg", "sum"),
        rs_pos=("r2_pos", "sum"),
        bpv=("bpv", "sum"),
        n=("n", "sum"),
    )
    h["bpv"] *= math.pi / 2
    h["bar_vol"] = np.where(h["n"] > 0, np.sqrt(h["rv"]), np.nan)
    grid = pd.date_range(h.index[0], h.index[-1], freq="h")
    return h.reindex(grid)


def features(h: pd.DataFrame) -> pd.DataFrame:
    close, high, low, volume = h["close"], h["high"], h["low"], h["volume"]
    floored = h["bar_vol"].clip(lower=FLOOR)
    var = floored**2
    with np.errstate(divide="ignore", invalid="ignore"):
        ret = np.log(close / close.shift(1))
    log_vol = np.log1p(volume.where(volume >= 0))
    f = pd.DataFrame(index=h.index)

    def mean(x, k):
        return x.rolling(k, min_periods=half(k)).mean()

    for k in RETURN_WINDOWS:
        f[f"ret_{k}b_pct"] = (close / close.shift(k) - 1) * 100
    f[f"momentum_{LONG}b"] = close / mean(close, LONG) - 1
    f[f"logret_std_{LONG}b"] = ret.rolling(LONG, min_periods=max(2, half(LONG))).std()
    f["hl_range_pct"] = (high - low) / close * 100
    f["log_volume"] = log_vol
    f[f"log_volume_ma_{LONG}b"] = mean(log_vol, LONG)
    f["volume_change"] = log_vol.diff()
    f[f"volume_surprise_{LONG}b"] = log_vol - f[f"log_volume_ma_{LONG}b"]
    har = {k: 0.5 * np.log(mean(var, k)) for k in HAR_WINDOWS}
    for k in HAR_WINDOWS:
        f[f"har_{k}b"] = har[k]
    f[f"neg_ret_sq_{LONG}b"] = mean(ret.clip(upper=0) ** 2, LONG) * LONG
    f["jump_1b"] = np.sqrt((ret**2 - var).clip(lower=0))
    lagged = pd.concat([var.shift(24 * d) for d in range(1, SEASONAL_DAYS + 1)], axis=1)
    seasonal = lagged.mean(axis=1).where(lagged.count(axis=1) >= half(SEASONAL_DAYS))
    f["seasonal_vol"] = 0.5 * np.log(seasonal)
    hour = h.index.hour.to_numpy()
    f["hour_sin"] = np.sin(2 * np.pi * hour / 24)
    f["hour_cos"] = np.cos(2 * np.pi * hour / 24)
    dow = h.index.dayofweek.to_numpy()
    f["day_of_week"] = dow.astype(float)
    f["is_weekend"] = (dow >= 5).astype(float)
    for lam in EWMA_LAMBDAS:
        ewm = var.ewm(alpha=1 - lam, adjust=False, ignore_na=True).mean()
        f[f"ewma_vol_{round(lam * 100):03d}"] = 0.5 * np.log(ewm)
    f[f"max_vol_{LONG}b"] = np.log(floored.rolling(LONG, min_periods=half(LONG)).max())
    f[f"stale_{LONG}b"] = (floored <= FLOOR).astype(float).rolling(LONG).sum()
    longest = max(HAR_WINDOWS)
    for k in HAR_WINDOWS:
        if k != longest:
            f[f"har_{k}b_rel"] = har[k] - har[longest]
    f["seasonal_vol_rel"] = f["seasonal_vol"] - har[longest]
    f = f.replace([np.inf, -np.inf], np.nan)
    f["bar_vol"] = floored
    f["target"] = np.sqrt(var.shift(-1).rolling(HORIZON).mean().shift(-(HORIZON - 1)))
    # The realized decomposition rides along, as the peer in issue #17 computed it.
    for c in ["rs_neg", "rs_pos", "bpv"]:
        f[c] = h[c]
    f["present"] = h["close"].notna()
    return f


def split(f: pd.DataFrame) -> pd.Series:
    har = f[[f"har_{k}b" for k in HAR_WINDOWS]]
    usable = f["present"] & f["target"].notna() & har.notna().all(axis=1)
    pos = np.flatnonzero(usable.to_numpy())
    n = len(pos)
    a, b = int(n * TRAIN), int(n * (TRAIN + VALIDATION))
    s = np.full(len(f), "unused", dtype=object)
    s[pos[: max(a - GAP, 0)]] = "train"
    s[pos[a : max(b - GAP, a)]] = "validation"
    s[pos[b:]] = "test"
    return pd.Series(s, index=f.index)


def main():
    root, out = Path(sys.argv[1]), sys.argv[2]
    h = hourly(read_minutes(root))
    f = features(h)
    f["split"] = split(f)
    f = f[f["present"]].drop(columns="present")
    train = f[f["split"] == "train"]
    reference = {}
    for c in f.columns.drop("split"):
        v = train[c].dropna().to_numpy()
        counts, edges = np.histogram(v, bins=20) if len(v) else ([], [])
        reference[c] = {
            "count": len(v),
            "mean": float(v.mean()) if len(v) else None,
            "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
            "deciles": np.quantile(v, np.arange(1, 10) / 10).tolist() if len(v) else [],
            "histogram": list(map(int, counts)),
        }
    table = pa.Table.from_pandas(f.rename_axis("ts").reset_index(), preserve_index=False)
    pq.write_table(table, out, compression="zstd", compression_level=3)
    Path(out).with_suffix(".schema.json").write_text(json.dumps(reference))
    print(f"peer: {len(f)} hourly rows, {len(f.columns) - 1} columns", file=sys.stderr)


if __name__ == "__main__":
    main()

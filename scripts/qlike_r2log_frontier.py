"""Diagnosis, not tuning: how far a forecaster is from the #9 acceptance rule on a finished
walk-forward (reports/walkforward.csv), along its own QLIKE / R²(log) trade-off.

Scaling a volatility forecast by exp(s) trades R² on log volatility (best near s = 0 for a
log-accurate forecast) for QLIKE (best at the conditional mean of σ², a larger forecast). This
prints, for each forecaster, its QLIKE / R²(log) as is and at its QLIKE-optimal scale, and for the
model the best R²(log) left at a scale that reaches the QLIKE target (5 % below EWMA) —
an oracle on the test rows, so it bounds what any calibration could do; it is never used to pick
parameters. Usage: python scripts/qlike_r2log_frontier.py .rps/model-quality/btc/reports/walkforward.csv
"""
import sys

import numpy as np

d = np.genfromtxt(sys.argv[1], delimiter=",", names=True, dtype=None, encoding="utf-8")
y = d["realized"]


def qlike(h):
    x = (y / h) ** 2
    return float(np.mean(x - np.log(x) - 1))


def r2_log(h):
    ly = np.log(y)
    return float(1 - np.sum((ly - np.log(h)) ** 2) / np.sum((ly - ly.mean()) ** 2))


target_q = 0.95 * qlike(d["ewma"])
# HAR-RV's R² (log) bar: the better of its level forecast and its log-scale one (har_rv_log,
# written by rps-evaluate since the rule compares against both).
har_r2 = max(r2_log(d[n]) for n in ("har_rv", "har_rv_log") if n in d.dtype.names)
print(f"{sys.argv[1]}: QLIKE target {target_q:.4f} (5 % below EWMA), R²(log) target {har_r2:.4f} (HAR-RV's best)")
for name in ["model", "har_rv", "ewma"]:
    scales = np.linspace(-0.6, 0.6, 241)
    qs = [qlike(d[name] * np.exp(s)) for s in scales]
    s = scales[int(np.argmin(qs))]
    print(f"  {name:7s} as is {qlike(d[name]):.4f} / {r2_log(d[name]):.4f};"
          f" QLIKE-optimal scale exp({s:+.2f}): {min(qs):.4f} / {r2_log(d[name] * np.exp(s)):.4f}")
# The best R²(log) the model can have while meeting the QLIKE target, over scales in both
# directions (scaling down helps R²(log) when the forecast sits above the conditional log mean).
ok = [(r2_log(d["model"] * np.exp(s)), s) for s in np.linspace(-0.6, 0.6, 1201)
      if qlike(d["model"] * np.exp(s)) <= target_q]
if ok:
    r2, s = max(ok)
    print(f"  model at exp({s:+.3f}), the best scale meeting the QLIKE target: R²(log) {r2:.4f}"
          f" ({r2 - har_r2:+.4f} vs HAR-RV)")
else:
    print("  no scale of the model meets the QLIKE target")

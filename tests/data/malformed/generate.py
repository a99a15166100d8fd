#!/usr/bin/env python3
"""Regenerate the malformed-input corpus from the bundled sample (python3, no dependencies).

Each file is a slice of data/sample/btc_usd_1h_coinbase_2018.csv (real Coinbase hours from
2018-01-01T00:00Z) with one defect injected; README.md lists what each must trigger.
"""
import csv
import os

HERE = os.path.dirname(os.path.abspath(__file__))
SAMPLE = os.path.join(HERE, "../../../data/sample/btc_usd_1h_coinbase_2018.csv")
COLS = ["timestamp_utc", "open", "high", "low", "close", "volume_btc"]


def rows(n):
    with open(SAMPLE) as f:
        r = list(csv.DictReader(f))[:n]
    return [[d[c] for c in COLS] for d in r]


def write(name, data):
    with open(os.path.join(HERE, name), "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(COLS)
        w.writerows(data)


def scale(row, k):
    return [row[0]] + [repr(float(v) * k) for v in row[1:5]] + [row[5]]


d = rows(120)
d[50][2] = "inf"  # 2018-01-03T02:00:00Z high
write("inf_high.csv", d)

d = rows(120)
d[60] = scale(d[60], 100)  # 2018-01-03T12:00:00Z
write("spike_x100.csv", d)

d = rows(120)
d[61] = scale(d[61], 10)  # 2018-01-03T13:00:00Z
write("spike_x10.csv", d)

d = rows(120)
d[70][2] = repr(float(d[70][2]) * 10)  # 2018-01-03T22:00:00Z: the high alone
write("wick_high_x10.csv", d)

d = rows(300)
for i in range(50, 250):  # 2018-01-03T02:00:00Z .. 2018-01-11T09:00:00Z
    d[i] = [d[i][0]] + d[50][1:5] + ["0"]
write("frozen_200h.csv", d)

d = rows(120)
dup = list(d[70])  # 2018-01-03T22:00:00Z, file lines 72 and 73
dup[4] = repr(float(dup[4]) * 1.01)
d.insert(71, dup)
write("conflicting_duplicates.csv", d)

d = rows(120)
d.insert(71, list(d[70]))  # an exact copy: collapsed and counted, the gate passes
write("identical_duplicates.csv", d)

d = rows(120)
for i in range(60, 120):  # labelled +02:00 from line 62 on, the clock not shifted
    d[i][0] = d[i][0].replace("Z", "+02:00")
write("mixed_offsets.csv", d)

d = rows(120)
d[80][2] = "1e308"  # 2018-01-04T08:00:00Z
d[80][4] = "1e308"
write("price_1e308.csv", d)

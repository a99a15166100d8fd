//! `make bench`: figures, not pass/fail. Run in release mode on an otherwise idle machine.
//!
//! 1. Transform throughput: 5 years of synthetic 1-minute bars (≈ 2.6 M rows) resampled to
//!    hourly bars with realized volatility, features, target and split — input rows per second.
//! 2. Train wall time: the default model (params.yaml defaults) on the resulting hourly rows.
//! 3. Single-row predict latency: the serving path (`predict_one`), p50 / p99 / mean in µs.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::cast_precision_loss)]

use rps_core::Interval;
use rps_core::features;
use rps_core::grid::GridBuilder;
use rps_core::params::Params;
use rps_core::split::{self, Split};
use rps_model::{Rows, VolatilityModel};
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let mut params = Params::default();
    params.data.interval = Interval::M1;
    params.data.bar = Interval::H1;
    params.data.symbol = "SYN".to_owned();
    params.target.estimator = rps_core::volatility::Estimator::Realized;
    params.data.synthetic.steps_per_bar = 1;
    let years = 5;
    let end = i64::from(years) * 365 * 86_400_000;
    let t = Instant::now();
    let bars = rps_core::synthetic::simulate(&params.data.synthetic, Interval::M1, 0, end);
    let sim = t.elapsed();
    println!(
        "simulate      {:>10} one-minute bars in {:>8.2} s",
        bars.len(),
        sim.as_secs_f64()
    );

    // The transform's pure core (what `rps transform` runs between reading the raw dataset and
    // writing the file): the bar grid streamed from the candles, the features and target, the
    // chronological split.
    let t = Instant::now();
    let d = &params.data;
    let mut grid = GridBuilder::new(d.interval, d.bar, params.target.estimator);
    for c in &bars {
        grid.push(c).unwrap();
    }
    let (ts, grid, vol) = grid.finish();
    let bars_per_day = usize::try_from(86_400_000 / d.bar.ms()).unwrap_or(1);
    let f = features::build(
        &ts,
        &grid,
        &vol,
        &params.features,
        &params.target,
        bars_per_day,
    );
    let split = split::assign(&f.usable(), &params.split, params.target.horizon).unwrap();
    let tr = t.elapsed().as_secs_f64();
    println!(
        "transform     {:>10} rows in {:>8.2} s  = {:>12.0} input rows/s  ({} hourly rows, {} features)",
        bars.len(),
        tr,
        bars.len() as f64 / tr,
        f.present.iter().filter(|&&p| p).count(),
        f.names.len()
    );

    let rows_of = |s: Split| -> Vec<usize> { (0..f.len()).filter(|&i| split[i] == s).collect() };
    let (tri, vai) = (rows_of(Split::Train), rows_of(Split::Validation));
    let y = |idx: &[usize]| idx.iter().map(|&i| f.target[i]).collect::<Vec<f64>>();
    let (xt, yt, xv, yv) = (
        Rows::gather(&f.columns, &tri),
        y(&tri),
        Rows::gather(&f.columns, &vai),
        y(&vai),
    );
    let t = Instant::now();
    let (model, _) = VolatilityModel::train(
        &params.train,
        &f.names,
        params.target.floor,
        (&xt, &yt),
        (&xv, &yv),
    )
    .unwrap();
    println!(
        "train         {:>10} rows in {:>8.2} s  ({} trees, depth {}, hist, early stopping)",
        tri.len(),
        t.elapsed().as_secs_f64(),
        model.meta.num_trees,
        params.train.xgboost["max_depth"]
    );

    let rows: Vec<Vec<f32>> = vai
        .iter()
        .take(1000)
        .map(|&i| f.columns.iter().map(|c| c[i] as f32).collect())
        .collect();
    let mut lat = Vec::with_capacity(100_000);
    let mut sink = 0.0;
    for k in 0..100_000 {
        let row = &rows[k % rows.len()];
        let t = Instant::now();
        sink += model.predict_one(row).unwrap();
        lat.push(t.elapsed().as_nanos() as f64 / 1000.0);
    }
    lat.sort_by(f64::total_cmp);
    let mean = lat.iter().sum::<f64>() / lat.len() as f64;
    println!(
        "predict_one   p50 {:>7.2} µs  p99 {:>7.2} µs  mean {:>7.2} µs  over 100000 single-row calls (checksum {sink:.3})",
        lat[lat.len() / 2],
        lat[lat.len() * 99 / 100],
        mean
    );
    println!(
        "reference     Python xgboost Booster.predict on one row: ≈ 250 µs on this machine class (issue #3's measurement)"
    );
}

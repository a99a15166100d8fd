//! Train a small model on simulated hourly bars and register it as `champion` in a registry
//! folder, and write a sample request (`request.json`) beside it — for trying `rps-serve` and for
//! `bench/serve/run.sh` when no registry is given.
//!
//! `cargo run --release -p rps-serve --example demo_registry -- <registry-dir> [bars] [rounds]`

#![allow(clippy::print_stdout, clippy::print_stderr)]

use rps_core::candle::{Candle, HOUR_MS, Interval};
use rps_core::features::{FeatureParams, TargetParams, build};
use rps_core::params::TrainParams;
use rps_core::schema::FeatureSchema;
use rps_core::split::{Split, SplitParams, assign};
use rps_core::stats::ColumnStats;
use rps_core::synthetic::{SyntheticParams, simulate};
use rps_core::volatility::parkinson;
use rps_model::{Rows, VolatilityModel};
use rps_tracking::{LocalRegistry, ModelFiles, Registry, VersionInfo};
use std::collections::BTreeMap;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(dir) = args.first() else {
        eprintln!("usage: demo_registry <registry-dir> [bars=5000] [rounds=300]");
        return ExitCode::from(2);
    };
    let bars: i64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(5000);
    let rounds: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(300);
    match make(dir, bars, rounds) {
        Ok(v) => {
            println!("registered btc-volatility version {v} as champion in {dir}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn make(dir: &str, n_bars: i64, rounds: usize) -> Result<u32, Box<dyn std::error::Error>> {
    let bars: Vec<Candle> = simulate(
        &SyntheticParams::default(),
        Interval::H1,
        0,
        n_bars * HOUR_MS,
    );
    let ts: Vec<i64> = bars.iter().map(|c| c.ts).collect();
    let vol: Vec<f64> = bars.iter().map(|c| parkinson(c.high, c.low)).collect();
    let grid: Vec<Option<Candle>> = bars.iter().copied().map(Some).collect();
    let (fp, tp) = (FeatureParams::default(), TargetParams::default());
    let frame = build(&ts, &grid, &vol, &fp, &tp, 24);
    let usable: Vec<bool> = (0..frame.len())
        .map(|i| frame.present[i] && frame.target[i].is_finite())
        .collect();
    let splits = assign(&usable, &SplitParams::default(), tp.horizon)?;
    let idx = |s: Split| -> Vec<usize> {
        splits
            .iter()
            .enumerate()
            .filter(|(_, x)| **x == s)
            .map(|(i, _)| i)
            .collect()
    };
    let (tr, va, te) = (idx(Split::Train), idx(Split::Validation), idx(Split::Test));
    let ys = |ix: &[usize]| -> Vec<f64> { ix.iter().map(|&i| frame.target[i]).collect() };
    let p = TrainParams {
        num_boost_round: rounds,
        early_stopping_rounds: 0,
        ..TrainParams::default()
    };
    let (xt, xv) = (
        Rows::gather(&frame.columns, &tr),
        Rows::gather(&frame.columns, &va),
    );
    let (model, _) =
        VolatilityModel::train(&p, &frame.names, tp.floor, (&xt, &ys(&tr)), (&xv, &ys(&va)))?;
    let reference = frame
        .names
        .iter()
        .zip(&frame.columns)
        .map(|(n, c)| ColumnStats::compute(n, &tr.iter().map(|&i| c[i]).collect::<Vec<_>>(), 20))
        .collect();
    let schema = FeatureSchema {
        version: FeatureSchema::VERSION,
        symbol: "BTCUSDT".to_owned(),
        bar: "1h".to_owned(),
        features: frame.names.clone(),
        feature_params: fp,
        target: tp,
        reference,
        rows: [
            ("train", tr.len()),
            ("validation", va.len()),
            ("test", te.len()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect(),
        first_ts: ts.first().copied().unwrap_or(0),
        last_ts: ts.last().copied().unwrap_or(0),
        data_hash: "synthetic-42".to_owned(),
    };
    let registry = LocalRegistry::new(rps_store::open(dir)?);
    let info = VersionInfo {
        name: p.model_name.clone(),
        version: 0,
        created_at: chrono_now(),
        run_id: "demo".to_owned(),
        data_hash: schema.data_hash.clone(),
        git_commit: "demo".to_owned(),
        metrics: BTreeMap::new(),
    };
    let v = registry.register(&ModelFiles::from_model(&model, &schema)?, info)?;
    registry.set_alias(&p.model_name, "champion", v)?;
    // A realistic request: the last test row with every feature finite.
    let row = te
        .iter()
        .rev()
        .map(|&i| frame.row(i))
        .find(|r| r.iter().all(|v| v.is_finite()))
        .ok_or("no finite test row")?;
    let features: serde_json::Map<String, serde_json::Value> = frame
        .names
        .iter()
        .zip(row)
        .map(|(n, v)| (n.clone(), serde_json::json!(v)))
        .collect();
    std::fs::write(
        std::path::Path::new(dir).join("request.json"),
        serde_json::json!({ "features": features }).to_string(),
    )?;
    Ok(v)
}

fn chrono_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("unix:{secs}")
}

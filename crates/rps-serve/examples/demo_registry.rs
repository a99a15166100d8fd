//! Train a small model on simulated hourly bars and register it as `champion` in a registry
//! folder, and write a sample request (`request.json`) beside it — for trying `rps-serve` and for
//! `bench/serve/run.sh` when no registry is given.
//!
//! `cargo run --release -p rps-serve --example demo_registry -- <registry-dir> [bars] [rounds]`

#![allow(clippy::print_stdout, clippy::print_stderr)]

use rps_core::candle::{Candle, HOUR_MS, Interval};
use rps_core::params::{Params, TrainParams};
use rps_core::split::Split;
use rps_core::synthetic::{SyntheticParams, simulate};
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
    // The same features, target, split and reference statistics as the transform stage.
    let params = Params::default();
    let (ds, schema) = rps_transform::transform(&params, &bars, "synthetic-42")?;
    let frame = &ds.frame;
    let (tr, va, te) = (
        ds.rows(Split::Train),
        ds.rows(Split::Validation),
        ds.rows(Split::Test),
    );
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
    let (model, _) = VolatilityModel::train(
        &p,
        &frame.names,
        params.target.floor,
        (&xt, &ys(&tr)),
        (&xv, &ys(&va)),
    )?;
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

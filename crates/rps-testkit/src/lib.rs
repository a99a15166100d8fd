//! Fixtures shared by the crates' tests: a dev-dependency, never a dependency of a stage.
//!
//! [`pooled`]: a model pooled over [`POOLED_SYMBOLS`] (`train.pooling: pooled`, issue #20), as
//! `rps train` builds it, trained once per test process. `rps-serve` (`tests/it/pooled.rs`) and
//! `rps-stream` (`tests/pooled.rs`) serve it; before, each crate trained its own copy.
// A fixture that cannot be built is a failed test, with its location.
#![allow(clippy::unwrap_used)]

use rps_core::candle::{HOUR_MS, Interval};
use rps_core::params::{Params, TrainParams};
use rps_core::schema::FeatureSchema;
use rps_core::split::Split;
use rps_core::synthetic::{SyntheticParams, simulate};
use rps_model::{Rows, VolatilityModel};
use std::sync::OnceLock;

/// The symbols of [`pooled`], in one-hot order.
pub const POOLED_SYMBOLS: [&str; 2] = ["AAA-USD", "BBB-USD"];

/// A model pooled over [`POOLED_SYMBOLS`]: each symbol's transformed rows (2,000 synthetic
/// hours, seeds 7 and 8) with its one-hot ([`rps_core::pooling::with_one_hot`]), stacked;
/// BBB-USD's targets are scaled ×3 so that the trees must use the one-hot. Its schema lists
/// the symbols and the reference statistics of every input; `rows` are finite test rows of
/// AAA-USD's features (without the one-hot).
pub struct Pooled {
    pub model: VolatilityModel,
    pub schema: FeatureSchema,
    pub rows: Vec<Vec<f64>>,
}

/// The pooled fixture, trained on first use.
pub fn pooled() -> &'static Pooled {
    static P: OnceLock<Pooled> = OnceLock::new();
    P.get_or_init(train_pooled)
}

/// One symbol's inputs (columns with the one-hot), targets, training and validation rows.
type Part = (Vec<Vec<f64>>, Vec<f64>, Vec<usize>, Vec<usize>);

fn train_pooled() -> Pooled {
    let symbols: Vec<String> = POOLED_SYMBOLS.iter().map(|s| (*s).to_owned()).collect();
    let params = Params::default();
    let mut parts: Vec<Part> = Vec::new();
    let mut first: Option<(FeatureSchema, Vec<Vec<f64>>)> = None;
    for (k, s) in symbols.iter().enumerate() {
        let sp = SyntheticParams {
            seed: 7 + k as u64,
            ..SyntheticParams::default()
        };
        let bars = simulate(&sp, Interval::H1, 0, 2000 * HOUR_MS);
        let (ds, schema) = rps_transform::transform(&params, &bars, "synthetic").unwrap();
        let f = &ds.frame;
        let cols = rps_core::pooling::with_one_hot(&f.columns, f.len(), &symbols, s).unwrap();
        let scale = if k == 0 { 1.0 } else { 3.0 };
        let y: Vec<f64> = f.target.iter().map(|v| v * scale).collect();
        if first.is_none() {
            let rows = ds
                .rows(Split::Test)
                .iter()
                .map(|&i| f.row(i))
                .filter(|r| r.iter().all(|v| v.is_finite()))
                .take(50)
                .collect();
            first = Some((schema, rows));
        }
        parts.push((cols, y, ds.rows(Split::Train), ds.rows(Split::Validation)));
    }
    let (schema, rows) = first.unwrap();
    let mut names = schema.features.clone();
    names.extend(rps_core::pooling::one_hot_names(&symbols));
    let stacked = |pick: fn(&Part) -> &[usize]| {
        let x = Rows::stack(parts.iter().map(|p| Rows::gather(&p.0, pick(p))));
        let y: Vec<f64> = parts
            .iter()
            .flat_map(|p| pick(p).iter().map(|&i| p.1[i]))
            .collect();
        (x, y)
    };
    let (xt, yt) = stacked(|p| &p.2);
    let (xv, yv) = stacked(|p| &p.3);
    let mut p = TrainParams {
        num_boost_round: 60,
        early_stopping_rounds: 0,
        ..TrainParams::default()
    };
    p.xgboost.insert("eta".to_owned(), serde_json::json!(0.1));
    let (model, _) =
        VolatilityModel::train(&p, &names, params.target.floor, (&xt, &yt), (&xv, &yv)).unwrap();
    let reference = names
        .iter()
        .enumerate()
        .map(|(j, n)| {
            let v: Vec<f64> = parts
                .iter()
                .flat_map(|p| p.2.iter().map(|&i| p.0[j][i]))
                .collect();
            rps_core::stats::ColumnStats::compute(n, &v, 20)
        })
        .collect();
    let schema = FeatureSchema {
        symbol: symbols.join(","),
        features: names,
        reference,
        symbols,
        ..schema
    };
    Pooled {
        model,
        schema,
        rows,
    }
}

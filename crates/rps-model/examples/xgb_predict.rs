//! Predict with an XGBoost model file through RPS's engine: the Rust half of the interop tests
//! (`tests/python/test_xgboost_interop.py`), and a handy check for any model file.
//!
//! Usage: `xgb_predict MODEL(.json|.ubj) ROWS.csv` — ROWS.csv has no header, one row of feature
//! values per line, empty cells for missing values. Prints one raw prediction per line.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use hessboost::prelude::*;
use std::process::ExitCode;

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let [_, model, rows] = args.as_slice() else {
        return Err("usage: xgb_predict MODEL.json|MODEL.ubj ROWS.csv".to_owned());
    };
    let format = if model.ends_with(".ubj") {
        ModelFormat::XgboostUbjson
    } else {
        ModelFormat::XgboostJson
    };
    let booster = BoostedModel::load(model, format).map_err(|e| format!("{model}: {e}"))?;
    let text = std::fs::read_to_string(rows).map_err(|e| format!("{rows}: {e}"))?;
    let mut values = Vec::new();
    let mut n_rows = 0;
    let mut n_cols = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let row: Vec<f32> = line
            .split(',')
            .map(|c| {
                if c.trim().is_empty() {
                    Ok(f32::NAN)
                } else {
                    c.trim().parse::<f32>().map_err(|e| format!("{c:?}: {e}"))
                }
            })
            .collect::<Result<_, _>>()?;
        n_cols = row.len();
        values.extend(row);
        n_rows += 1;
    }
    let d = DMatrix::from_dense(&values, n_rows, n_cols).map_err(|e| e.to_string())?;
    let p = booster
        .predict(&d, Iterations::Best)
        .map_err(|e| e.to_string())?;
    for v in p.as_slice() {
        println!("{v:?}");
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

//! Walk-forward evaluation of a feature dataset under parameter variants: the loop behind the
//! model-quality work (tuning budget and development protocol in the README's "Model quality").
//!
//! Usage: `walk_forward PARAMS.yaml DATA_DIR [--before YYYY-MM-DD] [--set a.b=YAML]...`
//!
//! DATA_DIR is a feature dataset (`<home>/data/features/<symbol>`) or a raw one
//! (`<home>/data/raw/<symbol>`); from raw data the features are rebuilt for every variant, so
//! `features:` and `target:` overrides take effect.
//!
//! `--before` keeps only rows before that date (UTC), so that development can run on an early
//! span and never look at the rows the reported walk-forward tests on. Each `--set` overrides
//! one key of the parameter file, e.g. `--set train.target_transform=variance` or
//! `--set 'train.base_margin=[har_1b,har_24b]'`; several `--set` groups separated by `--` are
//! evaluated one after the other, each from the same file.
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]

use rps_core::params::Params;
use rps_store::frame::Dataset;
use std::process::ExitCode;

fn set(root: &mut serde_yaml::Value, path: &str, value: serde_yaml::Value) {
    let mut node = root;
    let keys: Vec<&str> = path.split('.').collect();
    for k in &keys[..keys.len() - 1] {
        let map = node.as_mapping_mut().expect("a mapping");
        node = map
            .entry(serde_yaml::Value::String((*k).to_owned()))
            .or_insert_with(|| serde_yaml::Value::Mapping(serde_yaml::Mapping::new()));
    }
    node.as_mapping_mut().expect("a mapping").insert(
        serde_yaml::Value::String(keys[keys.len() - 1].to_owned()),
        value,
    );
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [params_path, features, rest @ ..] = args.as_slice() else {
        return Err("usage: walk_forward PARAMS.yaml FEATURES_DIR [--before DATE] [--set k=v]... [-- --set k=v ...]".into());
    };
    let text = std::fs::read_to_string(params_path).map_err(|e| e.to_string())?;
    let store = rps_store::open(features).map_err(|e| e.to_string())?;
    let raw_bars = if store.get(rps_store::raw::MANIFEST).is_ok() {
        let raw =
            rps_store::raw::RawDataset::new(rps_store::open(features).map_err(|e| e.to_string())?);
        let (_, bars, problems) = raw.read_all().map_err(|e| e.to_string())?;
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        Some(bars)
    } else {
        None
    };
    let stored = match &raw_bars {
        Some(_) => None,
        None => Some(rps_store::frame::read(store.as_ref()).map_err(|e| e.to_string())?),
    };
    let mut cut = i64::MAX;
    let mut variants: Vec<Vec<(String, String)>> = vec![Vec::new()];
    let mut it = rest.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--before" => {
                let d = it.next().ok_or("--before needs a date")?;
                cut = chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d")
                    .map_err(|e| e.to_string())?
                    .and_hms_opt(0, 0, 0)
                    .unwrap()
                    .and_utc()
                    .timestamp_millis();
            }
            "--set" => {
                let kv = it.next().ok_or("--set needs key=value")?;
                let (k, v) = kv.split_once('=').ok_or("--set needs key=value")?;
                variants
                    .last_mut()
                    .unwrap()
                    .push((k.to_owned(), v.to_owned()));
            }
            "--" => variants.push(Vec::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    for v in &variants {
        let mut root: serde_yaml::Value = serde_yaml::from_str(&text).map_err(|e| e.to_string())?;
        for (k, val) in v {
            set(
                &mut root,
                k,
                serde_yaml::from_str(val).map_err(|e| e.to_string())?,
            );
        }
        let params: Params = serde_yaml::from_value(root).map_err(|e| e.to_string())?;
        let t = std::time::Instant::now();
        let (ds, schema) = match (&raw_bars, &stored) {
            (Some(bars), _) => {
                rps_transform::transform(&params, bars, "").map_err(|e| e.to_string())?
            }
            (None, Some(x)) => x.clone(),
            (None, None) => unreachable!(),
        };
        let bar: rps_core::Interval = schema.bar.parse().map_err(|e| format!("{e}"))?;
        let keep: Vec<usize> = (0..ds.frame.len())
            .filter(|&i| ds.frame.ts[i] < cut)
            .collect();
        let f = &ds.frame;
        let pick = |v: &[f64]| keep.iter().map(|&i| v[i]).collect::<Vec<f64>>();
        let ds = Dataset {
            frame: rps_core::features::FeatureFrame {
                ts: keep.iter().map(|&i| f.ts[i]).collect(),
                names: f.names.clone(),
                columns: f.columns.iter().map(|c| pick(c)).collect(),
                bar_vol: pick(&f.bar_vol),
                target: pick(&f.target),
                present: keep.iter().map(|&i| f.present[i]).collect(),
            },
            split: keep.iter().map(|&i| ds.split[i]).collect(),
            close: ds.close.as_ref().map(|c| pick(c)),
        };
        let wf = rps_evaluate::walk_forward(&params, &ds, bar.ms()).map_err(|e| e.to_string())?;
        let label: Vec<String> = v.iter().map(|(k, v)| format!("{k}={v}")).collect();
        if let Ok(dir) = std::env::var("WF_DUMP") {
            let i = variants.iter().position(|x| std::ptr::eq(x, v)).unwrap();
            std::fs::write(
                format!("{dir}/wf{i}.csv"),
                rps_evaluate::walk_forward_csv(&wf),
            )
            .unwrap();
        }
        println!(
            "== {} ({:.1}s)",
            if label.is_empty() {
                "params as given".to_owned()
            } else {
                label.join(" ")
            },
            t.elapsed().as_secs_f64()
        );
        for (k, f) in wf.folds.iter().enumerate() {
            let cells: Vec<String> = f
                .scores
                .iter()
                .map(|(n, s)| format!("{n} {:.4}/{:.4}", s.qlike, s.r2_log))
                .collect();
            let m = &f.forecasts[0].1;
            let n = m.len() as f64;
            let bias = f
                .realized
                .iter()
                .zip(m)
                .map(|(y, h)| (y / h).ln())
                .sum::<f64>()
                / n;
            let ratio = f
                .realized
                .iter()
                .zip(m)
                .map(|(y, h)| (y / h).powi(2))
                .sum::<f64>()
                / n;
            println!(
                "  fold {k} (n={}, it={:?}, k={:?}, s={:.3}, bias {bias:+.3}, ratio {ratio:.3}): {}",
                f.realized.len(),
                f.best_iteration,
                f.power,
                f.smearing,
                cells.join("  ")
            );
        }
        let cells: Vec<String> = wf
            .pooled
            .iter()
            .map(|(n, s)| format!("{n} {:.4}/{:.4}", s.qlike, s.r2_log))
            .collect();
        println!("  POOLED QLIKE/R2log: {}", cells.join("  "));
        if let Some(v) = wf.verdict(&params.evaluate.acceptance) {
            println!(
                "  verdict: QLIKE {:+.2} % vs {}, median R2log {:+.4} vs HAR; DM {:.2} (p {:.4}) -> {}",
                v.qlike_gain * 100.0,
                v.best_baseline,
                v.median_r2_log_vs_har,
                wf.dm_vs_har.statistic,
                wf.dm_vs_har.p_value,
                if v.passed {
                    "PASS".to_owned()
                } else {
                    format!("fail: {}", v.failed().join("; "))
                }
            );
            for c in &v.checks {
                println!(
                    "    {} {}: {}",
                    if c.passed { "pass" } else { "FAIL" },
                    c.criterion.key(),
                    c.observed
                );
            }
        }
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

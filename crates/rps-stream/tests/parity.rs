//! Issue #19, "Measure": the scores the stream writes online are the batch evaluation's per-hour
//! losses of the same model version.
//!
//! The batch side is the pipeline of `make demo` on the bundled real sample (Binance BTCUSDT
//! 2020–2021 with its order-flow columns), run in process through the stages' own `run`:
//! extract → quality → transform → train → evaluate. `rps evaluate` scores the registered
//! candidate on the test split (and, being the first model, makes it champion); its
//! `predictions.csv` holds each test hour's realized volatility, the model's mean and quantiles,
//! and the EWMA baseline. The walk-forward is off here: its folds are models retrained per block,
//! none of them a registered version, so no streamed version can be compared with them.
//!
//! The stream side replays the same file through the real broker (tansu) into real PostgreSQL:
//! `rps-stream produce`, then `consume` with that version live as champion. For every test hour
//! the `scores` row of the champion and of `ewma` must equal the batch numbers: realized,
//! forecast, QLIKE and log error within [`TOL`] (relative), and the 80 % coverage flag equal to
//! the batch band's (`model_q10` ≤ realized ≤ `model_q90`). Both sides build their features with
//! the one pipeline (`rps_core::pipeline`), so the only slack is floating-point summation order;
//! in practice the numbers agree bit for bit (the test prints the largest differences).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use clap::Parser;
use common::*;
use rps_core::metrics::{log_loss_one, qlike_one};
use rps_core::params::Params;
use std::collections::HashMap;
use std::time::Instant;

/// Relative tolerance between an online score and the batch number it must equal.
const TOL: f64 = 1e-12;
/// predictions.csv writes 8 decimals: its values are the full-precision ones rounded.
const CSV_TOL: f64 = 5.000_001e-9;

fn rel(a: f64, b: f64) -> f64 {
    if a == b {
        0.0
    } else {
        (a - b).abs() / b.abs().max(f64::MIN_POSITIVE)
    }
}

/// A loss that may be ~0: relative to max(1, |b|).
fn loss_diff(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1.0)
}

/// `--params P --home H` and the rest, parsed as the stage binary would.
fn stage_args<A: Parser>(bin: &str, params: &str, home: &str, extra: &[&str]) -> A {
    let mut argv = vec![bin, "--params", params, "--home", home, "--quiet"];
    argv.extend_from_slice(extra);
    A::parse_from(argv)
}

#[test]
#[ignore = "needs PostgreSQL and Kafka (tansu): crates/rps-stream/tests/servers.sh"]
fn stream_scores_equal_the_batch_evaluation_of_the_same_version() {
    let t0 = Instant::now();
    let e = setup("parity");
    // params.yaml as `make demo` runs it (the bundled Binance sample), the walk-forward off.
    let mut params: Params =
        rps_cli::params_from_str(include_str!("../../../params.yaml")).unwrap();
    params.data.file.path = format!(
        "{}/../../{}",
        env!("CARGO_MANIFEST_DIR"),
        params.data.file.path
    );
    params.evaluate.walk_forward_folds = 0;
    std::fs::write(&e.params, serde_yaml::to_string(&params).unwrap()).unwrap();
    let (p, home) = (e.params.to_str().unwrap(), e.home.to_str().unwrap());
    let reports = e.home.join("reports");
    let reports = reports.to_str().unwrap();

    // The batch pipeline.
    rps_extract::run(&stage_args("rps-extract", p, home, &["--full-refresh"])).unwrap();
    rps_quality::run(&stage_args(
        "rps-quality",
        p,
        home,
        &["--report-dir", reports],
    ))
    .unwrap();
    rps_transform::run(&stage_args("rps-transform", p, home, &[])).unwrap();
    rps_train::run(&stage_args("rps-train", p, home, &[])).unwrap();
    rps_evaluate::run(&stage_args(
        "rps-evaluate",
        p,
        home,
        &["--report-dir", reports],
    ))
    .unwrap();
    let t_batch = t0.elapsed();

    // The evaluation behind the report, at full precision: the registered candidate on the
    // stored features, as `rps evaluate` computed it.
    let h = rps_cli::Home::new(home);
    let registry = h.registry().unwrap();
    let (files, info) = rps_evaluate::read_candidate(
        rps_store::open(&h.candidate()).unwrap().as_ref(),
        registry.as_ref(),
    )
    .unwrap();
    let (ds, _) = rps_store::frame::read(
        rps_store::open(&h.features(&params.data.symbol))
            .unwrap()
            .as_ref(),
    )
    .unwrap();
    let model = files.model().unwrap().into_volatility().unwrap();
    let batch = rps_evaluate::evaluate(&params, &ds, &model).unwrap();
    let series = |name: &str| -> &[f64] {
        batch
            .forecasts
            .iter()
            .chain(&batch.quantiles)
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
            .unwrap_or_else(|| panic!("the evaluation has no {name} series"))
    };
    let (mean, ewma, lo, hi) = (
        series("model"),
        series("ewma"),
        series("model_q10"),
        series("model_q90"),
    );
    let n = batch.ts.len();
    assert!(n > 2000, "{n} test hours");

    // predictions.csv, the report rps evaluate wrote, is that evaluation rounded to 8 decimals.
    let csv = std::fs::read_to_string(format!("{reports}/predictions.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|c| *c == name).unwrap();
    let checked: [(&str, &[f64]); 5] = [
        ("realized", &batch.realized),
        ("model", mean),
        ("model_q10", lo),
        ("model_q90", hi),
        ("ewma", ewma),
    ];
    let mut csv_rows = 0;
    for (i, line) in lines.enumerate() {
        let cells: Vec<&str> = line.split(',').collect();
        let ts = chrono::DateTime::from_timestamp_millis(batch.ts[i]).unwrap();
        assert_eq!(cells[0], ts.format("%Y-%m-%dT%H:%M:%SZ").to_string());
        for (name, v) in checked {
            let got: f64 = cells[col(name)].parse().unwrap();
            assert!(
                (got - v[i]).abs() <= CSV_TOL,
                "predictions.csv {name} at {ts}: {got} vs {}",
                v[i]
            );
        }
        csv_rows += 1;
    }
    assert_eq!(csv_rows, n);

    // The stream: the same file through tansu into PostgreSQL, that version live as champion.
    let db = e.db("");
    let t1 = Instant::now();
    e.run(&db, &["produce"]);
    e.consume(&db, &["--aliases", "champion"]);
    let t_stream = t1.elapsed();
    let rows = sql(
        &e.base_url,
        &db,
        &format!(
            "SELECT model, (extract(epoch FROM predicted_from) * 1000)::bigint::text,
               realized::text, forecast::text, qlike::text, log_error::text, covered_80::text
             FROM scores
             WHERE (model = '{}' AND version = '{}' AND alias = 'champion') OR model = 'ewma'",
            info.name, info.version
        ),
    );
    let num = |v: &Option<String>| v.as_deref().unwrap().parse::<f64>().unwrap();
    let online: HashMap<(String, i64), &Vec<Option<String>>> = rows
        .iter()
        .map(|r| {
            let ts = r[1].as_deref().unwrap().parse().unwrap();
            ((r[0].clone().unwrap(), ts), r)
        })
        .collect();

    // Every test hour, for the champion and for EWMA.
    let mut worst: HashMap<&str, f64> = HashMap::new();
    let mut note = |what: &'static str, d: f64| {
        let w = worst.entry(what).or_insert(0.0);
        *w = w.max(d);
        d
    };
    let mut bitwise = 0;
    let mut covered = 0;
    for i in 0..n {
        let ts = batch.ts[i];
        let y = batch.realized[i];
        for (m, f) in [(info.name.as_str(), mean[i]), ("ewma", ewma[i])] {
            let r = online
                .get(&(m.to_owned(), ts))
                .unwrap_or_else(|| panic!("no {m} score for the forecast made at {ts}"));
            let (realized, forecast) = (num(&r[2]), num(&r[3]));
            let at = format!("{m} from {ts}");
            assert!(
                note("realized", rel(realized, y)) <= TOL,
                "{at}: realized {realized} vs {y}"
            );
            assert!(
                note("forecast", rel(forecast, f)) <= TOL,
                "{at}: forecast {forecast} vs {f}"
            );
            let (q, want_q) = (num(&r[4]), qlike_one(y, f));
            assert!(
                note("qlike", loss_diff(q, want_q)) <= TOL,
                "{at}: QLIKE {q} vs {want_q}"
            );
            let (l, want_l) = (num(&r[5]), log_loss_one(y, f));
            assert!(
                note("log_error", loss_diff(l, want_l)) <= TOL,
                "{at}: log error {l} vs {want_l}"
            );
            if m == "ewma" {
                assert_eq!(r[6], None, "{at}: EWMA has no band");
            } else {
                let want = lo[i] <= y && y <= hi[i];
                covered += usize::from(want);
                assert_eq!(
                    r[6].as_deref(),
                    Some(if want { "true" } else { "false" }),
                    "{at}: 80 % coverage of {y} by [{}, {}]",
                    lo[i],
                    hi[i]
                );
                bitwise += usize::from(forecast.to_bits() == f.to_bits());
            }
        }
    }
    eprintln!(
        "parity over {n} test hours ({} .. {}): largest relative differences {worst:?}; \
         champion forecasts bit-identical in {bitwise} of {n}; batch 80 % coverage {:.1} %; \
         batch pipeline {:.1} s, produce + consume of {} bars {:.1} s, whole test {:.1} s",
        chrono::DateTime::from_timestamp_millis(batch.ts[0]).unwrap(),
        chrono::DateTime::from_timestamp_millis(batch.ts[n - 1]).unwrap(),
        100.0 * covered as f64 / n as f64,
        t_batch.as_secs_f64(),
        ds.frame.len(),
        t_stream.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
}

//! Unit tests of the evaluate stage.
#![allow(clippy::unwrap_used)]

use super::*;
use rps_core::metrics::{self, Scores};
use rps_core::params::PrimaryMetric;
use rps_core::schema::FeatureSchema;

#[test]
fn models_of_other_symbols_or_sources_are_not_comparable() {
    let schema = |symbol: &str, source: &str| FeatureSchema {
        version: FeatureSchema::VERSION,
        symbol: symbol.to_owned(),
        source: source.to_owned(),
        bar: "1h".to_owned(),
        features: Vec::new(),
        feature_params: Default::default(),
        target: Default::default(),
        reference: Vec::new(),
        rows: BTreeMap::new(),
        first_ts: 0,
        last_ts: 0,
        data_hash: String::new(),
        symbols: Vec::new(),
    };
    let file = schema("BTC-USD", "file");
    assert_eq!(incomparable(&file, &schema("BTC-USD", "file")), None);
    assert_eq!(
        incomparable(&file, &schema("BTC-USD", "synthetic")).as_deref(),
        Some("was trained on BTC-USD from file, this model on BTC-USD from synthetic")
    );
    assert!(incomparable(&file, &schema("ETH-USD", "file")).is_some());
    // A schema from before the source was recorded compares on the symbol alone.
    assert_eq!(incomparable(&schema("BTC-USD", ""), &file), None);
    assert!(incomparable(&schema("ETH-USD", ""), &file).is_some());
}
use rps_core::Interval;
use rps_core::params::TargetTransform;
use rps_core::synthetic::{SyntheticParams, simulate};

const HOUR: i64 = 3_600_000;

/// A synthetic hourly dataset through the transform stage's own code, and params for a fast
/// walk-forward over it.
fn synthetic() -> (Params, Dataset) {
    let bars = simulate(&SyntheticParams::default(), Interval::H1, 0, 2400 * HOUR);
    let mut params = Params::default();
    params.train.num_boost_round = 60;
    params.train.early_stopping_rounds = 10;
    params.train.target_transform = TargetTransform::Power;
    params.train.power_grid = vec![1.0, 2.0];
    params.train.base_margin = vec!["har_1b".into(), "har_24b".into()];
    params.evaluate.walk_forward_folds = 3;
    params.evaluate.walk_forward_test_fraction = 0.3;
    let (ds, _) = rps_transform::transform(&params, &bars, "synthetic").unwrap();
    (params, ds)
}

#[test]
fn walk_forward_scores_every_forecaster_on_every_fold() {
    let (params, ds) = synthetic();
    let wf = walk_forward(&params, &ds, HOUR).unwrap();
    assert_eq!(wf.folds.len(), 3);
    let names: Vec<&str> = wf.pooled.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "model",
            "model_median",
            "persistence",
            "ewma",
            "har_rv",
            HAR_LOG
        ]
    );
    // The distribution: 7 quantile columns per fold, monotone, summarised pooled.
    let names: Vec<&str> = wf.distribution.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["model", "har_rv", "ewma"]);
    for (_, d) in &wf.distribution {
        assert_eq!(d.intervals.len(), 2);
        let c = d.intervals[0].coverage;
        assert!(c > 0.5 && c < 1.0, "a fitted interval covers: {c}");
    }
    let d = &wf.distribution[0].1;
    assert_eq!(d.intervals.len(), 2);
    assert_eq!(d.reliability.len(), 7);
    assert_eq!(d.tercile_coverage_80.len(), 3);
    for f in &wf.folds {
        assert_eq!(f.quantiles.len(), 7);
        assert_eq!(f.baseline_quantiles.len(), 14);
        for i in 0..f.realized.len() {
            assert!(f.quantiles.windows(2).all(|w| w[0].1[i] <= w[1].1[i]));
        }
    }
    let csv = walk_forward_csv(&wf);
    assert!(csv.starts_with(
        "fold,ts,realized,model,model_median,model_q05,model_q10,model_q25,model_q50,model_q75,model_q90,model_q95,persistence,"
    ), "{}", &csv[..200]);
    let mut n = 0;
    let mut last_ts = i64::MIN;
    for f in &wf.folds {
        assert!(f.ts[0] > last_ts, "folds in time order, no overlap");
        last_ts = *f.ts.last().unwrap();
        assert!(f.train_rows > 0 && f.validation_rows > 0);
        assert!(f.power == Some(1.0) || f.power == Some(2.0));
        for (_, s) in &f.scores {
            assert_eq!(s.n, f.realized.len(), "the same rows for every forecaster");
            assert!(s.qlike.is_finite() && s.r2_log.is_finite());
        }
        n += f.realized.len();
    }
    // The pooled scores are those of the concatenated test blocks.
    for (name, s) in &wf.pooled {
        assert_eq!(s.n, n);
        let j = wf.folds[0]
            .forecasts
            .iter()
            .position(|(x, _)| x == name)
            .unwrap();
        let y: Vec<f64> = wf.folds.iter().flat_map(|f| f.realized.clone()).collect();
        let h: Vec<f64> = wf
            .folds
            .iter()
            .flat_map(|f| f.forecasts[j].1.clone())
            .collect();
        assert_eq!(*s, metrics::score(&y, &h));
    }
    assert!(wf.dm_vs_har.statistic.is_finite());
    let rule = &params.evaluate.acceptance;
    let v = wf.verdict(rule).unwrap();
    let best = wf
        .pooled
        .iter()
        .filter(|(n, _)| !n.starts_with("model"))
        .map(|(_, s)| s.qlike)
        .fold(f64::INFINITY, f64::min);
    assert!((v.qlike_gain - (1.0 - wf.pooled[0].1.qlike / best)).abs() < 1e-12);
    // The R² (log) bar is the better of HAR-RV's two forecasts; the log-scale one is the
    // same fit without the smearing (> 1), so it sits below the level forecast.
    let r2 = |name: &str| wf.pooled_score(name).unwrap().r2_log;
    let bar = r2("har_rv").max(r2(HAR_LOG));
    assert!((v.median_r2_log_vs_har - (r2("model_median") - bar)).abs() < 1e-12);
    for f in &wf.folds {
        let h = |name: &str| &f.forecasts.iter().find(|(n, _)| n == name).unwrap().1;
        assert!(h("har_rv").iter().zip(h(HAR_LOG)).all(|(a, b)| a >= b));
    }
    // Seven criteria, each measured here (the model has quantiles), and the verdict their "and".
    assert_eq!(v.checks.len(), 7);
    assert!(
        v.checks.iter().all(|c| c.value.is_finite()),
        "{:?}",
        v.checks
    );
    assert_eq!(v.passed, v.checks.iter().all(|c| c.passed));
    let coverage80 = v
        .checks
        .iter()
        .find(|c| c.criterion == Criterion::Coverage80)
        .unwrap();
    assert!(
        (coverage80.value - (wf.distribution[0].1.intervals[0].coverage - 0.8).abs()).abs() < 1e-12
    );
    assert!(wf.dm_log_vs_har.unwrap().statistic.is_finite());
    // The thresholds are the params': an impossible bar fails that criterion and the verdict.
    let strict = rps_core::params::AcceptanceParams {
        qlike_gain: 0.99,
        ..rule.clone()
    };
    let s = wf.verdict(&strict).unwrap();
    assert!(!s.passed);
    assert_eq!(s.failed()[0], Criterion::MeanQlike.describe());
    let lax = rps_core::params::AcceptanceParams {
        qlike_gain: -1.0,
        mse_var_tolerance: 100.0,
        median_r2_log_gain: -1.0,
        coverage_tolerance: 0.99,
        tercile_coverage_tolerance: 0.99,
        interval_score_gain: -1.0,
        enforce: true,
    };
    assert!(
        wf.verdict(&lax).unwrap().passed,
        "every bar lowered: passes"
    );
    // Enforced, a failed verdict keeps a challenger out and says why; reported, it only says.
    let first = decide(1, 0.5, None, PrimaryMetric::Qlike, 0.0);
    let kept = gate(first.clone(), Some(&s), true);
    assert!(
        !kept.promoted && kept.reason.contains("enforce is on"),
        "{}",
        kept.reason
    );
    let told = gate(first, Some(&s), false);
    assert!(told.promoted, "reported, not enforced");
    assert!(
        told.reason.contains("no champion yet")
            && told.reason.contains("fails the acceptance rule"),
        "{}",
        told.reason
    );
    assert!(told.reason.contains(Criterion::MeanQlike.describe()));

    let md = walk_forward_markdown(&wf, &params);
    assert!(md.contains("## Walk-forward: 3 folds"), "{md}");
    assert!(md.contains("| forecaster | QLIKE"));
    assert!(md.contains("| 3 |"), "a row per fold");
    for k in 0..3 {
        assert!(md.contains(&format!("]({})", fold_png(k))));
    }
    let json = walk_forward_json(&wf, Some(&v)).unwrap();
    assert_eq!(json["folds"].as_array().unwrap().len(), 3);
    assert!(json["pooled"]["har_rv"]["qlike"].is_number());
    assert!(json["verdict"]["passed"].is_boolean());
    assert_eq!(json["verdict"]["checks"].as_array().unwrap().len(), 7);
    assert_eq!(json["verdict"]["checks"][0]["criterion"], "mean_qlike");
    assert!(
        md.contains("### Verdict") && md.contains("| coverage of the 80 % interval |"),
        "{md}"
    );
    let csv = walk_forward_csv(&wf);
    assert_eq!(csv.lines().count(), n + 1);
    let (values, points) = walk_forward_metrics(&wf, Some(&v));
    assert!(values.iter().any(|(k, _)| k == "wf_model_qlike"));
    assert_eq!(
        points
            .iter()
            .filter(|p| p.key == "wf_fold_model_qlike")
            .count(),
        3,
        "one point per fold"
    );
}

#[test]
fn walk_forward_refuses_impossible_folds() {
    let (mut params, ds) = synthetic();
    params.evaluate.walk_forward_folds = 500;
    assert!(matches!(
        walk_forward(&params, &ds, HOUR),
        Err(EvaluateError::WalkForward(_))
    ));
}

#[test]
fn decisions() {
    let m = PrimaryMetric::Qlike;
    assert!(decide(1, 0.3, None, m, 0.01).promoted);
    let d = decide(2, 0.29, Some((1, 0.3)), m, 0.01);
    assert!(d.promoted, "{}", d.reason);
    let d = decide(2, 0.299, Some((1, 0.3)), m, 0.01);
    assert!(!d.promoted);
    assert!(d.reason.contains("margin is 1.00 %"), "{}", d.reason);
    assert!(!decide(2, 0.31, Some((1, 0.3)), m, 0.0).promoted);
    assert!(
        !decide(3, 0.1, Some((3, 0.1)), m, 0.0).promoted,
        "rerunning evaluate on the champion changes nothing"
    );
    // R²(log) is higher-is-better: loss() flips it.
    let s = Scores {
        rmse: 1.0,
        mae: 1.0,
        r2: 0.5,
        r2_log: 0.6,
        qlike: 0.2,
        mse_var: 0.1,
        mz_r2_log: 0.6,
        n: 1,
    };
    assert_eq!(loss(&s, PrimaryMetric::R2Log), -0.6);
}

#[test]
fn the_test_split_scores_the_median_and_writes_every_quantile() {
    let (params, ds) = synthetic();
    let train = ds.rows(rps_core::split::Split::Train);
    let valid = ds.rows(rps_core::split::Split::Validation);
    let (xt, yt) = gather(&ds, &train);
    let (xv, yv) = gather(&ds, &valid);
    let (model, _) = rps_model::VolatilityModel::train(
        &params.train,
        &ds.frame.names,
        params.target.floor,
        (&xt, &yt),
        (&xv, &yv),
    )
    .unwrap();
    let e = evaluate(&params, &ds, &model).unwrap();
    assert!(e.score("model_median").is_some());
    assert_eq!(e.quantiles.len(), 7);
    let csv = predictions_csv(&e);
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "ts,realized,model,model_median,model_q05,model_q10,model_q25,model_q50,model_q75,model_q90,model_q95,persistence,ewma,har_rv,har_rv_log"
    );
    assert_eq!(lines.count(), e.ts.len());
    // The median column is the 0.5 quantile.
    let (med, q50) = (&e.forecasts[1].1, &e.quantiles[3].1);
    assert_eq!(med, q50);
}

/// `train.pooling: pooled`: one decision for the shared version — better together, and not
/// worse beyond the margin on any one symbol.
#[test]
fn pooled_promotion_needs_the_symbols_together_and_none_worse_beyond_the_margin() {
    let sym = |s: &str, challenger: f64, champion: Option<f64>| SymbolEvaluation {
        symbol: s.to_owned(),
        rows: 100,
        challenger,
        champion,
        improvement: None,
        qlike: BTreeMap::new(),
        blocks: false,
        reason: String::new(),
        acceptance: None,
    };
    // Better together (1.0 → 0.9) and on both: promoted.
    let mut s = vec![sym("A", 0.5, Some(0.6)), sym("B", 1.3, Some(1.4))];
    let d = decide_pooled(2, (0.9, Some((1, 1.0))), &mut s, PrimaryMetric::Qlike, 0.0);
    assert!(d.promoted, "{}", d.reason);
    assert!(s.iter().all(|s| !s.blocks));
    // Better together but 2 % worse on B: kept for every symbol, B named.
    let mut s = vec![sym("A", 0.4, Some(0.6)), sym("B", 1.428, Some(1.4))];
    let d = decide_pooled(2, (0.9, Some((1, 1.0))), &mut s, PrimaryMetric::Qlike, 0.0);
    assert!(!d.promoted);
    assert!(s[1].blocks && !s[0].blocks);
    assert!(d.reason.contains("B (-2.00 %)"), "{}", d.reason);
    // ... unless the margin allows it: 2 % worse passes a 5 % margin, but then "together" must
    // improve by 5 % too.
    let mut s = vec![sym("A", 0.4, Some(0.6)), sym("B", 1.428, Some(1.4))];
    let d = decide_pooled(2, (0.9, Some((1, 1.0))), &mut s, PrimaryMetric::Qlike, 0.05);
    assert!(d.promoted, "{}", d.reason);
    // Worse together: kept, whatever the symbols say.
    let mut s = vec![sym("A", 0.5, Some(0.6)), sym("B", 1.3, Some(1.4))];
    let d = decide_pooled(2, (1.1, Some((1, 1.0))), &mut s, PrimaryMetric::Qlike, 0.0);
    assert!(!d.promoted);
    // No champion: the first model becomes champion.
    let mut s = vec![sym("A", 0.5, None), sym("B", 1.3, None)];
    assert!(decide_pooled(1, (0.9, None), &mut s, PrimaryMetric::Qlike, 0.0).promoted);
}

/// Two synthetic symbols (other seeds and volatility levels) with a pooled model's one-hot
/// columns, and params for a fast walk-forward over them.
fn pooled_synthetic() -> (Params, Vec<(String, Dataset)>) {
    let (params, _) = synthetic();
    let symbols = vec!["SYN-A".to_owned(), "SYN-B".to_owned()];
    let datasets = symbols
        .iter()
        .zip([(1, 0.006), (2, 0.015)])
        .map(|(s, (seed, hourly_vol))| {
            let sp = SyntheticParams {
                seed,
                hourly_vol,
                ..SyntheticParams::default()
            };
            let bars = simulate(&sp, Interval::H1, 0, 2400 * HOUR);
            let (ds, _) = rps_transform::transform(&params, &bars, "synthetic").unwrap();
            (s.clone(), pooled::with_one_hot(ds, &symbols, s).unwrap())
        })
        .collect();
    (params, datasets)
}

/// The pooled walk-forward: each symbol split as its per-symbol walk-forward splits it, one
/// pooled model per fold, the acceptance rule on each symbol and on all together, and the
/// decision gated by the one rule of the per-symbol stage.
#[test]
fn pooled_walk_forward_judges_each_symbol_and_all_together() {
    let (params, datasets) = pooled_synthetic();
    let wf = pooled_walk_forward(&params, &datasets, HOUR).unwrap();
    assert_eq!(wf.together.folds.len(), 3);
    assert_eq!(wf.by_symbol.len(), 2);
    for ((symbol, w), (_, ds)) in wf.by_symbol.iter().zip(&datasets) {
        // The per-symbol walk-forward's split, on this symbol's rows.
        let plan = walk_forward::fold_plan(&params, ds, HOUR).unwrap();
        assert_eq!(w.folds.len(), plan.len(), "{symbol}");
        for (f, p) in w.folds.iter().zip(&plan) {
            assert_eq!(f.train_rows, p.train.len());
            assert_eq!(f.validation_rows, p.validation.len());
            let ts: Vec<i64> = p.test.iter().map(|&i| ds.frame.ts[i]).collect();
            assert_eq!(f.ts, ts);
        }
    }
    // Each fold's model is one pooled model: both symbols' folds carry its best iteration, and
    // together each fold is the symbols' test rows one after the other.
    for (k, t) in wf.together.folds.iter().enumerate() {
        let (a, b) = (&wf.by_symbol[0].1.folds[k], &wf.by_symbol[1].1.folds[k]);
        assert_eq!(a.best_iteration, b.best_iteration);
        assert_eq!(t.train_rows, a.train_rows + b.train_rows);
        let mut y = a.realized.clone();
        y.extend(&b.realized);
        assert_eq!(t.realized, y);
    }
    let y: Vec<f64> = wf
        .together
        .folds
        .iter()
        .flat_map(|f| f.realized.clone())
        .collect();
    let h: Vec<f64> = wf
        .together
        .folds
        .iter()
        .flat_map(|f| f.forecasts[0].1.clone())
        .collect();
    assert_eq!(wf.together.pooled[0].0, "model");
    assert_eq!(wf.together.pooled[0].1, metrics::score(&y, &h));
    // The baselines are per symbol: refitted on each symbol's own history.
    assert!(
        wf.by_symbol
            .iter()
            .all(|(_, w)| w.pooled_score("har_rv").is_some())
    );

    // A bar the model clearly clears (its QLIKE at most 50 % above the best baseline's) and
    // one it clearly misses (50 % below), everything else lowered out of the way.
    let lax = rps_core::params::AcceptanceParams {
        qlike_gain: -0.5,
        mse_var_tolerance: 100.0,
        median_r2_log_gain: -1.0,
        coverage_tolerance: 0.99,
        tercile_coverage_tolerance: 0.99,
        interval_score_gain: -1.0,
        enforce: true,
    };
    let wins = wf.verdicts(&lax);
    let scopes: Vec<&str> = wins.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(scopes, [TOGETHER, "SYN-A", "SYN-B"]);
    assert!(wins.iter().all(|(_, v)| v.passed), "{wins:#?}");
    let strict = rps_core::params::AcceptanceParams {
        qlike_gain: 0.5,
        ..lax.clone()
    };
    let loses = wf.verdicts(&strict);
    for (scope, v) in &loses {
        assert!(!v.passed, "{scope}");
        assert_eq!(v.outcome().failed, [Criterion::MeanQlike], "{scope}");
    }
    // The rule on each scope is the per-symbol rule on that scope's walk-forward.
    assert_eq!(loses[1].1, wf.by_symbol[0].1.verdict(&strict).unwrap());

    // One rule gates the decision: passing everywhere says so; a failure on one symbol only
    // keeps the challenger out when enforced, and names the symbol.
    let as_scopes = |v: &[(String, Verdict)]| -> Vec<(Option<String>, Verdict)> {
        v.iter()
            .map(|(s, v)| (Some(s.clone()), v.clone()))
            .collect()
    };
    let first = decide(1, 0.5, None, PrimaryMetric::Qlike, 0.0);
    let gate_with = |v: &[(Option<String>, Verdict)], enforce: bool| {
        let s: Vec<Scoped<'_>> = v.iter().map(|(n, v)| (n.as_deref(), v)).collect();
        gate_scopes(first.clone(), Some(&s), enforce)
    };
    let d = gate_with(&as_scopes(&wins), true);
    assert!(d.promoted, "{}", d.reason);
    assert!(
        d.reason.ends_with(
            "passes every acceptance criterion on all symbols together and on each symbol"
        ),
        "{}",
        d.reason
    );
    let mut mixed = wins.clone();
    mixed[2] = loses[2].clone();
    let kept = gate_with(&as_scopes(&mixed), true);
    assert!(!kept.promoted);
    insta::assert_snapshot!("pooled_gate_enforced", kept.reason);
    let told = gate_with(&as_scopes(&mixed), false);
    assert!(told.promoted);
    insta::assert_snapshot!("pooled_gate_reported", told.reason);
    // Without a walk-forward, as in the per-symbol stage: not checked.
    let none = gate_scopes(first.clone(), None, true);
    assert!(none.promoted && none.reason.contains("not checked"));

    // The reports: the pooled table's column and the walk-forward section.
    let md = pooled_walk_forward_markdown(&wf, &loses, &params);
    assert!(
        md.contains("## Walk-forward: 3 folds, a pooled model per fold"),
        "{md}"
    );
    for scope in [TOGETHER, "SYN-A", "SYN-B"] {
        assert!(md.contains(&format!("| {scope} | ")), "{md}");
        assert!(md.contains(&format!("### {scope}\n")), "{md}");
    }
    assert_eq!(md.matches("| **fails** 1 of 7 |").count(), 3, "{md}");
}

/// The pooled report's table with the acceptance column, on hand-made numbers.
#[test]
fn pooled_report_gives_each_symbols_acceptance() {
    let info = VersionInfo {
        name: "syn-volatility".to_owned(),
        version: 2,
        created_at: String::new(),
        run_id: String::new(),
        data_hash: String::new(),
        git_commit: String::new(),
        metrics: BTreeMap::new(),
    };
    let sym = |s: &str, acceptance: Option<Outcome>| SymbolEvaluation {
        symbol: s.to_owned(),
        rows: 480,
        challenger: 0.5,
        champion: Some(0.52),
        improvement: Some(0.0385),
        qlike: BTreeMap::from([
            ("model".to_owned(), 0.5),
            ("har_rv".to_owned(), 0.55),
            ("ewma".to_owned(), 0.6),
        ]),
        blocks: false,
        reason: String::new(),
        acceptance,
    };
    let per_symbol = vec![
        sym(
            "SYN-A",
            Some(Outcome {
                passed: true,
                failed: Vec::new(),
            }),
        ),
        sym(
            "SYN-B",
            Some(Outcome {
                passed: false,
                failed: vec![Criterion::MeanQlike, Criterion::Coverage90],
            }),
        ),
        sym("SYN-C", None),
    ];
    let d = decide(2, 0.5, Some((1, 0.52)), PrimaryMetric::Qlike, 0.0);
    insta::assert_snapshot!(pooled::markdown_pooled(&info, &d, &per_symbol));
}

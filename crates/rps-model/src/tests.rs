//! Unit tests of the model crate.
#![allow(clippy::unwrap_used)]

use super::*;
use rps_core::params::{Calibration, TargetTransform, Task, TrainParams};
use rps_core::signal::{Signal, SignalParams};

fn data(n: usize, seed: u64) -> (Rows, Vec<f64>) {
    let mut x = Vec::new();
    let mut y = Vec::new();
    let mut s = seed;
    for _ in 0..n {
        let mut row = Vec::new();
        for _ in 0..3 {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            row.push(((s >> 33) as f64 / f64::from(u32::MAX)) * 2.0 - 1.0);
        }
        y.push((0.01 * (1.0 + row[0] * 0.5 + row[1] * row[1])).max(1e-4));
        #[allow(clippy::cast_possible_truncation)]
        x.extend(row.iter().map(|v| *v as f32));
    }
    (
        Rows {
            values: x,
            n_rows: n,
            n_cols: 3,
        },
        y,
    )
}

#[test]
fn trains_predicts_and_round_trips_in_each_transform() {
    let (xt, yt) = data(800, 1);
    let (xv, yv) = data(200, 2);
    let names: Vec<String> = ["a", "b", "c"].map(str::to_owned).to_vec();
    for transform in [
        TargetTransform::Log,
        TargetTransform::Variance,
        TargetTransform::Power,
        TargetTransform::Identity,
    ] {
        let mut p = TrainParams {
            target_transform: transform,
            num_boost_round: 300,
            early_stopping_rounds: 20,
            ..TrainParams::default()
        };
        p.xgboost.insert("eta".to_owned(), serde_json::json!(0.1));
        let (m, h) = VolatilityModel::train(&p, &names, 1e-4, (&xt, &yt), (&xv, &yv)).unwrap();
        assert!(!h.validation.is_empty());
        assert!(
            h.validation.last().unwrap() < h.validation.first().unwrap(),
            "{transform:?} learns"
        );
        let pred = m.predict(&xv).unwrap();
        let mse: f64 = pred
            .iter()
            .zip(&yv)
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f64>()
            / yv.len() as f64;
        let var: f64 = {
            let m = yv.iter().sum::<f64>() / yv.len() as f64;
            yv.iter().map(|v| (v - m).powi(2)).sum::<f64>() / yv.len() as f64
        };
        assert!(mse < 0.3 * var, "{transform:?}: mse {mse} vs var {var}");
        for bytes in [m.to_xgboost_json().unwrap(), m.to_xgboost_ubj().unwrap()] {
            let q = m.quantile_booster().map(|q| q.to_xgboost_ubj().unwrap());
            let back = VolatilityModel::from_parts(&bytes, q.as_deref(), m.meta.clone()).unwrap();
            assert_eq!(back.forecast(&xv).unwrap(), m.forecast(&xv).unwrap());
            assert_eq!(back.predict_raw(&xv).unwrap(), m.predict_raw(&xv).unwrap());
        }
        let one = m.predict_one(&xv.values[..3]).unwrap();
        assert!((one - pred[0]).abs() < 1e-6 * pred[0].abs().max(1.0));
        assert!(matches!(
            m.predict_one(&[0.0]),
            Err(ModelError::Width {
                got: 1,
                expected: 3
            })
        ));
    }
}

/// Rows whose log volatility is linear in column 0 (a log-volatility feature) plus a bump
/// in column 1, with column 0 drawn from `[lo, hi]`.
fn log_linear(n: usize, seed: u64, lo: f64, hi: f64) -> (Rows, Vec<f64>) {
    let (x, _) = data(n, seed);
    let mut values = x.values.clone();
    let mut y = Vec::new();
    for r in 0..n {
        // `data` draws from [-1, 0).
        let u = f64::from(values[r * 3]) + 1.0;
        let l = lo + (hi - lo) * u;
        #[allow(clippy::cast_possible_truncation)]
        {
            values[r * 3] = l as f32;
        }
        let bump = if values[r * 3 + 1] > -0.5 { 0.3 } else { 0.0 };
        y.push((0.9 * l - 0.4 + bump).exp());
    }
    (
        Rows {
            values,
            n_rows: n,
            n_cols: 3,
        },
        y,
    )
}

#[test]
fn a_base_margin_extrapolates_and_round_trips() {
    let names: Vec<String> = ["lv", "b", "c"].map(str::to_owned).to_vec();
    // Training levels ln σ in [-6, -4]; the test level -8 was never seen.
    let (xt, yt) = log_linear(800, 1, -6.0, -4.0);
    let (xv, yv) = log_linear(200, 2, -6.0, -4.0);
    let (xs, ys) = log_linear(200, 3, -8.0, -7.5);
    for transform in [
        TargetTransform::Log,
        TargetTransform::Variance,
        TargetTransform::Power,
    ] {
        let mut p = TrainParams {
            target_transform: transform,
            num_boost_round: 300,
            early_stopping_rounds: 20,
            calibration: Calibration::None,
            ..TrainParams::default()
        };
        p.xgboost.insert("eta".to_owned(), serde_json::json!(0.1));
        let (plain, _) = VolatilityModel::train(&p, &names, 1e-6, (&xt, &yt), (&xv, &yv)).unwrap();
        p.base_margin = vec!["lv".to_owned()];
        let (m, _) = VolatilityModel::train(&p, &names, 1e-6, (&xt, &yt), (&xv, &yv)).unwrap();
        let coef = &m.meta.margin.as_ref().unwrap().coefficients;
        assert!(
            (coef[1] - 0.9).abs() < 0.05,
            "{transform:?}: slope {coef:?}"
        );
        let log_err = |pred: &[f64]| {
            pred.iter()
                .zip(&ys)
                .map(|(a, b)| (a.ln() - b.ln()).abs())
                .sum::<f64>()
                / ys.len() as f64
        };
        let (with, without) = (
            log_err(&m.predict(&xs).unwrap()),
            log_err(&plain.predict(&xs).unwrap()),
        );
        assert!(
            with < 0.1 && without > 1.0,
            "{transform:?}: mean |log error| {with} with the margin, {without} without"
        );
        // The documented mapping from the raw output (what XGBoost's predict returns).
        let raw = m.predict_raw(&xs).unwrap();
        let pred = m.predict(&xs).unwrap();
        for r in 0..5 {
            let l = coef[0] + coef[1] * f64::from(xs.values[r * 3]);
            let want = match transform {
                TargetTransform::Log => (raw[r] + l).exp(),
                TargetTransform::Power => raw[r] / 100.0 * l.exp(), // k = 1
                _ => raw[r].sqrt() / 100.0 * l.exp(),
            } * m.meta.smearing;
            assert!((pred[r] - want).abs() < 1e-9 * want, "{transform:?}");
        }
        let meta: ModelMeta = serde_json::from_slice(&m.meta_json().unwrap()).unwrap();
        let q = m.quantile_booster().map(|q| q.to_xgboost_json().unwrap());
        let back =
            VolatilityModel::from_parts(&m.to_xgboost_json().unwrap(), q.as_deref(), meta).unwrap();
        assert_eq!(back.predict(&xs).unwrap(), pred);
        let one = m.predict_one(&xs.values[..3]).unwrap();
        assert!((one - pred[0]).abs() < 1e-6 * pred[0]);
    }
}

#[test]
fn the_margin_records_duans_smearing_and_har_rv_is_its_smeared_level() {
    let names: Vec<String> = ["lv", "b", "c"].map(str::to_owned).to_vec();
    let (xt, yt) = log_linear(800, 1, -6.0, -4.0);
    let (xv, yv) = log_linear(200, 2, -6.0, -4.0);
    let mut p = TrainParams {
        target_transform: TargetTransform::Log,
        num_boost_round: 20,
        calibration: Calibration::None,
        ..TrainParams::default()
    };
    p.base_margin = vec!["lv".to_owned()];
    let (m, _) = VolatilityModel::train(&p, &names, 1e-6, (&xt, &yt), (&xv, &yv)).unwrap();
    let margin = m.meta.margin.clone().unwrap();
    // Duan: the mean of exp(residual) of the OLS of ln σ on the terms, over the training rows.
    let l =
        |r: usize| margin.coefficients[0] + margin.coefficients[1] * f64::from(xt.values[r * 3]);
    let duan = (0..xt.n_rows)
        .map(|r| (yt[r].ln() - l(r)).exp())
        .sum::<f64>()
        / xt.n_rows as f64;
    let s = margin.smearing.unwrap();
    assert!((s - duan).abs() < 1e-9 * duan, "{s} vs {duan}");
    // The bump of 0.3 on part of the rows leaves positive residual spread: smearing > 1.
    assert!(s > 1.0, "{s}");
    for r in 0..5 {
        let row = &xt.values[r * 3..r * 3 + 3];
        let want = (m.margin_of(row).exp() * s).max(1e-6);
        assert!((m.har_rv_of(row).unwrap() - want).abs() < 1e-12 * want);
    }
    // A model saved before the smearing was recorded: no har_rv, the rest unchanged.
    let mut json: serde_json::Value = serde_json::from_slice(&m.meta_json().unwrap()).unwrap();
    json["margin"].as_object_mut().unwrap().remove("smearing");
    let old: ModelMeta = serde_json::from_value(json).unwrap();
    assert_eq!(old.margin.as_ref().unwrap().smearing, None);
    let q = m.quantile_booster().map(|q| q.to_xgboost_json().unwrap());
    let back =
        VolatilityModel::from_parts(&m.to_xgboost_json().unwrap(), q.as_deref(), old).unwrap();
    assert_eq!(back.har_rv_of(&xt.values[..3]), None);
    assert_eq!(back.predict(&xv).unwrap(), m.predict(&xv).unwrap());
}

#[test]
fn the_power_grid_keeps_the_most_qlike_minded_exponent_that_holds_log_accuracy() {
    let names: Vec<String> = ["lv", "b", "c"].map(str::to_owned).to_vec();
    let (xt, yt) = log_linear(800, 1, -6.0, -4.0);
    let (xv, yv) = log_linear(200, 2, -6.0, -4.0);
    let mut p = TrainParams {
        target_transform: TargetTransform::Power,
        power_grid: vec![2.0, 0.5, 1.0],
        num_boost_round: 100,
        early_stopping_rounds: 20,
        calibration: Calibration::None,
        ..TrainParams::default()
    };
    assert!(matches!(
        VolatilityModel::train(&p, &names, 1e-6, (&xt, &yt), (&xv, &yv)),
        Err(ModelError::GridWithoutMargin)
    ));
    p.base_margin = vec!["lv".to_owned()];
    let (m, _) = VolatilityModel::train(&p, &names, 1e-6, (&xt, &yt), (&xv, &yv)).unwrap();
    let sel = m.meta.selection.clone().unwrap();
    let powers: Vec<f64> = sel.candidates.iter().map(|c| c.power).collect();
    assert_eq!(powers, [0.5, 1.0, 2.0], "tried in increasing order");
    let ok: Vec<f64> = sel
        .candidates
        .iter()
        .filter(|c| c.validation_r2_log >= sel.benchmark_r2_log)
        .map(|c| c.power)
        .collect();
    // Noise-free data: the trees add the bump, so every exponent beats the linear base.
    assert_eq!(ok.len(), 3, "{sel:?}");
    assert_eq!(m.meta.power, Some(2.0));
    let meta: ModelMeta = serde_json::from_slice(&m.meta_json().unwrap()).unwrap();
    assert_eq!(meta, m.meta);
    p.power = 3.0;
    p.power_grid.clear();
    assert!(matches!(
        VolatilityModel::train(&p, &names, 1e-6, (&xt, &yt), (&xv, &yv)),
        Err(ModelError::Power(_))
    ));
}

#[test]
fn calibration_scales_to_validation() {
    let (xt, yt) = data(800, 1);
    let (xv, yv) = data(200, 2);
    let names: Vec<String> = ["a", "b", "c"].map(str::to_owned).to_vec();
    let mut p = TrainParams {
        num_boost_round: 50,
        ..TrainParams::default()
    };
    let mut fits = Vec::new();
    for c in [Calibration::None, Calibration::Duan, Calibration::Qlike] {
        p.calibration = c;
        let (m, _) = VolatilityModel::train(&p, &names, 1e-4, (&xt, &yt), (&xv, &yv)).unwrap();
        fits.push(m);
    }
    assert_eq!(fits[0].meta.smearing, 1.0);
    let base = fits[0].predict(&xv).unwrap();
    let duan = yv.iter().zip(&base).map(|(y, h)| y / h).sum::<f64>() / yv.len() as f64;
    let q = (yv
        .iter()
        .zip(&base)
        .map(|(y, h)| (y / h).powi(2))
        .sum::<f64>()
        / yv.len() as f64)
        .sqrt();
    assert!((fits[1].meta.smearing - duan).abs() < 1e-9);
    assert!((fits[2].meta.smearing - q).abs() < 1e-9);
    assert!(
        q >= duan,
        "Jensen: the variance scale is at least the volatility one"
    );
    // The QLIKE scale minimises validation QLIKE over scale factors.
    let qlike = |m: &VolatilityModel, k: f64| {
        let pred = m.predict(&xv).unwrap();
        yv.iter()
            .zip(&pred)
            .map(|(y, h)| rps_core::metrics::qlike_one(*y, h * k))
            .sum::<f64>()
    };
    for k in [0.9, 1.1] {
        assert!(qlike(&fits[2], 1.0) < qlike(&fits[2], k));
    }
}

#[test]
fn bad_parameters_are_named() {
    let (xt, yt) = data(50, 1);
    let mut p = TrainParams::default();
    p.xgboost
        .insert("max_dept".to_owned(), serde_json::json!(3));
    let err = VolatilityModel::train(
        &p,
        &["a".into(), "b".into(), "c".into()],
        1e-4,
        (&xt, &yt),
        (&xt, &yt),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("max_dept"), "{err}");
}

#[test]
fn a_signal_model_learns_three_classes_and_round_trips() {
    let names: Vec<String> = ["a", "b", "c"].map(str::to_owned).to_vec();
    let classes = |x: &Rows| -> Vec<Signal> {
        (0..x.n_rows)
            .map(|r| match x.values[r * 3] {
                v if v > 0.3 => Signal::Buy,
                v if v < -0.3 => Signal::Sell,
                _ => Signal::Hold,
            })
            .collect()
    };
    let (xt, _) = data(900, 1);
    let (xv, _) = data(300, 2);
    let (yt, yv) = (classes(&xt), classes(&xv));
    let mut p = TrainParams {
        num_boost_round: 200,
        early_stopping_rounds: 20,
        ..TrainParams::default()
    };
    p.xgboost.insert("eta".to_owned(), serde_json::json!(0.3));
    let sp = SignalParams::default();
    let (m, h) = SignalModel::train(&p, &sp, &names, (&xt, &yt), (&xv, &yv)).unwrap();
    assert_eq!(h.metric, "mlogloss");
    assert!(h.validation.last().unwrap() < h.validation.first().unwrap());
    let proba = m.predict_proba(&xv).unwrap();
    assert_eq!(proba.len(), xv.n_rows);
    for row in &proba {
        assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-5, "{row:?}");
    }
    let pred = m.predict(&xv).unwrap();
    let s = rps_core::signal::score(&yv, &pred);
    assert!(s.accuracy > 0.9, "{s:?}");
    assert_eq!(m.meta.task, Task::Signal);
    assert_eq!(
        m.meta.signal.as_ref().unwrap().classes,
        ["sell", "hold", "buy"]
    );
    let meta: ModelMeta = serde_json::from_slice(&m.meta_json().unwrap()).unwrap();
    assert_eq!(meta, m.meta);
    for bytes in [m.to_xgboost_json().unwrap(), m.to_xgboost_ubj().unwrap()] {
        let back = SignalModel::from_parts(&bytes, meta.clone()).unwrap();
        assert_eq!(back.predict_proba(&xv).unwrap(), proba);
    }
    let one = m.predict_proba_one(&xv.values[..3]).unwrap();
    assert_eq!(one, proba[0]);
    assert!(matches!(
        SignalModel::train(&p, &sp, &names, (&xt, &yt[1..]), (&xv, &yv)),
        Err(ModelError::Labels { .. })
    ));
    // A volatility model's files are refused, and its meta.json does not change.
    let (vm, _) = VolatilityModel::train(
        &TrainParams {
            num_boost_round: 5,
            ..TrainParams::default()
        },
        &names,
        1e-4,
        (&xt, &vec![0.01; xt.n_rows]),
        (&xv, &vec![0.01; xv.n_rows]),
    )
    .unwrap();
    assert!(matches!(
        SignalModel::from_parts(&vm.to_xgboost_json().unwrap(), vm.meta.clone()),
        Err(ModelError::Task { .. })
    ));
    let text = String::from_utf8(vm.meta_json().unwrap()).unwrap();
    assert!(
        !text.contains("\"task\"") && !text.contains("\"signal\""),
        "{text}"
    );
    // ... and the other way round; `Model` loads either by its meta.json.
    let sbytes = m.to_xgboost_ubj().unwrap();
    assert!(matches!(
        VolatilityModel::from_parts(&sbytes, None, m.meta.clone()),
        Err(ModelError::Task { .. })
    ));
    let any = Model::from_parts(&sbytes, None, m.meta.clone()).unwrap();
    assert_eq!(any.task(), Task::Signal);
    assert_eq!(
        any.predict_one(&xv.values[..3]).unwrap(),
        Forecast::Signal {
            signal: rps_core::signal::argmax(&proba[0]),
            probabilities: proba[0],
        }
    );
    assert!(any.clone().into_volatility().is_err());
    assert!(any.into_signal().is_ok());
    let vq = vm.quantile_booster().map(|q| q.to_xgboost_ubj().unwrap());
    let any = Model::from_parts(
        &vm.to_xgboost_ubj().unwrap(),
        vq.as_deref(),
        vm.meta.clone(),
    )
    .unwrap();
    assert_eq!(
        any.predict_one(&xv.values[..3]).unwrap(),
        Forecast::Volatility(vm.forecast_one(&xv.values[..3]).unwrap())
    );
    // A meta.json that lists quantile levels without the booster is refused.
    if vm.meta.quantiles.is_some() {
        assert!(matches!(
            Model::from_parts(&vm.to_xgboost_ubj().unwrap(), None, vm.meta.clone()),
            Err(ModelError::QuantileMissing(_))
        ));
    }
    assert!(any.into_signal().is_err());
}

/// Rows whose ln σ has location 0.8·a and a scale that grows with b (a volatility regime), plus
/// noise from a fixed LCG.
fn noisy(n: usize, seed: u64) -> (Rows, Vec<f64>) {
    let (x, _) = data(n, seed);
    let mut s = seed ^ 0x9e37_79b9;
    let mut unif = || {
        s = s
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    let y = (0..n)
        .map(|r| {
            let (a, b) = (f64::from(x.values[r * 3]), f64::from(x.values[r * 3 + 1]));
            // A logistic draw: heavy enough tails, closed-form quantiles.
            let u = unif();
            let e = (u / (1.0 - u)).ln();
            (-4.6 + 0.8 * a + (0.15 + 0.25 * (b + 1.0)) * e).exp()
        })
        .collect();
    (x, y)
}

#[test]
fn the_quantile_booster_is_calibrated_monotone_and_adaptive() {
    let (xt, yt) = noisy(4000, 11);
    let (xv, yv) = noisy(1500, 12);
    let (xs, ys) = noisy(3000, 13);
    let names: Vec<String> = ["a", "b", "c"].map(str::to_owned).to_vec();
    let p = TrainParams {
        target_transform: TargetTransform::Power,
        power: 2.0,
        base_margin: vec!["a".into()],
        num_boost_round: 400,
        early_stopping_rounds: 30,
        ..TrainParams::default()
    };
    let (m, _) = VolatilityModel::train(&p, &names, 1e-6, (&xt, &yt), (&xv, &yv)).unwrap();
    let qm = m.meta.quantiles.as_ref().unwrap();
    assert_eq!(qm.levels, rps_core::params::DEFAULT_QUANTILES.to_vec());
    assert_eq!(qm.n_calibration, 1500);
    let f = m.forecast(&xs).unwrap();
    for v in &f {
        let q = v.quantiles.as_ref().unwrap();
        assert!(q.values.windows(2).all(|w| w[0] <= w[1]), "no crossing");
        assert!(v.median().unwrap() > 0.0 && v.mean > 0.0);
    }
    // Coverage of the 80 % and 90 % intervals on fresh rows, within sampling error.
    let cover = |c: f64, rows: &dyn Fn(usize) -> bool| {
        let (mut n, mut k) = (0, 0);
        for (r, v) in f.iter().enumerate() {
            if rows(r) {
                let (lo, hi) = v.interval(c).unwrap();
                n += 1;
                k += usize::from(ys[r] >= lo && ys[r] <= hi);
            }
        }
        f64::from(u32::try_from(k).unwrap()) / f64::from(u32::try_from(n).unwrap())
    };
    let all = |_| true;
    assert!(
        (cover(0.8, &all) - 0.8).abs() < 0.03,
        "{}",
        cover(0.8, &all)
    );
    assert!(
        (cover(0.9, &all) - 0.9).abs() < 0.03,
        "{}",
        cover(0.9, &all)
    );
    // Adaptive: calm (b low) and turbulent (b high) rows are both covered, with wider bands
    // where the scale is larger.
    let b = |r: usize| f64::from(xs.values[r * 3 + 1]);
    let mut sorted: Vec<f64> = (0..f.len()).map(b).collect();
    sorted.sort_by(f64::total_cmp);
    let (t1, t2) = (sorted[f.len() / 3], sorted[2 * f.len() / 3]);
    let calm = |r| b(r) < t1;
    let wild = |r| b(r) > t2;
    assert!(
        (cover(0.8, &calm) - 0.8).abs() < 0.06,
        "{}",
        cover(0.8, &calm)
    );
    assert!(
        (cover(0.8, &wild) - 0.8).abs() < 0.06,
        "{}",
        cover(0.8, &wild)
    );
    let log_width = |rows: &dyn Fn(usize) -> bool| {
        let w: Vec<f64> = (0..f.len())
            .filter(|&r| rows(r))
            .map(|r| {
                let (lo, hi) = f[r].interval(0.8).unwrap();
                (hi / lo).ln()
            })
            .collect();
        w.iter().sum::<f64>() / w.len() as f64
    };
    assert!(log_width(&wild) > 1.5 * log_width(&calm));
    // Saved and loaded, the distribution is the same.
    let q = m.quantile_booster().unwrap();
    let back = VolatilityModel::from_parts(
        &m.to_xgboost_ubj().unwrap(),
        Some(&q.to_xgboost_ubj().unwrap()),
        serde_json::from_slice(&m.meta_json().unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(back.forecast(&xs).unwrap(), f);
    assert_eq!(back.forecast_one(&xs.values[..3]).unwrap(), f[0]);
}

use super::*;
use rps_core::walkforward::Window;

const H: i64 = 3_600_000;

fn wf(folds: usize, window: Window) -> WalkForwardParams {
    WalkForwardParams {
        folds,
        test_fraction: 0.4,
        test_start: None,
        validation_fraction: 0.2,
        gap: 24,
        window,
    }
}

/// Hourly bar times `0..n` without `missing`, and usable flags (false on `unusable`).
fn timeline(
    n: i64,
    missing: std::ops::Range<i64>,
    unusable: std::ops::Range<i64>,
) -> (Vec<i64>, Vec<bool>) {
    let ts: Vec<i64> = (0..n)
        .filter(|i| !missing.contains(i))
        .map(|i| i * H)
        .collect();
    let usable = ts.iter().map(|t| !unusable.contains(&(t / H))).collect();
    (ts, usable)
}

#[test]
fn with_one_symbol_the_time_folds_are_the_walk_forward_folds() {
    let (ts, usable) = timeline(1010, 300..310, 500..505);
    for window in [Window::Expanding, Window::Rolling] {
        let p = wf(5, window);
        let want = folds(&ts, &usable, H, 1, &p).unwrap();
        let got = time_folds(&[(&ts, &usable)], H, 1, &p).unwrap();
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(&g.rows(&ts, &usable), w, "{window:?}");
        }
    }
}

#[test]
fn every_symbol_is_cut_at_the_same_hours() {
    // A has a gap and unusable rows early, B starts later and misses other bars.
    let (ta, ua) = timeline(1200, 300..340, 500..505);
    let (tb, ub) = timeline(1200, 900..930, 0..60);
    let p = wf(4, Window::Expanding);
    let plan = time_folds(&[(&ta, &ua), (&tb, &ub)], H, 1, &p).unwrap();
    assert_eq!(plan.len(), 4);
    for (ts, usable) in [(&ta, &ua), (&tb, &ub)] {
        let mut tested = Vec::new();
        for (k, tf) in plan.iter().enumerate() {
            let f = tf.rows(ts, usable);
            assert!(!f.train.is_empty() && !f.validation.is_empty() && !f.test.is_empty());
            let t0 = ts[f.test[0]];
            assert!(t0 >= tf.test_from && ts[*f.test.last().unwrap()] < tf.test_to);
            // Purged by more than `gap` bars, as rps_core::walkforward does.
            assert!(ts[*f.train.last().unwrap()] + 24 * H < ts[f.validation[0]]);
            assert!(ts[*f.validation.last().unwrap()] + 24 * H < t0);
            assert!(
                f.train
                    .iter()
                    .chain(&f.validation)
                    .chain(&f.test)
                    .all(|&i| usable[i])
            );
            if k + 1 < plan.len() {
                assert_eq!(tf.test_to, plan[k + 1].test_from, "consecutive blocks");
            }
            tested.extend(f.test);
        }
        // The test blocks together are every usable row from the first block's start on.
        let want: Vec<usize> = (0..ts.len())
            .filter(|&i| usable[i] && ts[i] >= plan[0].test_from)
            .collect();
        assert_eq!(tested, want);
    }
    // 40 % of the union's usable hours are tested: every hour, since each symbol's holes are
    // usable hours of the other.
    let union = 1200;
    let n_test = (0..1200).filter(|&i| i * H >= plan[0].test_from).count();
    assert_eq!(n_test, (union as f64 * 0.4).round() as usize);
}

/// A frame with features `a`, `b`, targets `10·row + offset` and bars at `ts`.
fn frame(ts: Vec<i64>, offset: f64) -> FeatureFrame {
    let n = ts.len();
    FeatureFrame {
        names: vec!["a".to_owned(), "b".to_owned()],
        columns: vec![
            (0..n).map(|i| i as f64 + offset).collect(),
            (0..n).map(|i| -(i as f64) - offset).collect(),
        ],
        bar_vol: vec![0.01; n],
        target: (0..n).map(|i| 10.0 * i as f64 + offset).collect(),
        present: vec![true; n],
        ts,
    }
}

#[test]
fn stacking_keeps_every_row_its_values_and_its_symbol() {
    let symbols = vec![
        Symbol {
            name: "X".to_owned(),
            frame: frame((0..6).map(|i| i * H).collect(), 0.5),
        },
        Symbol {
            name: "Y".to_owned(),
            frame: frame((0..4).map(|i| i * H).collect(), 100.25),
        },
    ];
    let d: Vec<Design> = (0..2)
        .map(|k| design(&symbols, k, true, &[]).unwrap())
        .collect();
    assert_eq!(d[0].names, ["a", "b", "symbol_X", "symbol_Y"]);
    assert_eq!(d[0].names, d[1].names);
    let (ix, iy): (Vec<usize>, Vec<usize>) = (vec![1, 2, 5], vec![0, 3]);
    let (rows, y) = stack(&[
        (&d[0], &symbols[0].frame, &ix),
        (&d[1], &symbols[1].frame, &iy),
    ]);
    assert_eq!((rows.n_rows, rows.n_cols), (5, 4));
    assert_eq!(rows.values.len(), 20);
    let want: Vec<(usize, usize)> = ix
        .iter()
        .map(|&i| (0, i))
        .chain(iy.iter().map(|&i| (1, i)))
        .collect();
    for (r, &(k, i)) in want.iter().enumerate() {
        let row = &rows.values[r * 4..(r + 1) * 4];
        let f = &symbols[k].frame;
        assert_eq!(row[0], f.columns[0][i] as f32);
        assert_eq!(row[1], f.columns[1][i] as f32);
        // The one-hot: 1 in the row's own symbol's column only.
        assert_eq!(row[2], if k == 0 { 1.0 } else { 0.0 });
        assert_eq!(row[3], if k == 1 { 1.0 } else { 0.0 });
        assert_eq!(y[r], f.target[i]);
    }
    // Without the one-hot, the features alone.
    assert_eq!(design(&symbols, 1, false, &[]).unwrap().names, ["a", "b"]);
}

#[test]
fn the_market_factor_is_the_other_symbols_value_at_the_same_hour() {
    // Y lacks hours 1 and 2 (no row) and has a NaN at hour 4; Z covers every hour.
    let mut y = frame(vec![0, 3 * H, 4 * H, 5 * H], 100.0);
    y.columns[0][2] = f64::NAN;
    let symbols = vec![
        Symbol {
            name: "X".to_owned(),
            frame: frame((0..6).map(|i| i * H).collect(), 0.0),
        },
        Symbol {
            name: "Y".to_owned(),
            frame: y,
        },
    ];
    let d = design(&symbols, 0, false, &["a".to_owned()]).unwrap();
    assert_eq!(d.names, ["a", "b", "market_a"]);
    let m = &d.columns[2];
    assert_eq!(m[0], 100.0);
    assert!(m[1].is_nan() && m[2].is_nan() && m[4].is_nan());
    assert_eq!(m[3], 101.0);
    assert_eq!(m[5], 103.0);
    // Y's factor is X's value at Y's hours.
    let d = design(&symbols, 1, false, &["a".to_owned()]).unwrap();
    assert_eq!(d.columns[2], [0.0, 3.0, 4.0, 5.0]);
    // With a third symbol, the mean of the others.
    let mut three = symbols.clone();
    three.push(Symbol {
        name: "Z".to_owned(),
        frame: frame((0..6).map(|i| i * H).collect(), 10.0),
    });
    let d = design(&three, 1, true, &["a".to_owned()]).unwrap();
    assert_eq!(
        d.names,
        ["a", "b", "symbol_X", "symbol_Y", "symbol_Z", "market_a"]
    );
    assert_eq!(d.columns[5], [5.0, 8.0, 9.0, 10.0]);
    assert!(matches!(
        design(&symbols, 0, false, &["nope".to_owned()]),
        Err(PooledError::UnknownTerm(_))
    ));
}

/// A symbol with an AR(1) log volatility around `level`: the HAR features and EWMA column the
/// default base margin and HAR terms need, on 1,500 hours.
fn synthetic(name: &str, level: f64, seed: u64) -> Symbol {
    let n = 1500;
    let mut state = seed;
    let mut noise = || {
        // xorshift: deterministic, no dependency.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % 10_000) as f64 / 10_000.0 - 0.5
    };
    let mut lv = vec![level; n + 1];
    for t in 1..=n {
        lv[t] = level + 0.8 * (lv[t - 1] - level) + 0.6 * noise();
    }
    let vol: Vec<f64> = lv.iter().map(|v| v.exp()).collect();
    let mean_log = |t: usize, w: usize| -> f64 {
        if t + 1 < w {
            return f64::NAN;
        }
        (vol[t + 1 - w..=t].iter().map(|v| v * v).sum::<f64>() / w as f64)
            .sqrt()
            .ln()
    };
    let names = ["har_1b", "har_4b", "har_24b", "har_168b", "ewma_vol_090"];
    let windows = [1, 4, 24, 168, 10];
    let frame = FeatureFrame {
        ts: (0..n as i64).map(|i| i * H).collect(),
        names: names.iter().map(|s| (*s).to_owned()).collect(),
        columns: windows
            .iter()
            .map(|&w| (0..n).map(|t| mean_log(t, w)).collect())
            .collect(),
        bar_vol: vol[..n].to_vec(),
        target: vol[1..].to_vec(),
        present: vec![true; n],
    };
    Symbol {
        name: name.to_owned(),
        frame,
    }
}

#[test]
fn per_symbol_is_the_walk_forward_model_and_pooled_models_see_the_symbol() {
    let mut params = Params::default();
    params.evaluate.walk_forward_folds = 2;
    params.train.num_boost_round = 60;
    params.train.early_stopping_rounds = 20;
    params.train.quantiles = vec![0.1, 0.9]; // ignored: the mean alone is compared
    let symbols = vec![synthetic("CALM", -6.0, 7), synthetic("WILD", -4.5, 11)];
    let market = vec!["har_1b".to_owned()];
    let cmp = compare(&params, &symbols, H, &market, &mut |_| {}).unwrap();
    assert_eq!(cmp.folds.len(), 2);
    let names: Vec<&str> = cmp.symbols[0]
        .forecasts
        .iter()
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "per_symbol",
            "per_symbol_market",
            "pooled",
            "pooled_market",
            "har_rv",
            "har_rv_log",
            "ewma",
            "persistence"
        ]
    );
    // Identical timelines: the folds are rps_core's, and per_symbol is exactly the model the
    // evaluate stage's walk-forward trains on a symbol's fold (same rows, same train: params).
    let sp = &params.split;
    let p = WalkForwardParams {
        folds: 2,
        test_fraction: params.evaluate.walk_forward_test_fraction,
        test_start: None,
        validation_fraction: sp.validation / (sp.train + sp.validation),
        gap: sp.gap,
        window: params.evaluate.walk_forward_window,
    };
    let train = rps_core::params::TrainParams {
        quantiles: Vec::new(),
        ..params.train.clone()
    };
    for (k, s) in symbols.iter().enumerate() {
        let f = &s.frame;
        let plan = folds(&f.ts, &f.usable(), H, 1, &p).unwrap();
        let r = &cmp.symbols[k];
        let mut want = Vec::new();
        let mut ts = Vec::new();
        for fold in &plan {
            let g = |idx: &[usize]| {
                (
                    Rows::gather(&f.columns, idx),
                    idx.iter().map(|&i| f.target[i]).collect::<Vec<_>>(),
                )
            };
            let ((xt, yt), (xv, yv)) = (g(&fold.train), g(&fold.validation));
            let (m, _) = VolatilityModel::train(
                &train,
                &f.names,
                params.target.floor,
                (&xt, &yt),
                (&xv, &yv),
            )
            .unwrap();
            want.extend(m.predict(&Rows::gather(&f.columns, &fold.test)).unwrap());
            ts.extend(fold.test.iter().map(|&i| f.ts[i]));
        }
        assert_eq!(r.ts, ts);
        assert_eq!(r.forecast("per_symbol").unwrap(), want.as_slice());
        for (n, v) in &r.forecasts {
            assert_eq!(v.len(), r.realized.len(), "{n}");
            assert!(v.iter().all(|x| x.is_finite() && *x > 0.0), "{n}");
        }
    }
    // The pooled model is one model for both symbols; the one-hot and the base margin let it
    // forecast each at its own level (the levels differ by exp(1.5)).
    let mean = |k: usize, n: &str| {
        let v = cmp.symbols[k].forecast(n).unwrap();
        v.iter().map(|x| x.ln()).sum::<f64>() / v.len() as f64
    };
    for n in ["pooled", "pooled_market"] {
        let gap = mean(1, n) - mean(0, n);
        assert!((gap - 1.5).abs() < 0.3, "{n}: {gap}");
    }
    assert!(
        cmp.folds[0]
            .best_iteration
            .iter()
            .any(|(n, _)| n == "pooled")
    );
    assert_eq!(cmp.folds[0].best_iteration.len(), 6);
    // QLIKE by group: each symbol's and every row's, per configuration.
    let q = cmp.qlike_by_group();
    assert_eq!(
        q.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["CALM", "WILD", "all"]
    );
    let r = &cmp.symbols[1];
    let want = metrics::score(&r.realized, r.forecast("pooled").unwrap()).qlike;
    assert!((q[1].1[2] - want).abs() < 1e-15);
    // The report has every section and a row per forecaster and symbol.
    let md = cmp.markdown();
    for s in [
        "### Folds",
        "**CALM**",
        "**WILD**",
        "**all symbols",
        "| pooled_market | all |",
        "### QLIKE per fold",
    ] {
        assert!(md.contains(s), "{s} in\n{md}");
    }
    assert_eq!(
        cmp.csv().lines().count(),
        1 + cmp.symbols.iter().map(|s| s.realized.len()).sum::<usize>()
    );
}

#[test]
fn pooling_needs_two_symbols_with_the_same_columns() {
    let params = Params::default();
    let one = vec![synthetic("A", -6.0, 3)];
    assert!(matches!(
        compare(&params, &one, H, &[], &mut |_| {}),
        Err(PooledError::TooFewSymbols(1))
    ));
    let mut two = vec![synthetic("A", -6.0, 3), synthetic("B", -6.0, 5)];
    two[1].frame.names[4] = "ewma_vol_080".to_owned();
    assert!(matches!(
        compare(&params, &two, H, &[], &mut |_| {}),
        Err(PooledError::Columns { .. })
    ));
}

#[test]
fn dm_across_symbols_averages_each_hours_differential() {
    let r = |name: &str, ts: Vec<i64>, a: Vec<f64>, b: Vec<f64>| SymbolResult {
        name: name.to_owned(),
        fold: vec![0; ts.len()],
        realized: vec![1.0; ts.len()],
        ts,
        forecasts: vec![("a".to_owned(), a), ("b".to_owned(), b)],
    };
    let x = r("X", vec![0, 1, 2], vec![1.0, 2.0, 1.0], vec![1.0, 1.0, 3.0]);
    let y = r("Y", vec![1, 2], vec![1.0, 1.0], vec![2.0, 1.0]);
    let d = dm_across(&[x.clone(), y.clone()], "a", "b", 0).unwrap();
    let q = |h: f64| qlike_one(1.0, h);
    // Hour 0: X only; hours 1 and 2: the mean of X's and Y's differentials.
    let want = [
        0.0,
        ((q(2.0) - q(1.0)) + (q(1.0) - q(2.0))) / 2.0,
        (q(1.0) - q(3.0)) / 2.0,
    ];
    assert!((d.mean_diff - want.iter().sum::<f64>() / 3.0).abs() < 1e-12);
    let single = dm_symbol(&x, "a", "b", 0).unwrap();
    assert!((single.mean_diff - (q(2.0) - q(1.0) + q(1.0) - q(3.0)) / 3.0).abs() < 1e-12);
    assert!(dm_symbol(&x, "a", "missing", 0).is_none());
}

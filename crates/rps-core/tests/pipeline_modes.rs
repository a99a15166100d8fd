//! Property tests of the one feature pipeline (issue #17): for random feature specs (with and
//! without the order-flow features, issue #16) and random candle series (gaps, flat bars, zero
//! volume, order-flow columns with missing values and zero trades), the online builder, the request path and the
//! batch frame give the same row for every bar, bit for bit; after a restart seeded from the
//! newest bars only the EWMA features differ, within the λ^h bound the docs state.

#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use rps_core::candle::{Candle, Interval};
use rps_core::features::{FeatureParams, TargetParams};
use rps_core::flow::Flow;
use rps_core::pipeline::{FeatureSpec, Online, request_row};
use rps_core::volatility::Estimator;

fn spec_strategy() -> impl Strategy<Value = FeatureSpec> {
    (
        prop::collection::vec(1usize..30, 0..4),
        prop::collection::vec(1usize..200, 0..5),
        2usize..50,
        0usize..4,
        prop::collection::vec(0.5f64..0.99, 0..4),
        prop::bool::ANY,
        -6.0f64..-2.0,
        1usize..4,
        prop::bool::ANY,
        prop::bool::ANY,
    )
        .prop_map(
            |(ret, har, long, days, lambdas, gk, floor, horizon, half_hour, flow)| FeatureSpec {
                bar: if half_hour {
                    Interval::M30
                } else {
                    Interval::H1
                },
                features: FeatureParams {
                    return_windows: ret,
                    har_windows: har,
                    long_window: long,
                    seasonal_days: days,
                    ewma_lambdas: lambdas,
                    flow: if flow { Flow::On } else { Flow::Off },
                },
                target: TargetParams {
                    estimator: if gk {
                        Estimator::GarmanKlass
                    } else {
                        Estimator::Parkinson
                    },
                    horizon,
                    floor: 10f64.powf(floor),
                },
            },
        )
}

/// A random walk on the bar grid with missing bars, flat (zero-range) bars and zero volume, and
/// the klines' order-flow columns: trade counts (some zero), taker-buy volume (some above the
/// volume), each column missing on some bars.
fn series_strategy(bar: Interval) -> impl Strategy<Value = Vec<Candle>> {
    prop::collection::vec(
        (
            (
                -0.03f64..0.03,
                0.0f64..0.02,
                0.0f64..0.02,
                0u8..20,
                0.0f64..50.0,
            ),
            (0u64..5000, 0.0f64..1.05, 0u8..12),
        ),
        1..500,
    )
    .prop_map(move |steps| {
        let mut out = Vec::with_capacity(steps.len());
        let mut price = 100.0;
        // 2021-03-01 05:00 UTC: not midnight, so time-of-day features vary from the start.
        let mut ts = 1_614_574_800_000;
        for ((ret, up, down, kind, volume), (trades, taker, flow_kind)) in steps {
            ts += bar.ms();
            let open = price;
            price *= 1.0 + ret;
            if kind == 0 {
                ts += bar.ms() * (1 + (volume as i64 % 40)); // a gap of 1..40 bars
            }
            let (high, low) = if kind == 1 {
                (price, price) // flat bar
            } else {
                (open.max(price) * (1.0 + up), open.min(price) * (1.0 - down))
            };
            let volume = if kind == 2 { 0.0 } else { volume };
            out.push(Candle {
                ts,
                open,
                high,
                low,
                close: price,
                volume,
                quote_volume: Some(volume * price),
                // 0: no columns; 1: no trade count; 2: no taker volume; 3: zero trades.
                trades: match flow_kind {
                    0 | 1 => None,
                    3 => Some(0),
                    _ => Some(trades),
                },
                taker_buy_volume: (!matches!(flow_kind, 0 | 2)).then_some(volume * taker),
                taker_buy_quote_volume: None,
            });
        }
        out
    })
}

fn spec_and_series() -> impl Strategy<Value = (FeatureSpec, Vec<Candle>)> {
    spec_strategy().prop_flat_map(|s| {
        let bar = s.bar;
        (Just(s), series_strategy(bar))
    })
}

fn same(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

fn slot(spec: &FeatureSpec, bars: &[Candle], i: usize) -> usize {
    usize::try_from((bars[i].ts - bars[0].ts) / spec.bar.ms()).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// online == request == batch, bit for bit, for every bar.
    #[test]
    fn three_modes_one_row((spec, bars) in spec_and_series()) {
        let batch = spec.frame(&bars);
        let names = spec.names();
        prop_assert_eq!(&batch.names, &names);
        let mut online = Online::new(&spec, spec.lookback() + 1).unwrap();
        for (i, c) in bars.iter().enumerate() {
            let row = online.push(*c).unwrap();
            let want = batch.row(slot(&spec, &bars, i));
            prop_assert_eq!(row.ts, c.ts);
            // The request path builds every row of the prefix: check a sample of bars.
            let req = (i % 17 == 0 || i + 1 == bars.len()).then(|| request_row(&spec, &bars[..=i]).unwrap());
            for (j, name) in names.iter().enumerate() {
                prop_assert!(same(row.values[j], want[j]),
                    "bar {} {}: online {} batch {}", i, name, row.values[j], want[j]);
                if let Some(r) = &req {
                    prop_assert!(same(r.values[j], want[j]),
                        "bar {} {}: request {} batch {}", i, name, r.values[j], want[j]);
                }
            }
            prop_assert!(online.push(*c).is_none(), "a replayed bar gives no row");
        }
    }

    /// Seeded with a prefix, then pushed the rest: the same rows as batch, bit for bit.
    #[test]
    fn seeding_is_pushing_without_rows((spec, bars) in spec_and_series(), cut in 0.0f64..1.0) {
        let batch = spec.frame(&bars);
        let at = ((bars.len() as f64) * cut) as usize;
        let mut online = Online::new(&spec, spec.lookback() + 1).unwrap();
        online.seed(bars[..at].iter().copied());
        for i in at..bars.len() {
            let row = online.push(bars[i]).unwrap();
            let want = batch.row(slot(&spec, &bars, i));
            for (j, (a, b)) in row.values.iter().zip(&want).enumerate() {
                prop_assert!(same(*a, *b), "bar {} feature {}: {} != {}", i, j, a, b);
            }
        }
    }

    /// A restart seeded with the newest `h` bars only: every non-EWMA feature is exact once `h`
    /// covers the lookback; each EWMA feature is within ½·λ^u·max σ²/min σ² of the batch value,
    /// `u` being the known bars since the restart's first one.
    #[test]
    fn a_restart_differs_only_by_the_ewma_warm_up((spec, bars) in spec_and_series(), extra in 0usize..200) {
        let h = spec.lookback() + 1 + extra;
        prop_assume!(bars.len() > h + 1);
        let batch = spec.frame(&bars);
        let start = bars.len() - h - 1;
        let mut online = Online::new(&spec, h).unwrap();
        online.seed(bars[start..bars.len() - 1].iter().copied());
        let last = bars.len() - 1;
        let row = online.push(bars[last]).unwrap();
        let s = slot(&spec, &bars, last);
        let want = batch.row(s);
        let first = slot(&spec, &bars, start);
        let known: Vec<f64> = batch.bar_vol[first..=s].iter().copied().filter(|v| v.is_finite()).collect();
        let u = known.len().saturating_sub(1) as i32;
        let (lo, hi) = batch.bar_vol[..=s].iter().filter(|v| v.is_finite())
            .fold((f64::INFINITY, 0.0f64), |(lo, hi), v| (lo.min(v * v), hi.max(v * v)));
        for (j, name) in spec.names().iter().enumerate() {
            let (a, b) = (row.values[j], want[j]);
            if name.starts_with("ewma_vol_") {
                let lambda = spec.features.ewma_lambdas.iter().copied().fold(0.0, f64::max);
                let bound = 0.5 * lambda.powi(u) * hi / lo + 1e-12;
                prop_assert!(same(a, b) || (a - b).abs() <= bound, "{}: {} vs {} (bound {})", name, a, b, bound);
            } else {
                prop_assert!(same(a, b), "{}: online {} batch {}", name, a, b);
            }
        }
    }
}

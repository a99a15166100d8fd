//! `features.flow` on the real Binance BTCUSDT klines (issue #16):
//! `../shared/data/btc_usdt_1h_binance_2017-08_2021-12.csv`, every bar with trade counts and
//! taker-buy volume. `auto` builds the order-flow features there and not on the same bars
//! without the columns; `on` refuses bars without them.
#![allow(clippy::unwrap_used)]

use rps_core::candle::Candle;
use rps_core::flow::Flow;
use rps_core::params::Params;
use rps_transform::{TransformError, transform};

const FILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/data/btc_usdt_1h_binance_2017-08_2021-12.csv"
);

/// The file's bars with every kline column; `None` when ../shared is not beside the checkout.
fn klines() -> Option<Vec<Candle>> {
    let text = std::fs::read_to_string(FILE).ok()?;
    Some(
        text.lines()
            .skip(1)
            .map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                let ts = chrono::NaiveDateTime::parse_from_str(f[0], "%Y-%m-%d %H:%M:%S")
                    .unwrap()
                    .and_utc()
                    .timestamp_millis();
                let n = |k: usize| f[k].parse::<f64>().unwrap();
                Candle {
                    quote_volume: Some(n(7)),
                    trades: Some(f[8].parse().unwrap()),
                    taker_buy_volume: Some(n(9)),
                    taker_buy_quote_volume: Some(n(10)),
                    ..Candle::ohlcv(ts, n(1), n(2), n(3), n(4), n(5))
                }
            })
            .collect(),
    )
}

const FLOW: [&str; 4] = [
    "trades_surprise_24b",
    "trade_size_surprise_24b",
    "taker_buy_imbalance",
    "taker_buy_imbalance_24b",
];

#[test]
fn auto_builds_the_flow_features_on_binance_klines_with_sane_values() {
    let Some(bars) = klines() else {
        return;
    };
    let params = Params::default();
    assert_eq!(params.features.flow, Flow::Auto);
    let (ds, schema) = transform(&params, &bars, "binance").unwrap();
    assert_eq!(
        schema.feature_params.flow,
        Flow::On,
        "auto resolved and saved"
    );
    assert_eq!(schema.features[schema.features.len() - 4..], FLOW);
    let f = &ds.frame;
    let rows = f.len() as f64;
    for name in FLOW {
        let col = f.column(name).unwrap();
        assert!(col.iter().all(|v| !v.is_infinite()), "{name}: never inf");
        let finite = col.iter().filter(|v| v.is_finite()).count() as f64;
        // Missing: the first day, the 3 zero-volume bars, windows over the outage gaps.
        assert!(finite / rows > 0.99, "{name}: {finite} of {rows} finite");
    }
    let imb = f.column("taker_buy_imbalance").unwrap();
    assert!(
        imb.iter()
            .filter(|v| v.is_finite())
            .all(|v| (-1.0..=1.0).contains(v))
    );
    let mean = imb.iter().filter(|v| v.is_finite()).sum::<f64>() / rows;
    // Takers on both sides about equally over 4.4 years; few hours are one-sided (measured:
    // 557 of the ~38,200 rows, 1.5 %, beyond ±0.5).
    assert!(mean.abs() < 0.1, "mean imbalance {mean}");
    let wide = imb.iter().filter(|v| v.abs() > 0.5).count() as f64;
    assert!(wide / rows < 0.03, "{wide} hours with |imbalance| > 0.5");
    let ts = f.column("trades_surprise_24b").unwrap();
    let m = ts.iter().filter(|v| v.is_finite()).sum::<f64>() / rows;
    assert!(m.abs() < 0.2, "mean trades surprise {m}");
    assert!(ts.iter().filter(|v| v.is_finite()).all(|v| v.abs() < 10.0));
    // The reference statistics cover the flow features too (drift monitoring).
    assert!(
        schema
            .reference
            .iter()
            .any(|r| r.name == "taker_buy_imbalance")
    );
}

#[test]
fn without_the_columns_auto_is_off_and_on_is_refused() {
    let Some(bars) = klines() else {
        return;
    };
    let plain: Vec<Candle> = bars[..6000]
        .iter()
        .map(|c| Candle::ohlcv(c.ts, c.open, c.high, c.low, c.close, c.volume))
        .collect();
    let mut params = Params::default();
    let (ds, schema) = transform(&params, &plain, "plain").unwrap();
    assert_eq!(schema.feature_params.flow, Flow::Off);
    assert!(!ds.frame.names.iter().any(|n| n.contains("taker")));
    // The flow-free columns are the same whether or not the flow features were built.
    let (with, _) = transform(&params, &bars[..6000], "binance").unwrap();
    for (name, col) in ds.frame.names.iter().zip(&ds.frame.columns) {
        let other = with.frame.column(name).unwrap();
        assert!(
            col.iter()
                .zip(other)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{name}"
        );
    }
    params.features.flow = Flow::On;
    let err = transform(&params, &plain, "plain").unwrap_err();
    assert!(err.to_string().contains("data.file.columns"), "{err}");
    assert_eq!(rps_cli::StageError::exit_code(&err), rps_cli::exit::CONFIG);
    params.data.file.columns.trades = Some("number_of_trades".into());
    params.data.file.columns.taker_buy_volume = Some("taker_buy_base_asset_volume".into());
    let err = transform(&params, &plain, "plain").unwrap_err();
    assert_eq!(rps_cli::StageError::exit_code(&err), rps_cli::exit::INPUT);
    assert!(matches!(err, TransformError::Flow(_)), "{err}");
    assert!(err.to_string().contains("features.flow is `on`"), "{err}");
    params.features.flow = Flow::Off;
    let (_, schema) = transform(&params, &bars[..6000], "binance").unwrap();
    assert_eq!(schema.feature_params.flow, Flow::Off);
}

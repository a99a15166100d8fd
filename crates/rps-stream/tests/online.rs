//! The online feature builder gives, bar by bar, the rows the batch transform gives on the whole
//! file (pure: no servers).
#![allow(clippy::unwrap_used)]

use rps_core::params::Params;
use rps_stream::online::OnlineFeatures;

fn sample_params() -> Params {
    let mut p: Params =
        rps_cli::params_from_str(include_str!("../../../params.yaml")).expect("params.yaml parses");
    // The Coinbase 2018 fixture (data/sample/README.md): its first bars have no gaps.
    p.data.file.path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../data/sample/btc_usd_1h_coinbase_2018.csv"
    )
    .to_owned();
    p.data.file.columns = serde_yaml::from_str(
        "{timestamp: timestamp_utc, open: open, high: high, low: low, close: close, volume: volume_btc}",
    )
    .expect("a column mapping");
    p
}

/// Every online row equals the batch row of the same bar: bit for bit while the kept history
/// is the whole history, and within 1e-12 (relative) once old bars are dropped (only the EWMA
/// features remember them, with weight λ^h).
#[test]
fn online_rows_equal_batch_rows_on_the_sample() {
    let mut params = sample_params();
    // Debug builds are slow: the first 2,600 bars cover start-up, the seasonal window (672
    // bars) and 900 bars past the 1,700-bar history limit used here.
    let limit = std::env::var("RPS_ONLINE_TEST_BARS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2600);
    let mut bars = rps_store::import::read_file(&params.data.file).expect("sample reads");
    rps_core::candle::sort_dedup(&mut bars);
    bars.truncate(limit);
    params.stream.history_bars = 1700;
    let (batch, _) = rps_transform::transform(&params, &bars, "").expect("batch transform");
    let frame = &batch.frame;
    let mut online = OnlineFeatures::new(&params, params.stream.history_bars).expect("builder");
    assert_eq!(online.names(), frame.names.as_slice());
    let mut exact = 0;
    for (i, c) in bars.iter().enumerate() {
        let row = online.push(*c).expect("a new bar gives a row");
        assert_eq!(row.ts, frame.ts[i], "one batch row per bar (no gaps here)");
        let want = frame.row(i);
        let mut same = true;
        for ((name, got), want) in frame.names.iter().zip(&row.values).zip(&want) {
            if got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()) {
                continue;
            }
            same = false;
            let tol = 1e-12 * want.abs().max(1.0);
            assert!(
                (got - want).abs() <= tol,
                "bar {i} ({}), {name}: online {got} vs batch {want}",
                c.ts
            );
        }
        if i < params.stream.history_bars {
            assert!(
                same,
                "bar {i}: rows must be identical while the history is complete"
            );
        }
        exact += usize::from(same);
        // A replayed bar changes nothing.
        assert!(online.push(*c).is_none());
    }
    assert!(
        exact >= params.stream.history_bars,
        "{exact} identical rows"
    );
}

#[test]
fn too_short_a_history_is_refused() {
    let params = sample_params();
    let err = OnlineFeatures::new(&params, 100).unwrap_err().to_string();
    assert!(err.contains("look back 673 bars"), "{err}");
}

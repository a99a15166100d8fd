//! `rps-transform`: raw candles → the feature dataset.
//!
//! Resamples to the model's bar when the source is finer (and then measures each bar's
//! realized volatility from its sub-bars), lays the bars on a regular grid (missing bars are
//! missing values, never zeros), builds the point-in-time features and the next-bar target,
//! splits chronologically with a purge gap, and writes `features.parquet` (with each bar's close,
//! which the signal task labels rows from) plus `schema.json` with each feature's reference
//! statistics on the training split. The raw dataset is aggregated to bars partition by
//! partition as it is decoded ([`read_grid`]); the minute candles are never all in memory.

use clap::Parser;
use rps_cli::{CommonArgs, Home, StageError, exit};
use rps_core::candle::Candle;
use rps_core::features::{self, FeatureFrame};
use rps_core::flow::{Coverage, Flow};
use rps_core::grid::{GridBuilder, Segment};
use rps_core::params::Params;
use rps_core::schema::FeatureSchema;
use rps_core::split::{self, Split};
use rps_core::stats::ColumnStats;
use rps_core::volatility::Estimator;
use rps_store::frame::Dataset;
use rps_store::raw::RawDataset;
use std::collections::{BTreeMap, HashMap};

/// Engineer features and the volatility target from the raw dataset, and split it
/// chronologically into train / validation / test.
///
/// Knobs: `features:`, `target:` and `split:` in params.yaml. Output: `features.parquet`
/// (columns ts, split, the features, bar_vol, target, close) and `schema.json`.
#[derive(Debug, Parser)]
#[command(name = "rps-transform", version, after_help = exit::HELP)]
pub struct Args {
    #[command(flatten)]
    pub common: CommonArgs,
    /// The raw dataset (default: <home>/data/raw/<symbol>).
    #[arg(long)]
    pub input: Option<String>,
    /// Where to write the feature dataset (default: <home>/data/features/<symbol>).
    #[arg(long)]
    pub out: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TransformError {
    #[error(transparent)]
    Params(#[from] rps_cli::ParamsError),
    #[error("bad configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Raw(#[from] rps_store::raw::RawError),
    #[error(transparent)]
    Frame(#[from] rps_store::frame::FrameError),
    #[error(transparent)]
    Store(#[from] rps_store::StoreError),
    #[error(transparent)]
    Tracking(#[from] rps_tracking::TrackingError),
    #[error("cannot split the data: {0}")]
    Split(#[from] rps_core::split::SplitError),
    #[error("the raw dataset has schema problems: {0}; run rps-quality for the full report")]
    Schema(String),
    #[error("bad signal parameters: {0}")]
    Signal(#[from] rps_core::signal::SignalParamsError),
    #[error(transparent)]
    OffGrid(#[from] rps_core::candle::OffGridCollision),
    /// `features.flow: on` on a raw dataset without the order-flow columns.
    #[error(transparent)]
    Flow(#[from] rps_core::flow::FlowError),
}

impl StageError for TransformError {
    fn exit_code(&self) -> u8 {
        match self {
            Self::Params(_) | Self::Config(_) | Self::Signal(_) => exit::CONFIG,
            Self::Flow(e) if e.is_config() => exit::CONFIG,
            Self::Split(_) | Self::Schema(_) | Self::OffGrid(_) | Self::Flow(_) => exit::INPUT,
            Self::Raw(e) if raw_is_input(e) => exit::INPUT,
            Self::Frame(e) if e.is_input() => exit::INPUT,
            Self::Tracking(e) if e.is_remote() => exit::REMOTE,
            Self::Raw(_) | Self::Frame(_) | Self::Store(_) | Self::Tracking(_) => exit::STORAGE,
        }
    }
}

/// Whether a raw-dataset failure is bad input (exit 4) — a missing dataset, a manifest that is
/// not JSON, a partition that is not Parquet (truncated, overwritten) or has the wrong columns —
/// rather than the store failing to read (exit 7).
pub fn raw_is_input(e: &rps_store::raw::RawError) -> bool {
    use rps_store::raw::RawError;
    match e {
        RawError::Store(s) => matches!(s, rps_store::StoreError::NotFound { .. }),
        RawError::Parquet(p) => !matches!(p, rps_store::parquet_io::ParquetError::Write(_)),
        RawError::Manifest { .. }
        | RawError::Schema { .. }
        | RawError::IntervalMismatch { .. }
        | RawError::SourceMismatch { .. }
        | RawError::Checksum { .. } => true,
    }
}

/// The bar grid of the one feature pipeline ([`rps_core::pipeline`]).
pub use rps_core::pipeline::bar_grid;

/// The grid of bars the features are built over: open times, bars (`None` where missing) and
/// each bar's volatility — what [`bar_grid`] and [`GridBuilder`] return.
pub type Grid = (Vec<i64>, Vec<Option<Candle>>, Vec<f64>);

/// `data.bar` must be a whole multiple of `data.interval`, and the realized estimator needs
/// sub-bars.
fn check_bars(params: &Params) -> Result<(), TransformError> {
    let d = &params.data;
    if d.bar.ms() < d.interval.ms() || d.bar.ms() % d.interval.ms() != 0 {
        return Err(TransformError::Config(format!(
            "data.bar ({}) must be a whole multiple of data.interval ({})",
            d.bar, d.interval
        )));
    }
    rps_core::flow::check_params(params.features.flow, d)?;
    if params.target.estimator == Estimator::Realized && d.bar == d.interval {
        return Err(TransformError::Config(format!(
            "target.estimator: realized needs sub-bars: data.interval ({}) must be finer than data.bar ({})",
            d.interval, d.bar
        )));
    }
    Ok(())
}

/// Build the dataset and schema from raw bars (pure; the stage minus IO).
pub fn transform(
    params: &Params,
    bars: &[Candle],
    data_hash: &str,
) -> Result<(Dataset, FeatureSchema), TransformError> {
    check_bars(params)?;
    let d = &params.data;
    let mut bars = bars.to_vec();
    rps_core::candle::align(&mut bars, d.interval)?;
    let grid = bar_grid(&bars, d.interval, d.bar, params.target.estimator);
    transform_grid(params, grid, data_hash)
}

/// Build the dataset and schema from the bar grid (pure): features, target, split, reference
/// statistics.
pub fn transform_grid(
    params: &Params,
    (ts, grid, vol): Grid,
    data_hash: &str,
) -> Result<(Dataset, FeatureSchema), TransformError> {
    check_bars(params)?;
    let d = &params.data;
    let bars_per_day = usize::try_from(86_400_000 / d.bar.ms()).unwrap_or(1).max(1);
    // `features.flow: auto` depends on the training split, which depends on the frame: build
    // the flow features whenever they may be wanted (they are appended last and change no other
    // column), resolve on the training rows, and drop them when the answer is off.
    let mut fp = params.features.clone();
    fp.flow = match fp.flow {
        Flow::Off => Flow::Off,
        Flow::On => Flow::On,
        Flow::Auto if grid.iter().flatten().any(Candle::has_flow) => Flow::On,
        Flow::Auto => Flow::Off,
    };
    let mut frame: FeatureFrame =
        features::build(&ts, &grid, &vol, &fp, &params.target, bars_per_day);
    let usable = frame.usable();
    let splits = split::assign(&usable, &params.split, params.target.horizon)?;
    let train_rows: Vec<usize> = splits
        .iter()
        .enumerate()
        .filter_map(|(i, s)| (*s == Split::Train).then_some(i))
        .collect();
    let coverage = Coverage::of(train_rows.iter().filter_map(|&i| grid[i].as_ref()));
    let flow = params.features.flow.resolve(coverage)?;
    if fp.flow.is_on() && !flow.is_on() {
        let keep = frame.names.len() - rps_core::flow::names(fp.long_window).len();
        frame.names.truncate(keep);
        frame.columns.truncate(keep);
    }
    fp.flow = flow;
    debug_assert_eq!(frame.names, features::feature_names(&fp));
    let reference = reference_stats(&frame.names, &frame.columns, &train_rows);
    let mut rows = BTreeMap::new();
    for s in &splits {
        *rows.entry(s.as_str().to_owned()).or_insert(0) += 1;
    }
    // Rows for missing bars carry nothing: drop them from the file.
    let keep: Vec<usize> = (0..frame.len()).filter(|&i| frame.present[i]).collect();
    let pick = |v: &[f64]| keep.iter().map(|&i| v[i]).collect::<Vec<f64>>();
    let kept = FeatureFrame {
        ts: keep.iter().map(|&i| frame.ts[i]).collect(),
        names: frame.names.clone(),
        columns: frame.columns.iter().map(|c| pick(c)).collect(),
        bar_vol: pick(&frame.bar_vol),
        target: pick(&frame.target),
        present: vec![true; keep.len()],
    };
    let split_kept: Vec<Split> = keep.iter().map(|&i| splits[i]).collect();
    let close: Vec<f64> = keep
        .iter()
        .map(|&i| grid[i].map_or(f64::NAN, |c| c.close))
        .collect();
    let schema = FeatureSchema {
        version: FeatureSchema::VERSION,
        symbol: d.symbol.clone(),
        source: String::new(),
        bar: d.bar.to_string(),
        features: frame.names.clone(),
        feature_params: fp,
        target: params.target.clone(),
        reference,
        rows,
        first_ts: kept.ts.first().copied().unwrap_or(0),
        last_ts: kept.ts.last().copied().unwrap_or(0),
        data_hash: data_hash.to_owned(),
        symbols: Vec::new(),
    };
    Ok((
        Dataset {
            frame: kept,
            split: split_kept,
            close: Some(close),
        },
        schema,
    ))
}

/// Each feature's reference statistics on the training rows, the columns shared out over the
/// cores (each column's statistics are computed exactly as on one thread; this is a third of
/// the time after the dataset is read, mostly sorting for the quantiles).
fn reference_stats(names: &[String], columns: &[Vec<f64>], rows: &[usize]) -> Vec<ColumnStats> {
    let one = |(name, col): (&String, &Vec<f64>)| {
        ColumnStats::compute(name, &rows.iter().map(|&i| col[i]).collect::<Vec<_>>(), 20)
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    let per = names.len().div_ceil(threads.max(1)).max(1);
    std::thread::scope(|s| {
        let parts: Vec<_> = names
            .chunks(per)
            .zip(columns.chunks(per))
            .map(|(n, c)| s.spawn(move || n.iter().zip(c).map(one).collect::<Vec<_>>()))
            .collect();
        parts
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}

pub use rps_core::signal::SignalColumns;

/// Signal labels for the rows at `ts`, from raw bars (for tests that start from candles): the
/// closes of the bars on transform's grid ([`bar_grid`]) through [`rps_core::signal::columns`],
/// exactly what train and evaluate compute from the `close` column transform writes.
pub fn signal_columns(
    params: &Params,
    bars: &[Candle],
    ts: &[i64],
) -> Result<SignalColumns, TransformError> {
    params.signal.validate()?;
    let d = &params.data;
    let mut bars = bars.to_vec();
    rps_core::candle::align(&mut bars, d.interval)?;
    let (grid_ts, grid, _) = bar_grid(&bars, d.interval, d.bar, params.target.estimator);
    let (rows, close): (Vec<i64>, Vec<f64>) = grid_ts
        .iter()
        .zip(&grid)
        .filter_map(|(&t, b)| b.map(|c| (t, c.close)))
        .unzip();
    let cols = rps_core::signal::columns(&rows, &close, d.bar.ms(), &params.signal)?;
    let at = |v: &[Option<rps_core::signal::Signal>]| {
        ts.iter()
            .map(|t| rows.binary_search(t).ok().and_then(|i| v[i]))
            .collect()
    };
    Ok(SignalColumns {
        labels: at(&cols.labels),
        momentum: at(&cols.momentum),
    })
}

/// Why a streamed read stopped early.
enum Scan {
    Raw(rps_store::raw::RawError),
    /// The stored candles are not strictly increasing (never the case for a dataset `rps
    /// extract` wrote: its partitions are sorted, de-duplicated, disjoint months in order).
    Unsorted,
}

impl From<rps_store::raw::RawError> for Scan {
    fn from(e: rps_store::raw::RawError) -> Self {
        Self::Raw(e)
    }
}

/// The raw dataset's bar grid, aggregated partition by partition as the record batches are
/// decoded: every core reads, verifies, decodes and folds whole partitions into
/// [`Segment`]s ([`RawDataset::scan_parallel`]), appended to one [`GridBuilder`] in storage
/// order. No candle series is materialised, so memory stays at one partition per thread plus
/// the grid. Identical to [`bar_grid`] over the sorted, de-duplicated candles
/// (`rps_core::grid`'s tests); stored candles out of order fall back to exactly that.
pub fn read_grid(
    raw: &RawDataset,
    params: &Params,
) -> Result<(rps_store::raw::Manifest, Grid, HashMap<String, String>), TransformError> {
    let d = &params.data;
    let (interval, bar, estimator) = (d.interval, d.bar, params.target.estimator);
    let mut builder = GridBuilder::new(interval, bar, estimator);
    // Every core folds whole partitions into segments of the grid; they are appended in order.
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8));
    let scanned = raw.scan_parallel(
        threads,
        || Segment::new(interval, bar, estimator),
        |seg, cols| {
            let flow = cols.quote_volume.is_some()
                || cols.trades.is_some()
                || cols.taker_buy_volume.is_some()
                || cols.taker_buy_quote_volume.is_some();
            if flow {
                for i in 0..cols.len() {
                    seg.push(&cols.candle(i)).map_err(|_| Scan::Unsorted)?;
                }
            } else {
                // No order-flow column in this batch: `cols.candle(i)` without the per-row
                // lookups of four absent columns.
                let (ts, open, high, low) = (&*cols.ts, &*cols.open, &*cols.high, &*cols.low);
                let (close, volume) = (&*cols.close, &*cols.volume);
                for i in 0..ts.len() {
                    let c = Candle {
                        ts: ts[i],
                        open: open[i],
                        high: high[i],
                        low: low[i],
                        close: close[i],
                        volume: volume[i],
                        ..Candle::default()
                    };
                    seg.push(&c).map_err(|_| Scan::Unsorted)?;
                }
            }
            Ok::<(), Scan>(())
        },
        |seg| builder.append(seg).map_err(|_| Scan::Unsorted),
    );
    let (manifest, grid, problems) = match scanned {
        Ok((manifest, problems)) => (manifest, builder.finish(), problems),
        Err(Scan::Raw(e)) => return Err(e.into()),
        Err(Scan::Unsorted) => {
            tracing::warn!(
                "the raw dataset's candles are not in order: sorting them all in memory"
            );
            let (manifest, mut bars, problems) = raw.read_all()?;
            rps_core::candle::align(&mut bars, d.interval)?;
            let grid = bar_grid(&bars, d.interval, d.bar, params.target.estimator);
            (manifest, grid, problems)
        }
    };
    if !problems.is_empty() {
        return Err(TransformError::Schema(problems.join("; ")));
    }
    if manifest.interval != d.interval {
        return Err(TransformError::Config(format!(
            "the raw dataset holds {} bars but data.interval is {}",
            manifest.interval, d.interval
        )));
    }
    // The partitions' MD5s recorded by extract (their bytes were just verified against the
    // manifest's SHA-256), for the run's DVC tag without hashing every byte again.
    let md5s = manifest
        .partitions
        .iter()
        .filter_map(|p| Some((p.key.clone(), p.md5.clone()?)))
        .collect();
    Ok((manifest, grid, md5s))
}

/// Run the stage.
pub fn run(args: &Args) -> Result<(), TransformError> {
    // `git rev-parse` and `git status` are two child processes: run them while the raw dataset
    // is read rather than after it.
    let git_commit = std::thread::spawn(rps_cli::git_commit);
    let params = args.common.load_params()?;
    let home = Home::for_params(&args.common.home, &params);
    let input = args
        .input
        .clone()
        .unwrap_or_else(|| home.raw(&params.data.symbol));
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| home.features(&params.data.symbol));
    let tracker = home.tracker()?;
    let input_store = rps_store::open(&input)?;
    let raw = RawDataset::new(input_store.clone());
    check_bars(&params)?;
    let (manifest, grid, md5s) = read_grid(&raw, &params)?;
    // DVC's hash of the input from the MD5s the manifest records: no second read.
    let data_tags = rps_cli::data_tags_with(input_store.as_ref(), &md5s);
    let data_hash = manifest.content_hash();
    let mut tags = BTreeMap::from([
        (
            "git_commit".to_owned(),
            git_commit.join().unwrap_or_else(|_| "unknown".to_owned()),
        ),
        ("stage".to_owned(), "transform".to_owned()),
        ("data_hash".to_owned(), data_hash.clone()),
    ]);
    tags.extend(data_tags);
    rps_tracking::with_run(tracker.as_ref(), "transform", &tags, |run| {
        let (ds, mut schema) = transform_grid(&params, grid, &data_hash)?;
        schema.source.clone_from(&manifest.source);
        let store = rps_store::open(&out)?;
        let mut logged: Vec<(String, String)> = vec![
            ("bar".to_owned(), schema.bar.clone()),
            (
                "estimator".to_owned(),
                format!("{:?}", params.target.estimator).to_lowercase(),
            ),
            ("horizon".to_owned(), params.target.horizon.to_string()),
            ("floor".to_owned(), params.target.floor.to_string()),
            ("split_gap".to_owned(), params.split.gap.to_string()),
            ("n_features".to_owned(), schema.features.len().to_string()),
        ];
        logged.push(("features".to_owned(), schema.features.join(",")));
        let counts: Vec<(String, f64)> = schema
            .rows
            .iter()
            .map(|(k, v)| (format!("rows_{k}"), *v as f64))
            .collect();
        // The run's parameters and counts are logged (a tracking server's round trips, or the
        // local store's fsyncs) while the dataset is encoded and written; a failed write is the
        // error reported first, as when it came first.
        let (written, tracked) = std::thread::scope(|s| {
            let writer = s.spawn(|| rps_store::frame::write(store.as_ref(), &ds, &schema));
            let tracked = run
                .log_params(&logged)
                .and_then(|()| run.log_owned_values(&counts));
            let written = writer
                .join()
                .unwrap_or_else(|e| std::panic::resume_unwind(e));
            (written, tracked)
        });
        written?;
        tracked?;
        run.log_artifact("schema.json", &store.get(rps_store::frame::SCHEMA)?)?;
        tracing::info!(
            "transform done: {} features; rows {}; written to {}",
            schema.features.len(),
            schema
                .rows
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" "),
            store.uri("")
        );
        Ok(())
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rps_core::candle::Interval;
    use rps_core::signal::Signal;
    use rps_core::volatility::parkinson;

    #[test]
    fn signal_columns_follow_the_grid_and_the_one_label_rule() {
        let h = 3_600_000;
        let bar = |ts: i64, c: f64| Candle {
            ts,
            open: c,
            high: c * 1.01,
            low: c * 0.99,
            close: c,
            volume: 1.0,
            ..Default::default()
        };
        // Slot 2 is missing.
        let bars = vec![
            bar(0, 100.0),
            bar(h, 101.0),
            bar(3 * h, 100.0),
            bar(4 * h, 100.1),
        ];
        let params = Params::default();
        let sp = &params.signal;
        let cols = signal_columns(&params, &bars, &[h, 0, 3 * h, 4 * h, 7 * h]).unwrap();
        let l = |a: f64, b: f64| rps_core::signal::label(a, b, sp);
        assert_eq!(
            cols.labels,
            [None, l(100.0, 101.0), l(100.0, 100.1), None, None],
            "no label across the missing bar or past the end"
        );
        assert_eq!(cols.labels[1], Some(Signal::Buy));
        assert_eq!(
            cols.momentum,
            [l(100.0, 101.0), None, None, l(100.0, 100.1), None]
        );
        let mut bad = Params::default();
        bad.signal.horizon = 0;
        assert!(matches!(
            signal_columns(&bad, &bars, &[0]),
            Err(TransformError::Signal(_))
        ));
    }

    #[test]
    fn grid_marks_missing_bars_and_resamples() {
        let h = 3_600_000;
        let bar = |ts: i64, c: f64| Candle {
            ts,
            open: c,
            high: c * 1.01,
            low: c * 0.99,
            close: c,
            volume: 1.0,
            ..Default::default()
        };
        let bars = vec![bar(0, 100.0), bar(h, 101.0), bar(3 * h, 102.0)];
        let (ts, grid, vol) = bar_grid(&bars, Interval::H1, Interval::H1, Estimator::Parkinson);
        assert_eq!(ts, vec![0, h, 2 * h, 3 * h]);
        assert!(grid[2].is_none() && vol[2].is_nan());
        assert!((vol[0] - parkinson(101.0, 99.0)).abs() < 1e-15);
        // 30-minute bars → hourly realized volatility from sub-bar closes.
        let half = h / 2;
        let fine = vec![
            bar(0, 100.0),
            bar(half, 101.0),
            bar(h, 99.0),
            bar(h + half, 100.0),
        ];
        let (ts, grid, vol) = bar_grid(&fine, Interval::M30, Interval::H1, Estimator::Realized);
        assert_eq!(ts, vec![0, h]);
        assert_eq!(grid[1].unwrap().high, 101.0);
        let r = |a: f64, b: f64| (b / a).ln();
        assert!((vol[1] - (r(101.0, 99.0).powi(2) + r(99.0, 100.0).powi(2)).sqrt()).abs() < 1e-12);
        assert!((vol[0] - r(100.0, 101.0).abs()).abs() < 1e-12);
    }
}

//! `rps-extract`: fetch candles into the raw dataset.
//!
//! Incremental by default: with an existing dataset it asks the source only for bars after the
//! last stored one, merges (fresh bars win on overlap), rewrites only the touched monthly
//! partitions and swaps the manifest last. Rerunning the same window changes nothing.

use chrono::{DateTime, Utc};
use clap::Parser;
use rps_cli::{CommonArgs, Home, StageError, exit};
use rps_core::params::{Params, SourceKind};
use rps_core::{Candle, Interval};
use rps_store::raw::RawDataset;
use std::collections::BTreeMap;

/// Fetch OHLCV candles into the raw Parquet dataset (monthly partitions + manifest).
///
/// Sources: `file` (CSV or Parquet with a column mapping), `binance` (public klines),
/// `coincap` (v3 API; the key comes from COINCAP_API_KEY), `synthetic` (a seeded simulator).
/// Every knob defaults to params.yaml (`data:` section); flags override it.
#[derive(Debug, Parser)]
#[command(name = "rps-extract", version, after_help = exit::HELP)]
pub struct Args {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Source to read from (default: data.source).
    #[arg(long, value_parser = ["file", "binance", "coincap", "synthetic"])]
    pub source: Option<String>,
    /// For the file source: the CSV or Parquet file (default: data.file.path).
    #[arg(long)]
    pub file: Option<String>,
    /// First bar wanted, RFC 3339 such as 2024-01-01T00:00:00Z (default: data.start).
    #[arg(long)]
    pub start: Option<String>,
    /// End of the window, exclusive, RFC 3339 (default: data.end, else now).
    #[arg(long)]
    pub end: Option<String>,
    /// Where the raw dataset lives: a folder or URI (default: <home>/data/raw/<symbol>).
    #[arg(long)]
    pub out: Option<String>,
    /// Replace the dataset with what the source returns instead of merging into it.
    #[arg(long)]
    pub full_refresh: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error(transparent)]
    Params(#[from] rps_cli::ParamsError),
    #[error("bad configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Import(#[from] rps_store::import::ImportError),
    #[error(transparent)]
    Market(#[from] rps_market::MarketError),
    #[error(transparent)]
    Raw(#[from] rps_store::raw::RawError),
    #[error(transparent)]
    Store(#[from] rps_store::StoreError),
    #[error(transparent)]
    Tracking(#[from] rps_tracking::TrackingError),
    #[error("the source returned no bars in the window {start} .. {end}")]
    NoBars { start: String, end: String },
    #[error(
        "the source returned {count} timestamps more than once with different values: {listed}"
    )]
    ConflictingDuplicates { count: usize, listed: String },
}

/// Whether a storage error is a bad location in the configuration (`--home ftp://…`, an
/// unsupported URI or missing S3 settings) rather than storage failing.
fn store_config(e: &rps_store::StoreError) -> bool {
    matches!(e, rps_store::StoreError::Unsupported { .. })
}

impl StageError for ExtractError {
    fn exit_code(&self) -> u8 {
        use rps_market::MarketError as M;
        use rps_store::raw::RawError as R;
        match self {
            Self::Params(_) | Self::Config(_) => exit::CONFIG,
            Self::Store(e) | Self::Raw(R::Store(e)) if store_config(e) => exit::CONFIG,
            Self::Tracking(rps_tracking::TrackingError::Store(e)) if store_config(e) => {
                exit::CONFIG
            }
            Self::Import(_) | Self::NoBars { .. } | Self::ConflictingDuplicates { .. } => {
                exit::INPUT
            }
            Self::Raw(e) if e.is_bad_data() => exit::INPUT,
            Self::Market(M::InvalidRequest { .. } | M::Setup { .. }) => exit::CONFIG,
            Self::Market(_) => exit::REMOTE,
            Self::Raw(R::IntervalMismatch { .. } | R::SourceMismatch { .. }) => exit::CONFIG,
            Self::Tracking(e) if e.is_remote() => exit::REMOTE,
            Self::Raw(_) | Self::Store(_) | Self::Tracking(_) => exit::STORAGE,
        }
    }
}

fn parse_time(s: &str, what: &str) -> Result<i64, ExtractError> {
    DateTime::parse_from_rfc3339(s)
        .map(|d| d.timestamp_millis())
        .map_err(|e| {
            ExtractError::Config(format!(
                "{what} {s:?} is not an RFC 3339 time such as 2024-01-01T00:00:00Z: {e}"
            ))
        })
}

/// What one extract did.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub fetched: usize,
    pub rows: usize,
    pub partitions_written: usize,
    pub first_ts: Option<i64>,
    pub last_ts: Option<i64>,
    pub dataset: String,
    pub data_hash: String,
    /// Rows dropped because they repeated another row exactly.
    pub duplicates_collapsed: usize,
}

/// Run the stage.
pub fn run(args: &Args) -> Result<(), ExtractError> {
    let mut params = args.common.load_params()?;
    if let Some(s) = &args.source {
        params.data.source = match s.as_str() {
            "binance" => SourceKind::Binance,
            "coincap" => SourceKind::Coincap,
            "synthetic" => SourceKind::Synthetic,
            _ => SourceKind::File,
        };
    }
    if let Some(f) = &args.file {
        params.data.file.path.clone_from(f);
    }
    let home = Home::for_params(&args.common.home, &params);
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| home.raw(&params.data.symbol));
    let tracker = home.tracker()?;
    let tags = BTreeMap::from([
        ("git_commit".to_owned(), rps_cli::git_commit()),
        ("stage".to_owned(), "extract".to_owned()),
    ]);
    let summary = rps_tracking::with_run(tracker.as_ref(), "extract", &tags, |run| {
        let summary = extract(&params, args, &out)?;
        run.log_params(&[
            (
                "source".to_owned(),
                format!("{:?}", params.data.source).to_lowercase(),
            ),
            ("symbol".to_owned(), params.data.symbol.clone()),
            ("interval".to_owned(), params.data.interval.to_string()),
            ("dataset".to_owned(), summary.dataset.clone()),
        ])?;
        run.log_values(&[
            ("rows_fetched", summary.fetched as f64),
            ("rows_total", summary.rows as f64),
            ("partitions_written", summary.partitions_written as f64),
            ("duplicates_collapsed", summary.duplicates_collapsed as f64),
        ])?;
        run.set_tags(&[("data_hash".to_owned(), summary.data_hash.clone())])?;
        Ok::<_, ExtractError>(summary)
    })?;
    let fmt = |t: Option<i64>| {
        t.and_then(DateTime::<Utc>::from_timestamp_millis)
            .map_or_else(|| "-".to_owned(), |d| d.to_rfc3339())
    };
    tracing::info!(
        "extract done: {} bars fetched, {} partitions written; dataset {} holds {} bars from {} to {}",
        summary.fetched,
        summary.partitions_written,
        summary.dataset,
        summary.rows,
        fmt(summary.first_ts),
        fmt(summary.last_ts)
    );
    Ok(())
}

/// Fetch and store; the stage without tracking.
pub fn extract(params: &Params, args: &Args, out: &str) -> Result<Summary, ExtractError> {
    let d = &params.data;
    let interval = d.interval;
    let dataset = RawDataset::new(rps_store::open(out)?);
    let manifest = if args.full_refresh {
        None
    } else {
        dataset.manifest()?
    };
    // One dataset, one source: checked before anything is fetched (the write checks it too).
    let source_name = format!("{:?}", d.source).to_lowercase();
    if let Some(m) = &manifest
        && m.source != source_name
    {
        return Err(rps_store::raw::RawError::SourceMismatch {
            uri: dataset.uri(),
            symbol: m.symbol.clone(),
            found: m.source.clone(),
            wanted: source_name,
        }
        .into());
    }
    let now = Utc::now().timestamp_millis();
    let end = match args.end.as_deref().or(d.end.as_deref()) {
        Some(s) => parse_time(s, "end")?,
        // Only closed bars: the bar still forming is left for the next run.
        None => interval.floor(now),
    };
    let configured_start = args
        .start
        .as_deref()
        .or(d.start.as_deref())
        .map(|s| parse_time(s, "start"))
        .transpose()?;
    if let Some(s) = configured_start
        && end <= s
    {
        return Err(ExtractError::Config(format!(
            "the window is empty: end {} is not after start {} (--end/data.end must be later than --start/data.start)",
            rps_core::quality::rfc3339(end),
            rps_core::quality::rfc3339(s)
        )));
    }
    // Incremental: resume after the last stored bar.
    let start = match (
        manifest
            .as_ref()
            .and_then(rps_store::raw::Manifest::last_ts),
        configured_start,
    ) {
        (Some(last), Some(s)) => s.max(last + interval.ms()),
        (Some(last), None) => last + interval.ms(),
        (None, Some(s)) => s,
        (None, None) if d.source == SourceKind::File => i64::MIN,
        (None, None) => return Err(ExtractError::Config(
            "data.start (or --start) is required for the first fetch from an API or the simulator"
                .to_owned(),
        )),
    };
    let mut bars = fetch(params, interval, start, end)?;
    let dups = rps_core::quality::find_duplicates(&bars);
    if !dups.conflicting.is_empty() {
        let mut listed: Vec<String> = dups
            .conflicting
            .iter()
            .take(5)
            .map(|(ts, _)| rps_core::quality::rfc3339(*ts))
            .collect();
        if dups.conflicting.len() > 5 {
            listed.push(format!("… and {} more", dups.conflicting.len() - 5));
        }
        return Err(ExtractError::ConflictingDuplicates {
            count: dups.conflicting.len(),
            listed: listed.join(", "),
        });
    }
    if dups.identical > 0 {
        tracing::warn!(
            "{} rows repeated another row exactly and were collapsed",
            dups.identical
        );
    }
    rps_core::candle::sort_dedup(&mut bars);
    if bars.is_empty() {
        if manifest.is_some() {
            tracing::info!("no new bars: the dataset is up to date");
            let m = manifest.unwrap_or_else(|| unreachable!());
            return Ok(Summary {
                fetched: 0,
                rows: m.rows(),
                partitions_written: 0,
                first_ts: m.first_ts(),
                last_ts: m.last_ts(),
                dataset: dataset.uri(),
                data_hash: m.content_hash(),
                duplicates_collapsed: dups.identical,
            });
        }
        let fmt = |t: i64| {
            DateTime::<Utc>::from_timestamp_millis(t)
                .map_or_else(|| "the beginning".to_owned(), |d| d.to_rfc3339())
        };
        return Err(ExtractError::NoBars {
            start: fmt(start),
            end: fmt(end),
        });
    }
    let (m, written) = if args.full_refresh {
        dataset.replace(&d.symbol, interval, &source_name, &bars)?
    } else {
        dataset.upsert(&d.symbol, interval, &source_name, &bars)?
    };
    Ok(Summary {
        fetched: bars.len(),
        rows: m.rows(),
        partitions_written: written,
        first_ts: m.first_ts(),
        last_ts: m.last_ts(),
        dataset: dataset.uri(),
        data_hash: m.content_hash(),
        duplicates_collapsed: dups.identical,
    })
}

fn fetch(
    params: &Params,
    interval: Interval,
    start: i64,
    end: i64,
) -> Result<Vec<Candle>, ExtractError> {
    let d = &params.data;
    let progress = |name: &str| {
        let pb = rps_cli::progress::bar(
            u64::try_from((end - start.max(0)).max(1)).unwrap_or(1),
            &format!("fetching {name}"),
        );
        move |p: rps_market::Progress| {
            pb.set_position(u64::try_from(p.cursor_ms - start.max(0)).unwrap_or(0));
            if p.cursor_ms >= p.end_ms {
                pb.finish_and_clear();
            }
        }
    };
    match d.source {
        SourceKind::File => {
            let mut bars = rps_store::import::read_file(&d.file)?;
            bars.retain(|c| c.ts >= start && c.ts < end);
            // Conflicting duplicates were refused by the import; identical copies collapse in
            // `extract` (counted). The quality gate judges the values.
            bars.sort_by_key(|c| c.ts);
            if let Some(found) = rps_core::candle::infer_interval(&bars)
                && found != interval
            {
                return Err(ExtractError::Config(format!(
                    "{} holds {found} bars but data.interval is {interval}; set data.interval: {found} (and data.bar for the model's bar)",
                    d.file.path
                )));
            }
            Ok(bars)
        }
        SourceKind::Synthetic => Ok(rps_core::synthetic::simulate(
            &d.synthetic,
            interval,
            start,
            end,
        )),
        SourceKind::Binance | SourceKind::Coincap => {
            let key = std::env::var("COINCAP_API_KEY").ok();
            let src = rps_market::from_params(d.source, d, key)?
                .ok_or_else(|| ExtractError::Config("not a market API".to_owned()))?;
            let req = src.request(interval, start, end);
            Ok(src.client.fetch(&req, &mut progress(src.client.name()))?)
        }
    }
}

//! `rps-stream`: candles through Kafka, one prediction per new bar into PostgreSQL.
//!
//! - `produce`: replay a candle file (the `data.file` import of `rps extract`) onto a Kafka
//!   topic, one JSON message per closed bar keyed by symbol, as fast as possible or at N bars/s;
//!   with `--follow`, poll the market API every bar instead ([`poll`]).
//! - `consume`: read the topic from the offset stored in PostgreSQL, build each new bar's
//!   features online with the batch code ([`online`]), predict with every live alias of the
//!   registry ([`live`]), score the forecasts each new bar completes the target of ([`score`]),
//!   and write candles, predictions, scores and the next offset in one transaction ([`db`]):
//!   exactly-once into PostgreSQL across crashes.
//! - `reconcile`: after a promotion, predict the stored candle history with the current live
//!   set and write only the rows that are missing or whose alias moved; then score that history
//!   ([`score`]).
//! - `migrate`: apply the SQL migrations (`consume` does it too).

mod consume;
pub mod db;
pub mod kafka;
pub mod live;
pub mod online;
pub mod poll;
pub mod score;

use clap::{Args as ClapArgs, Parser, Subcommand};
use db::{Band, Db, Prediction, RowKey};
use online::OnlineFeatures;
use rps_cli::{CommonArgs, Home, StageError, exit};
use rps_core::candle::Candle;
use rps_core::params::Params;
use rskafka::client::partition::Compression;
use rskafka::record::Record;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

/// The EXIT CODES section of `rps stream --help`.
pub const EXIT_HELP: &str = "EXIT CODES:
  0  success (consume: stopped by SIGTERM/Ctrl-C, --idle-exit or --max-messages;
     produce --follow: stopped by SIGTERM/Ctrl-C or --max-polls)
  1  internal error (a bug)
  2  bad command line
  3  bad configuration (params.yaml, flags, no database URL, missing topic; produce --follow:
     the market API refused the request, e.g. an unknown symbol)
  4  bad input data (the candle file of produce; consume, reconcile: a candle without an
     order-flow column, trades or taker_buy_volume, that a live model trained with
     features.flow: on reads)
  6  Kafka, PostgreSQL or the market API failed (after retries; consume: unreachable for
     --reconnect-secs; produce --follow: after --max-failures failed polls in a row, or at
     once on an IP ban)
  7  storage failed (the model registry's store)
  8  no live model (consume, reconcile) or a prediction failed

ENVIRONMENT:
  RPS_KAFKA_BROKERS  Kafka bootstrap brokers (host:port,…), overrides stream.brokers
  RPS_KAFKA_TOPIC    topic, overrides stream.topic
  COINCAP_API_KEY    CoinCap v3 API key (produce --follow with data.source: coincap)
  DATABASE_URL       PostgreSQL, e.g. postgres://rps:PASSWORD@127.0.0.1:5432/rps, set from a secret
                     (percent-encode reserved characters; PGPASSWORD and ~/.pgpass are not read)";

/// Stream candles through Kafka and write one prediction per new bar and live model to
/// PostgreSQL, exactly once.
///
/// Typical use: `rps stream produce --speed 0` in one place, `rps stream consume` in another;
/// after `rps evaluate` promotes a new champion, `rps stream reconcile`. Knobs: `stream:` in
/// params.yaml; flags and environment variables override them.
#[derive(Debug, Parser)]
#[command(name = "rps-stream", version, after_help = EXIT_HELP)]
pub struct Args {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub conn: Connection,
    #[command(subcommand)]
    pub command: Command,
}

/// Where Kafka and PostgreSQL are.
#[derive(Debug, Clone, ClapArgs)]
pub struct Connection {
    /// Kafka bootstrap brokers, comma-separated host:port (default: stream.brokers).
    #[arg(long, global = true, env = "RPS_KAFKA_BROKERS")]
    pub brokers: Option<String>,
    /// Kafka topic of the candles (default: stream.topic).
    #[arg(long, global = true, env = "RPS_KAFKA_TOPIC")]
    pub topic: Option<String>,
    /// PostgreSQL connection URL (postgres://user@host:port/db). Never put a password in
    /// params.yaml or a script: use the environment.
    #[arg(long, global = true, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Give up on Kafka requests that keep failing after this many seconds.
    #[arg(long, global = true, default_value_t = 30)]
    pub kafka_timeout: u64,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Publish the candles of a file (or, with --follow, of the market API every bar) to the
    /// topic, one JSON message per closed bar keyed by symbol.
    Produce(ProduceArgs),
    /// Read the topic, predict every new bar with the live models, write to PostgreSQL.
    Consume(ConsumeArgs),
    /// Re-predict the stored history with the current live models; write only what changed.
    Reconcile(ReconcileArgs),
    /// Create or upgrade the PostgreSQL tables (consume does this too).
    Migrate,
}

#[derive(Debug, Clone, ClapArgs)]
pub struct ProduceArgs {
    /// Candle file to replay, CSV or Parquet in the layout of data.file (default: data.file.path).
    #[arg(long)]
    pub input: Option<String>,
    /// Bars per second; 0 publishes as fast as the broker takes them.
    #[arg(long, default_value_t = 0.0)]
    pub speed: f64,
    /// Publish only the first N bars of the file.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Skip the first N bars of the file (with --limit: replay a slice).
    #[arg(long, default_value_t = 0)]
    pub skip: usize,
    /// Records per Kafka produce request (record batch) when --speed is 0 or with --follow.
    /// 1 makes every offset a batch boundary, which tansu 0.6 needs: fetching from the middle
    /// of a batch skips to the next batch there. With Apache Kafka, 500 is several times faster.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    #[command(flatten)]
    pub follow: poll::FollowArgs,
}

#[derive(Debug, Clone, ClapArgs)]
pub struct ConsumeArgs {
    /// Consumer name: offsets are stored per name (default: stream.consumer). A new name
    /// starts from the beginning of the topic.
    #[arg(long)]
    pub consumer: Option<String>,
    /// Live registry aliases to predict with, comma-separated; missing ones are skipped
    /// (default: stream.aliases).
    #[arg(long, value_delimiter = ',')]
    pub aliases: Option<Vec<String>>,
    /// Most messages per PostgreSQL transaction (default: stream.batch_size).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Stop after this many seconds without a new message (default: run until SIGTERM).
    #[arg(long)]
    pub idle_exit: Option<f64>,
    /// Stop after this many messages.
    #[arg(long)]
    pub max_messages: Option<u64>,
    /// Re-read the registry's aliases every this many seconds (a promotion takes effect
    /// without a restart; run `reconcile` to rewrite the past).
    #[arg(long, default_value_t = 60)]
    pub refresh_secs: u64,
    /// Liveness file for an exec probe (the image has no shell): written when the consumer
    /// starts and again at least every 10 s while its loop runs — after every fetch and every
    /// committed batch — so `rps probe --file PATH --max-age 120` fails once the consumer hangs.
    #[arg(long, env = "RPS_STREAM_HEARTBEAT_FILE")]
    pub heartbeat_file: Option<std::path::PathBuf>,
    /// Ride out a lost Kafka broker or PostgreSQL server: reconnect (1 s, 2 s, 4 s … 30 s
    /// apart) and resume from the committed offsets, giving up (exit 6) after this many seconds
    /// without a committed batch. 0 exits at the first failure (leave restarts to Kubernetes).
    #[arg(long, default_value_t = 300)]
    pub reconnect_secs: u64,
    /// Testing aid: hold every transaction open this long before COMMIT (the crash test kills
    /// the consumer inside open transactions, whatever the build's speed).
    #[arg(long, hide = true, default_value_t = 0)]
    pub commit_delay_ms: u64,
}

#[derive(Debug, Clone, ClapArgs)]
pub struct ReconcileArgs {
    /// Live registry aliases, comma-separated (default: stream.aliases).
    #[arg(long, value_delimiter = ',')]
    pub aliases: Option<Vec<String>>,
    /// Only bars at or after this time (RFC 3339); default: the whole stored history.
    #[arg(long)]
    pub since: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error(transparent)]
    Params(#[from] rps_cli::ParamsError),
    #[error("bad configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Import(#[from] rps_store::import::ImportError),
    #[error("bad input: {0}")]
    Input(String),
    #[error("Kafka: {what} failed")]
    Kafka {
        what: String,
        #[source]
        source: Box<rskafka::client::error::Error>,
    },
    #[error("PostgreSQL: {what} failed")]
    Postgres {
        what: String,
        #[source]
        source: Box<tokio_postgres::Error>,
    },
    #[error(transparent)]
    Tracking(#[from] rps_tracking::TrackingError),
    #[error(transparent)]
    Model(#[from] rps_model::ModelError),
    #[error("model {model} needs feature {feature:?}, which the features: params do not build")]
    FeatureMismatch { model: String, feature: String },
    #[error("no live model: none of the aliases {aliases:?} of {models:?} is set in the registry")]
    NoLiveModel {
        models: Vec<String>,
        aliases: Vec<String>,
    },
    #[error("could not start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error(
        "Kafka: {topic}/{partition} jumped from offset {expected} to {got}: the broker skipped records (tansu 0.6 does this when a multi-record batch is fetched from its middle; produce with --batch 1)"
    )]
    Gap {
        topic: String,
        partition: i32,
        expected: i64,
        got: i64,
    },
    #[error("a background task failed: {0}")]
    Join(String),
    #[error("could not write the heartbeat file {path}: {source}")]
    Heartbeat {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Market(#[from] rps_market::MarketError),
    #[error("Kafka or PostgreSQL stayed unreachable for {secs} s (--reconnect-secs)")]
    Outage {
        secs: u64,
        #[source]
        last: Box<StreamError>,
    },
    #[error("{failures} polls of the market in a row failed (--max-failures)")]
    PollsFailed {
        failures: u32,
        #[source]
        last: Box<StreamError>,
    },
}

impl StageError for StreamError {
    fn exit_code(&self) -> u8 {
        match self {
            Self::Params(_) | Self::Config(_) | Self::FeatureMismatch { .. } => exit::CONFIG,
            Self::Import(_) | Self::Input(_) => exit::INPUT,
            Self::Kafka { .. } | Self::Postgres { .. } | Self::Gap { .. } => exit::REMOTE,
            Self::Tracking(e) if e.is_remote() => exit::REMOTE,
            Self::Tracking(_) => exit::STORAGE,
            Self::Model(_) | Self::NoLiveModel { .. } => exit::MODEL,
            Self::Runtime(_) | Self::Join(_) => exit::INTERNAL,
            Self::Heartbeat { .. } => exit::STORAGE,
            Self::Market(
                rps_market::MarketError::InvalidRequest { .. }
                | rps_market::MarketError::Setup { .. },
            ) => exit::CONFIG,
            Self::Market(_) => exit::REMOTE,
            Self::PollsFailed { last, .. } | Self::Outage { last, .. } => last.exit_code(),
        }
    }
}

/// A candle lacks an order-flow column a live model's features read (exit 4).
pub(crate) fn missing_column(symbol: &str, e: &rps_core::pipeline::PipelineError) -> StreamError {
    StreamError::Input(format!(
        "{symbol}: {e}: a live model cannot predict from these candles (publish them with the order-flow columns, e.g. data.source: binance or data.file.columns mapping trades and taker_buy_volume, or serve a model trained with features.flow: off)"
    ))
}

/// What the subcommands share once flags, env and params.yaml are merged.
struct Settings {
    /// The symbol's parameters (produce, reconcile); for consume and migrate, which work across
    /// symbols, the shared sections (the first symbol's set).
    params: Params,
    /// The models the live set is loaded from (consume: every symbol's; else the symbol's).
    bindings: Vec<live::Binding>,
    home: Home,
    brokers: String,
    topic: String,
    database_url: Option<String>,
    kafka_timeout: Duration,
}

impl Settings {
    fn new(args: &Args) -> Result<Self, StreamError> {
        let set = args.common.load_param_set()?;
        let (params, bindings) = match &args.command {
            // Across symbols: every symbol's bars, each with its own models.
            Command::Consume(_) | Command::Migrate => {
                (set.shared().clone(), live::bindings(set.iter()))
            }
            Command::Produce(_) | Command::Reconcile(_) => {
                let p = set.selected()?.clone();
                let b = vec![live::binding(&p)];
                (p, b)
            }
        };
        let s = &params.stream;
        Ok(Self {
            brokers: args
                .conn
                .brokers
                .clone()
                .unwrap_or_else(|| s.brokers.clone()),
            topic: args.conn.topic.clone().unwrap_or_else(|| s.topic.clone()),
            database_url: args.conn.database_url.clone().filter(|u| !u.is_empty()),
            kafka_timeout: Duration::from_secs(args.conn.kafka_timeout.max(1)),
            home: Home::new(&args.common.home),
            params,
            bindings,
        })
    }

    async fn db(&self) -> Result<Db, StreamError> {
        let url = self.database_url.as_deref().ok_or_else(|| {
            StreamError::Config("no PostgreSQL URL: set DATABASE_URL or --database-url".to_owned())
        })?;
        let mut db = Db::connect(url).await?;
        let applied = db.migrate().await?;
        if !applied.is_empty() {
            tracing::info!(?applied, "applied PostgreSQL migrations");
        }
        Ok(db)
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, StreamError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(StreamError::Runtime)
}

/// Run the stage.
pub fn run(args: &Args) -> Result<(), StreamError> {
    let settings = Settings::new(args)?;
    match &args.command {
        Command::Produce(a) => runtime()?.block_on(produce(&settings, a)),
        Command::Consume(a) => consume::consume(&settings, a),
        Command::Reconcile(a) => reconcile(&settings, a),
        Command::Migrate => runtime()?.block_on(async {
            let url = settings.database_url.as_deref().ok_or_else(|| {
                StreamError::Config(
                    "no PostgreSQL URL: set DATABASE_URL or --database-url".to_owned(),
                )
            })?;
            let applied = Db::connect(url).await?.migrate().await?;
            tracing::info!("migrations applied: {applied:?} (all others were already there)");
            Ok(())
        }),
    }
}

async fn produce(s: &Settings, a: &ProduceArgs) -> Result<(), StreamError> {
    if a.follow.follow {
        return poll::follow(s, a).await;
    }
    if !(a.speed >= 0.0 && a.speed.is_finite()) {
        return Err(StreamError::Config(format!(
            "--speed must be 0 or a positive number of bars per second, not {}",
            a.speed
        )));
    }
    let mut file = s.params.data.file.clone();
    if let Some(p) = &a.input {
        file.path.clone_from(p);
    }
    let mut bars = rps_store::import::read_file(&file)?;
    rps_core::candle::sort_dedup(&mut bars);
    let bars: Vec<Candle> = bars
        .into_iter()
        .skip(a.skip)
        .take(a.limit.unwrap_or(usize::MAX))
        .collect();
    let symbol = s.params.data.symbol.clone();
    let interval = s.params.data.interval.to_string();
    let client = kafka::connect(&s.brokers, s.kafka_timeout).await?;
    let parts =
        kafka::topic_partitions(&client, &s.topic, s.params.stream.partitions, true).await?;
    let n_parts = i32::try_from(parts.len()).unwrap_or(1);
    let target = kafka::partition_for(symbol.as_bytes(), n_parts);
    let pc = kafka::partition(&client, &s.topic, target).await?;
    let record = |c: &Candle| -> Result<Record, StreamError> {
        let value = serde_json::to_vec(&kafka::CandleMessage::new(&symbol, &interval, c))
            .map_err(|e| StreamError::Input(e.to_string()))?;
        Ok(Record {
            key: Some(symbol.as_bytes().to_vec()),
            value: Some(value),
            headers: BTreeMap::new(),
            timestamp: chrono::Utc::now(),
        })
    };
    let started = Instant::now();
    let chunk = if a.speed == 0.0 { a.batch.max(1) } else { 1 };
    let mut sent = 0usize;
    for block in bars.chunks(chunk) {
        let records = block.iter().map(record).collect::<Result<Vec<_>, _>>()?;
        pc.produce(records, Compression::NoCompression)
            .await
            .map_err(kafka::kafka_err("produce"))?;
        sent += block.len();
        if a.speed > 0.0 {
            let due = started + Duration::from_secs_f64(sent as f64 / a.speed);
            tokio::time::sleep_until(due.into()).await;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    tracing::info!(
        "produced {sent} bars of {symbol} to {}/{target} in {secs:.2} s ({:.0} bars/s)",
        s.topic,
        sent as f64 / secs.max(1e-9)
    );
    Ok(())
}

fn load_live(s: &Settings, aliases: &[String]) -> Result<Vec<live::LiveModel>, StreamError> {
    let registry = s.home.registry()?;
    let live = live::load_bound(registry.as_ref(), &s.bindings, aliases)?;
    if live.is_empty() {
        return Err(StreamError::NoLiveModel {
            models: s.bindings.iter().flat_map(|b| b.names.clone()).collect(),
            aliases: aliases.to_vec(),
        });
    }
    Ok(live)
}

/// What `reconcile` did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReconcileCounts {
    /// Bars of stored history looked at.
    pub bars: usize,
    /// Rows of live versions that were missing, now written.
    pub inserted: u64,
    /// Rows of live versions whose alias moved, now updated.
    pub alias_updated: u64,
    /// Rows of live versions already right.
    pub unchanged: u64,
    /// Rows of live versions with quantiles that had no band (written before migration 0003),
    /// now given one.
    pub band_filled: u64,
    /// Rows of versions no longer live, left as the record of what was predicted then.
    pub stale: u64,
    /// Score rows (live versions and baselines) written or changed.
    pub scores: u64,
}

/// The band of `p` for the stored row `key`, when `p` has one.
fn band_of(key: &RowKey, p: &Prediction) -> Option<Band> {
    Some(Band {
        key: key.clone(),
        median: p.median?,
        lower_80: p.lower_80?,
        upper_80: p.upper_80?,
    })
}

/// The scores of the stored history, from each live spec's batch frame: a target for every
/// present bar at or after `since` whose training target is known (its row's `target`, the
/// value [`score::Tracker`] gives online), the EWMA baseline over the stored bar volatilities
/// and the `har_rv_log` and `har_rv` baselines on the batch rows.
fn backfill_scores(
    live: &[live::LiveModel],
    specs: &[(String, online::FeatureSpec)],
    frames: &HashMap<&str, rps_core::features::FeatureFrame>,
    since: Option<chrono::DateTime<chrono::Utc>>,
    symbol: &str,
    lambda: f64,
) -> Result<(Vec<db::Target>, Vec<db::Score>), StreamError> {
    let ewma_key = score::ewma_key(live, symbol);
    let (mut targets, mut scores) = (Vec::new(), Vec::new());
    let from = since.map_or(i64::MIN, |t| t.timestamp_millis());
    for (key, spec) in specs {
        let Some(f) = frames.get(key.as_str()) else {
            continue;
        };
        let floor = spec.target.floor;
        let ewma: Vec<f64> = rps_core::baselines::ewma(&f.bar_vol, lambda)
            .into_iter()
            .map(|v| score::floored(v, floor))
            .collect();
        let h = spec.target.horizon.max(1);
        #[allow(clippy::needless_range_loop)] // i indexes the frame's columns and i + h
        for i in 0..f.len().saturating_sub(h) {
            if !f.present[i] || !f.target[i].is_finite() || f.ts[i] < from {
                continue;
            }
            let row = f.row(i);
            let truth = score::Truth {
                predicted_from: f.ts[i],
                bar_time: f.ts[i + h],
                realized: f.target[i],
                ewma: ewma[i],
                row: Some(&row),
            };
            score::collect(
                live,
                key,
                ewma_key,
                symbol,
                &truth,
                &mut targets,
                &mut scores,
            )?;
        }
    }
    Ok((targets, scores))
}

fn reconcile(s: &Settings, a: &ReconcileArgs) -> Result<(), StreamError> {
    let aliases = a
        .aliases
        .clone()
        .unwrap_or_else(|| s.params.stream.aliases.clone());
    let symbol = s.params.data.symbol.clone();
    let since = a
        .since
        .as_deref()
        .map(|t| {
            chrono::DateTime::parse_from_rfc3339(t)
                .map(|t| t.with_timezone(&chrono::Utc))
                .map_err(|e| StreamError::Config(format!("--since {t:?}: {e}")))
        })
        .transpose()?;
    let live = load_live(s, &aliases)?;
    tracing::info!("live models: {}", live::describe(&live));
    // Each live model's features from its own saved spec, like consume (checked the same way).
    let specs = live::specs(&live);
    for (_, spec) in &specs {
        OnlineFeatures::with_spec(spec, s.params.stream.history_bars)?;
    }
    let counts = runtime()?.block_on(async {
        let mut db = s.db().await?;
        // All stored history: the features of the first reconciled bar need the bars before it.
        let candles = db.candles(&symbol, None, None).await?;
        // A model trained with the order-flow features refuses bars without the columns.
        let from = since.map_or(0, |t| t.timestamp_millis());
        let start = candles.partition_point(|c| c.ts < from);
        for (_, spec) in &specs {
            spec.check_candles(&candles[start..])
                .map_err(|e| missing_column(&symbol, &e))?;
        }
        let existing = db.prediction_keys(&symbol, since).await?;
        let frames: HashMap<&str, rps_core::features::FeatureFrame> = specs
            .iter()
            .map(|(key, spec)| (key.as_str(), spec.frame(&candles)))
            .collect();
        let Some(grid) = specs.first().and_then(|(k, _)| frames.get(k.as_str())) else {
            return Ok(ReconcileCounts::default());
        };
        let mut c = ReconcileCounts::default();
        let mut inserts: Vec<Prediction> = Vec::new();
        let mut moved: Vec<(RowKey, Option<String>)> = Vec::new();
        let mut bands: Vec<Band> = Vec::new();
        let mut live_keys: HashSet<RowKey> = HashSet::new();
        for i in (0..grid.len()).filter(|&i| grid.present[i]) {
            let t = db::to_time(grid.ts[i])?;
            if since.is_some_and(|s| t < s) {
                continue;
            }
            c.bars += 1;
            for m in &live {
                let Some(frame) = frames.get(m.spec_key.as_str()) else {
                    continue;
                };
                let key = RowKey {
                    model: m.name.clone(),
                    version: m.version.to_string(),
                    bar_time: t,
                };
                let Some(stored) = existing.get(&key) else {
                    inserts.push(m.prediction(&symbol, t, &frame.row(i))?);
                    live_keys.insert(key);
                    continue;
                };
                let alias_moved = stored.alias.as_deref() != Some(m.alias.as_str());
                if alias_moved {
                    moved.push((key.clone(), Some(m.alias.clone())));
                }
                let band = if m.has_band() && !stored.has_band {
                    band_of(&key, &m.prediction(&symbol, t, &frame.row(i))?)
                } else {
                    None
                };
                match band {
                    Some(b) => bands.push(b),
                    None if !alias_moved => c.unchanged += 1,
                    None => {}
                }
                live_keys.insert(key);
            }
        }
        c.stale = existing.keys().filter(|k| !live_keys.contains(k)).count() as u64;
        for block in inserts.chunks(1000) {
            c.inserted += db
                .commit_batch(&[], block, &[], &[], &[])
                .await?
                .predictions;
        }
        c.alias_updated = db.set_aliases(&symbol, &moved).await?;
        c.band_filled = db.set_bands(&symbol, &bands).await?;
        // Scores last, from the stored forecasts as they now are: every reconciled bar whose
        // target is known, as the consumer scores it when the target's last bar closes.
        let (targets, scores) = backfill_scores(
            &live,
            &specs,
            &frames,
            since,
            &symbol,
            s.params.evaluate.ewma_lambda,
        )?;
        for block in targets.chunks(1000) {
            c.scores += db.commit_batch(&[], &[], block, &[], &[]).await?.scores;
        }
        for block in scores.chunks(5000) {
            c.scores += db.commit_batch(&[], &[], &[], block, &[]).await?.scores;
        }
        Ok::<_, StreamError>(c)
    })?;
    tracing::info!(
        "reconciled {symbol}: {} bars; {} rows inserted, {} aliases updated, {} unchanged, {} bands filled, {} rows of versions no longer live kept; {} score rows written",
        counts.bars,
        counts.inserted,
        counts.alias_updated,
        counts.unchanged,
        counts.band_filled,
        counts.stale,
        counts.scores
    );
    Ok(())
}

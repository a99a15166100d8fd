//! The PostgreSQL side: migrations, candles, predictions, scores and consumer offsets.
//!
//! Exactly-once: [`Db::commit_batch`] writes a batch's candles, its predictions (idempotent
//! upserts keyed by model, version, symbol, bar), the scores of the forecasts its bars completed
//! (idempotent upserts keyed the same way, [`crate::score`]) and the consumer's next offset in ONE
//! transaction. A consumer killed at any point leaves either all of a batch or none of it, and
//! on restart resumes from the stored offset with the stored candle history.

use crate::StreamError;
use chrono::{DateTime, Utc};
use rps_core::candle::Candle;
use std::collections::HashMap;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, NoTls, Transaction};

/// The migrations, in order: (version, name, SQL). Applied once each, recorded in
/// `schema_migrations`.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "0001_init", include_str!("../migrations/0001_init.sql")),
    (
        2,
        "0002_flow_columns",
        include_str!("../migrations/0002_flow_columns.sql"),
    ),
    (
        3,
        "0003_distribution_columns",
        include_str!("../migrations/0003_distribution_columns.sql"),
    ),
    (
        4,
        "0004_scores",
        include_str!("../migrations/0004_scores.sql"),
    ),
    (
        5,
        "0005_one_index_per_table",
        include_str!("../migrations/0005_one_index_per_table.sql"),
    ),
];

/// One prediction row.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    pub model: String,
    pub version: String,
    pub alias: Option<String>,
    pub symbol: String,
    pub bar_time: DateTime<Utc>,
    /// `volatility` or `signal`.
    pub task: &'static str,
    pub volatility: Option<f64>,
    /// The median of σ and the central 80 % band `[q0.1, q0.9]`, for a volatility model with
    /// quantiles (NULL otherwise).
    pub median: Option<f64>,
    pub lower_80: Option<f64>,
    pub upper_80: Option<f64>,
    pub signal: Option<String>,
    pub p_sell: Option<f64>,
    pub p_hold: Option<f64>,
    pub p_buy: Option<f64>,
}

/// One scored forecast (a `scores` row; see migration 0004 and [`crate::score`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    pub model: String,
    pub version: String,
    pub alias: Option<String>,
    pub symbol: String,
    /// Open time of the last bar of the target window (the bar whose close scored it).
    pub bar_time: DateTime<Utc>,
    /// `predictions.bar_time` of the forecast: the bar it was made from.
    pub predicted_from: DateTime<Utc>,
    pub realized: f64,
    pub forecast: f64,
    pub qlike: f64,
    pub log_error: f64,
    /// Whether the 80 % band covered `realized`; `None` without a band.
    pub covered_80: Option<bool>,
}

/// A realized target to score the stored volatility forecasts of `versions` made from
/// `predicted_from` against (read in the batch's transaction, after its predictions are written).
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub symbol: String,
    pub predicted_from: DateTime<Utc>,
    pub bar_time: DateTime<Utc>,
    pub realized: f64,
    /// The (model, version) pairs whose feature spec defines this target: the live versions.
    pub versions: Vec<(String, String)>,
}

/// Rows a batch inserted or changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub predictions: u64,
    pub scores: u64,
}

/// What reconcile needs to know of a stored prediction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub alias: Option<String>,
    /// Whether it has its median and 80 % band (rows written before migration 0003 do not).
    pub has_band: bool,
}

/// The median and 80 % band of a stored prediction that lacks them.
#[derive(Debug, Clone, PartialEq)]
pub struct Band {
    pub key: RowKey,
    pub median: f64,
    pub lower_80: f64,
    pub upper_80: f64,
}

/// A stored prediction's identity, for reconciling.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RowKey {
    pub model: String,
    pub version: String,
    pub bar_time: DateTime<Utc>,
}

pub(crate) fn pg_err(what: &str) -> impl FnOnce(tokio_postgres::Error) -> StreamError + '_ {
    move |source| StreamError::Postgres {
        what: what.to_owned(),
        source: Box::new(source),
    }
}

/// Milliseconds since the epoch → a UTC time.
pub fn to_time(ms: i64) -> Result<DateTime<Utc>, StreamError> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| StreamError::Input(format!("bar time {ms} ms is out of range")))
}

/// A PostgreSQL connection.
pub struct Db {
    client: Client,
    /// Wait this long before each batch's COMMIT (tests only; zero otherwise).
    pub commit_delay: std::time::Duration,
    /// Whether [`Db::commit`] still tries `COPY` for the rows of new bars: cleared for the
    /// connection's lifetime the first time such a row collided with a stored one (another
    /// writer on the same tables), after which every batch takes the upsert path.
    copy_ok: bool,
}

/// What one consume batch writes: owned, so that it can be committed by a task of its own while
/// the next batch is computed.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    /// The batch's candles, each with whether it is *new*: newer than every stored bar of its
    /// symbol (the online features accepted it), so that no stored row can have its key.
    pub candles: Vec<(String, Candle, bool)>,
    /// Predictions of new bars only.
    pub predictions: Vec<Prediction>,
    /// Targets completed by new bars: scores of new keys only.
    pub targets: Vec<Target>,
    pub scores: Vec<Score>,
    /// (consumer, topic, partition, next offset), stored in the same transaction.
    pub offsets: Vec<(String, String, i32, i64)>,
}

impl Batch {
    /// Bars in the batch.
    pub fn len(&self) -> usize {
        self.candles.len()
    }

    /// Whether it has no candle.
    pub fn is_empty(&self) -> bool {
        self.candles.is_empty()
    }
}

// The COPY column lists; predicted_at and scored_at take their default, now(): the
// transaction's start, as the upserts' now().
const COPY_CANDLES: &str = "COPY candles (symbol, bar_time, open, high, low, close, volume,
  quote_volume, trades, taker_buy_volume, taker_buy_quote_volume) FROM STDIN (FORMAT binary)";
const CANDLE_TYPES: &[Type] = &[
    Type::TEXT,
    Type::TIMESTAMPTZ,
    Type::FLOAT8,
    Type::FLOAT8,
    Type::FLOAT8,
    Type::FLOAT8,
    Type::FLOAT8,
    Type::FLOAT8,
    Type::INT8,
    Type::FLOAT8,
    Type::FLOAT8,
];
const COPY_PREDICTIONS: &str = "COPY predictions (model, version, alias, symbol, bar_time, task,
  volatility, signal, p_sell, p_hold, p_buy, median, lower_80, upper_80) FROM STDIN (FORMAT binary)";
const PREDICTION_TYPES: &[Type] = &[
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TIMESTAMPTZ,
    Type::TEXT,
    Type::FLOAT8,
    Type::TEXT,
    Type::FLOAT8,
    Type::FLOAT8,
    Type::FLOAT8,
    Type::FLOAT8,
    Type::FLOAT8,
    Type::FLOAT8,
];
const COPY_SCORES: &str = "COPY scores (model, version, alias, symbol, bar_time, predicted_from,
  realized, forecast, qlike, log_error, covered_80) FROM STDIN (FORMAT binary)";
const SCORE_TYPES: &[Type] = &[
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TIMESTAMPTZ,
    Type::TIMESTAMPTZ,
    Type::FLOAT8,
    Type::FLOAT8,
    Type::FLOAT8,
    Type::FLOAT8,
    Type::BOOL,
];

/// `rows` through `COPY … FROM STDIN (FORMAT binary)` in `tx`, each row's values given by
/// `values`; the number of rows written.
async fn copy_rows<T, const N: usize>(
    tx: &Transaction<'_>,
    sql: &str,
    types: &[Type],
    rows: &[T],
    values: impl for<'a> Fn(&'a T) -> [&'a (dyn ToSql + Sync); N],
    what: &str,
) -> Result<u64, StreamError> {
    let sink = tx.copy_in(sql).await.map_err(pg_err(what))?;
    let mut writer = std::pin::pin!(BinaryCopyInWriter::new(sink, types));
    for r in rows {
        writer
            .as_mut()
            .write(&values(r))
            .await
            .map_err(pg_err(what))?;
    }
    writer.as_mut().finish().await.map_err(pg_err(what))
}

/// Whether `e` is a unique violation (SQLSTATE 23505): a row's key is already stored.
fn is_unique_violation(e: &StreamError) -> bool {
    matches!(e, StreamError::Postgres { source, .. }
        if source.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION))
}

// Each batch is one statement per table over arrays (UNNEST), not one round trip per row.
const UPSERT_CANDLES: &str =
    "INSERT INTO candles (symbol, bar_time, open, high, low, close, volume,
  quote_volume, trades, taker_buy_volume, taker_buy_quote_volume)
SELECT * FROM UNNEST($1::text[], $2::timestamptz[], $3::float8[], $4::float8[], $5::float8[],
  $6::float8[], $7::float8[], $8::float8[], $9::int8[], $10::float8[], $11::float8[])
ON CONFLICT (symbol, bar_time) DO UPDATE SET open = EXCLUDED.open, high = EXCLUDED.high,
  low = EXCLUDED.low, close = EXCLUDED.close, volume = EXCLUDED.volume,
  quote_volume = EXCLUDED.quote_volume, trades = EXCLUDED.trades,
  taker_buy_volume = EXCLUDED.taker_buy_volume,
  taker_buy_quote_volume = EXCLUDED.taker_buy_quote_volume
WHERE (candles.open, candles.high, candles.low, candles.close, candles.volume,
       candles.quote_volume, candles.trades, candles.taker_buy_volume,
       candles.taker_buy_quote_volume)
  IS DISTINCT FROM (EXCLUDED.open, EXCLUDED.high, EXCLUDED.low, EXCLUDED.close, EXCLUDED.volume,
       EXCLUDED.quote_volume, EXCLUDED.trades, EXCLUDED.taker_buy_volume,
       EXCLUDED.taker_buy_quote_volume)";

// A row is rewritten only when something in it changed: a replay leaves predicted_at alone.
const UPSERT_PREDICTIONS: &str = "INSERT INTO predictions
  (model, version, alias, symbol, bar_time, task, volatility, signal, p_sell, p_hold, p_buy,
   median, lower_80, upper_80, predicted_at)
SELECT u.*, now() FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[],
  $6::text[], $7::float8[], $8::text[], $9::float8[], $10::float8[], $11::float8[],
  $12::float8[], $13::float8[], $14::float8[]) AS u
ON CONFLICT (model, version, symbol, bar_time) DO UPDATE SET alias = EXCLUDED.alias,
  task = EXCLUDED.task, volatility = EXCLUDED.volatility, signal = EXCLUDED.signal,
  p_sell = EXCLUDED.p_sell, p_hold = EXCLUDED.p_hold, p_buy = EXCLUDED.p_buy,
  median = EXCLUDED.median, lower_80 = EXCLUDED.lower_80, upper_80 = EXCLUDED.upper_80,
  predicted_at = EXCLUDED.predicted_at
WHERE (predictions.alias, predictions.task, predictions.volatility, predictions.signal,
       predictions.p_sell, predictions.p_hold, predictions.p_buy,
       predictions.median, predictions.lower_80, predictions.upper_80)
  IS DISTINCT FROM (EXCLUDED.alias, EXCLUDED.task, EXCLUDED.volatility, EXCLUDED.signal,
       EXCLUDED.p_sell, EXCLUDED.p_hold, EXCLUDED.p_buy,
       EXCLUDED.median, EXCLUDED.lower_80, EXCLUDED.upper_80)";

/// The last of each key, in first-seen order: one statement may not upsert a row twice.
fn last_per_key<'a, T, K: std::hash::Hash + Eq>(
    rows: &'a [T],
    key: impl Fn(&'a T) -> K,
) -> Vec<&'a T> {
    let mut at: HashMap<K, usize> = HashMap::with_capacity(rows.len());
    let mut out: Vec<&T> = Vec::with_capacity(rows.len());
    for r in rows {
        match at.entry(key(r)) {
            std::collections::hash_map::Entry::Occupied(e) => out[*e.get()] = r,
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(out.len());
                out.push(r);
            }
        }
    }
    out
}

// The stored volatility forecasts made from the given (symbol, bar) pairs.
const STORED_FORECASTS: &str = "SELECT p.model, p.version, p.alias, p.symbol, p.bar_time,
  p.volatility, p.lower_80, p.upper_80
FROM predictions p JOIN (SELECT DISTINCT * FROM UNNEST($1::text[], $2::timestamptz[])) AS u(symbol, bar_time)
  ON p.symbol = u.symbol AND p.bar_time = u.bar_time
WHERE p.task = 'volatility' AND p.volatility IS NOT NULL";

// As the predictions: a replay rewrites nothing and leaves scored_at alone.
const UPSERT_SCORES: &str = "INSERT INTO scores
  (model, version, alias, symbol, bar_time, predicted_from, realized, forecast, qlike, log_error,
   covered_80, scored_at)
SELECT u.*, now() FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[],
  $6::timestamptz[], $7::float8[], $8::float8[], $9::float8[], $10::float8[], $11::bool[]) AS u
ON CONFLICT (model, version, symbol, bar_time) DO UPDATE SET alias = EXCLUDED.alias,
  predicted_from = EXCLUDED.predicted_from, realized = EXCLUDED.realized,
  forecast = EXCLUDED.forecast, qlike = EXCLUDED.qlike, log_error = EXCLUDED.log_error,
  covered_80 = EXCLUDED.covered_80, scored_at = EXCLUDED.scored_at
WHERE (scores.alias, scores.predicted_from, scores.realized, scores.forecast, scores.qlike,
       scores.log_error, scores.covered_80)
  IS DISTINCT FROM (EXCLUDED.alias, EXCLUDED.predicted_from, EXCLUDED.realized,
       EXCLUDED.forecast, EXCLUDED.qlike, EXCLUDED.log_error, EXCLUDED.covered_80)";

/// A stored forecast: model, version, alias, symbol, bar_time, volatility, lower_80, upper_80.
pub type StoredForecast = (
    String,
    String,
    Option<String>,
    String,
    DateTime<Utc>,
    f64,
    Option<f64>,
    Option<f64>,
);

/// Score the stored forecasts `rows` (model, version, alias, symbol, bar_time, volatility,
/// lower_80, upper_80) against `targets`: one score per row whose (model, version) a target
/// of its symbol and bar lists.
pub fn score_stored(
    targets: &[Target],
    rows: &[StoredForecast],
) -> Result<Vec<Score>, StreamError> {
    let by_key: HashMap<(&str, DateTime<Utc>), Vec<&Target>> =
        targets.iter().fold(HashMap::new(), |mut m, t| {
            m.entry((t.symbol.as_str(), t.predicted_from))
                .or_default()
                .push(t);
            m
        });
    let mut out = Vec::new();
    for (model, version, alias, symbol, at, forecast, lo, hi) in rows {
        let Some(ts) = by_key.get(&(symbol.as_str(), *at)) else {
            continue;
        };
        for t in ts {
            if t.versions.iter().any(|(m, v)| m == model && v == version) {
                out.push(Score::new(
                    model,
                    version,
                    alias.as_deref(),
                    symbol,
                    at.timestamp_millis(),
                    t.bar_time.timestamp_millis(),
                    t.realized,
                    *forecast,
                    lo.zip(*hi),
                )?);
            }
        }
    }
    Ok(out)
}

/// Upsert `candles` (the last of each key) in `tx`.
async fn upsert_candles(
    tx: &Transaction<'_>,
    candles: &[(String, Candle)],
) -> Result<(), StreamError> {
    let rows = last_per_key(candles, |(s, c)| (s.as_str(), c.ts));
    let times = rows
        .iter()
        .map(|(_, c)| to_time(c.ts))
        .collect::<Result<Vec<_>, _>>()?;
    let col = |f: fn(&Candle) -> f64| rows.iter().map(|(_, c)| f(c)).collect::<Vec<f64>>();
    let symbols: Vec<&str> = rows.iter().map(|(s, _)| s.as_str()).collect();
    let opt = |f: fn(&Candle) -> Option<f64>| {
        rows.iter().map(|(_, c)| f(c)).collect::<Vec<Option<f64>>>()
    };
    let trades: Vec<Option<i64>> = rows
        .iter()
        .map(|(_, c)| c.trades.map(|n| i64::try_from(n).unwrap_or(i64::MAX)))
        .collect();
    tx.execute(
        UPSERT_CANDLES,
        &[
            &symbols,
            &times,
            &col(|c| c.open),
            &col(|c| c.high),
            &col(|c| c.low),
            &col(|c| c.close),
            &col(|c| c.volume),
            &opt(|c| c.quote_volume),
            &trades,
            &opt(|c| c.taker_buy_volume),
            &opt(|c| c.taker_buy_quote_volume),
        ],
    )
    .await
    .map_err(pg_err("upsert the candles"))?;
    Ok(())
}

/// The scores of the stored forecasts `targets` complete (read in `tx`, after the batch's own
/// predictions are written).
async fn stored_scores(
    tx: &Transaction<'_>,
    targets: &[Target],
) -> Result<Vec<Score>, StreamError> {
    if targets.is_empty() {
        return Ok(Vec::new());
    }
    let symbols: Vec<&str> = targets.iter().map(|t| t.symbol.as_str()).collect();
    let times: Vec<DateTime<Utc>> = targets.iter().map(|t| t.predicted_from).collect();
    let rows: Vec<_> = tx
        .query(STORED_FORECASTS, &[&symbols, &times])
        .await
        .map_err(pg_err("read the forecasts to score"))?
        .iter()
        .map(|r| {
            (
                r.get(0),
                r.get(1),
                r.get(2),
                r.get(3),
                r.get(4),
                r.get(5),
                r.get(6),
                r.get(7),
            )
        })
        .collect();
    score_stored(targets, &rows)
}

const UPSERT_OFFSET: &str =
    "INSERT INTO stream_offsets (consumer, topic, partition, next_offset, updated_at)
VALUES ($1, $2, $3, $4, now())
ON CONFLICT (consumer, topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset,
  updated_at = EXCLUDED.updated_at";

impl Db {
    /// Connect (`postgres://user:pass@host:port/db` or a key=value string). TLS is not
    /// supported yet: use a loopback, a private network or a TLS-terminating proxy.
    pub async fn connect(url: &str) -> Result<Self, StreamError> {
        let (client, connection) = tokio_postgres::connect(url, NoTls)
            .await
            .map_err(pg_err("connect to PostgreSQL"))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::error!(error = %e, "PostgreSQL connection closed");
            }
        });
        Ok(Self {
            client,
            commit_delay: std::time::Duration::ZERO,
            copy_ok: true,
        })
    }

    /// Apply the migrations not applied yet, each in its own transaction, under an advisory
    /// lock (two consumers starting together migrate once). Returns the versions applied.
    pub async fn migrate(&mut self) -> Result<Vec<i32>, StreamError> {
        let tx = self
            .client
            .transaction()
            .await
            .map_err(pg_err("begin migration"))?;
        tx.batch_execute(
            "SELECT pg_advisory_xact_lock(7243105);
             CREATE TABLE IF NOT EXISTS schema_migrations (
               version integer PRIMARY KEY, name text NOT NULL,
               applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await
        .map_err(pg_err("create schema_migrations"))?;
        let done: Vec<i32> = tx
            .query("SELECT version FROM schema_migrations", &[])
            .await
            .map_err(pg_err("read schema_migrations"))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut applied = Vec::new();
        for (version, name, sql) in MIGRATIONS {
            if done.contains(version) {
                continue;
            }
            tx.batch_execute(sql)
                .await
                .map_err(pg_err(&format!("apply migration {name}")))?;
            tx.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                &[version, name],
            )
            .await
            .map_err(pg_err("record migration"))?;
            applied.push(*version);
        }
        tx.commit().await.map_err(pg_err("commit migrations"))?;
        Ok(applied)
    }

    /// The stored next offset of `consumer` on `topic`/`partition`.
    pub async fn next_offset(
        &self,
        consumer: &str,
        topic: &str,
        partition: i32,
    ) -> Result<Option<i64>, StreamError> {
        let row = self
            .client
            .query_opt(
                "SELECT next_offset FROM stream_offsets WHERE consumer = $1 AND topic = $2 AND partition = $3",
                &[&consumer, &topic, &partition],
            )
            .await
            .map_err(pg_err("read the stored offset"))?;
        Ok(row.map(|r| r.get(0)))
    }

    /// The newest `limit` candles of `symbol` at or after `since`, oldest first.
    pub async fn candles(
        &self,
        symbol: &str,
        since: Option<DateTime<Utc>>,
        limit: Option<i64>,
    ) -> Result<Vec<Candle>, StreamError> {
        let since = since.unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
        let limit = limit.unwrap_or(i64::MAX);
        let rows = self
            .client
            .query(
                "SELECT bar_time, open, high, low, close, volume, quote_volume, trades,
                   taker_buy_volume, taker_buy_quote_volume FROM (
                   SELECT * FROM candles WHERE symbol = $1 AND bar_time >= $2
                   ORDER BY bar_time DESC LIMIT $3) c ORDER BY bar_time",
                &[&symbol, &since, &limit],
            )
            .await
            .map_err(pg_err("read candles"))?;
        Ok(rows
            .iter()
            .map(|r| Candle {
                ts: r.get::<_, DateTime<Utc>>(0).timestamp_millis(),
                open: r.get(1),
                high: r.get(2),
                low: r.get(3),
                close: r.get(4),
                volume: r.get(5),
                quote_volume: r.get(6),
                trades: r
                    .get::<_, Option<i64>>(7)
                    .and_then(|n| u64::try_from(n).ok()),
                taker_buy_volume: r.get(8),
                taker_buy_quote_volume: r.get(9),
            })
            .collect())
    }

    /// Stored predictions of `symbol` at or after `since`: key → alias and whether it has a band.
    pub async fn prediction_keys(
        &self,
        symbol: &str,
        since: Option<DateTime<Utc>>,
    ) -> Result<HashMap<RowKey, Stored>, StreamError> {
        let since = since.unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
        let rows = self
            .client
            .query(
                "SELECT model, version, bar_time, alias, median IS NOT NULL AND lower_80 IS NOT NULL \
                   AND upper_80 IS NOT NULL FROM predictions WHERE symbol = $1 AND bar_time >= $2",
                &[&symbol, &since],
            )
            .await
            .map_err(pg_err("read predictions"))?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    RowKey {
                        model: r.get(0),
                        version: r.get(1),
                        bar_time: r.get(2),
                    },
                    Stored {
                        alias: r.get(3),
                        has_band: r.get(4),
                    },
                )
            })
            .collect())
    }

    /// Write candles, predictions, scores and (when given) the consumer's next offsets in one
    /// transaction. `targets` score the stored forecasts (those of this batch included) of the
    /// versions they list; `scores` are written as they are (the baselines). Returns the number
    /// of prediction and score rows inserted or changed.
    pub async fn commit_batch(
        &mut self,
        candles: &[(String, Candle)],
        predictions: &[Prediction],
        targets: &[Target],
        scores: &[Score],
        offsets: &[(&str, &str, i32, i64)],
    ) -> Result<Written, StreamError> {
        let tx = self
            .client
            .transaction()
            .await
            .map_err(pg_err("begin a batch"))?;
        if !candles.is_empty() {
            upsert_candles(&tx, candles).await?;
        }
        let mut changed = 0;
        if !predictions.is_empty() {
            let rows = last_per_key(predictions, |p| {
                (
                    p.model.as_str(),
                    p.version.as_str(),
                    p.symbol.as_str(),
                    p.bar_time,
                )
            });
            let text =
                |f: fn(&Prediction) -> &str| rows.iter().map(|p| f(p)).collect::<Vec<&str>>();
            let opt_text =
                |f: fn(&Prediction) -> Option<&str>| rows.iter().map(|p| f(p)).collect::<Vec<_>>();
            let num =
                |f: fn(&Prediction) -> Option<f64>| rows.iter().map(|p| f(p)).collect::<Vec<_>>();
            let times: Vec<DateTime<Utc>> = rows.iter().map(|p| p.bar_time).collect();
            changed = tx
                .execute(
                    UPSERT_PREDICTIONS,
                    &[
                        &text(|p| &p.model),
                        &text(|p| &p.version),
                        &opt_text(|p| p.alias.as_deref()),
                        &text(|p| &p.symbol),
                        &times,
                        &text(|p| p.task),
                        &num(|p| p.volatility),
                        &opt_text(|p| p.signal.as_deref()),
                        &num(|p| p.p_sell),
                        &num(|p| p.p_hold),
                        &num(|p| p.p_buy),
                        &num(|p| p.median),
                        &num(|p| p.lower_80),
                        &num(|p| p.upper_80),
                    ],
                )
                .await
                .map_err(pg_err("upsert the predictions"))?;
        }
        let mut all = stored_scores(&tx, targets).await?;
        all.extend_from_slice(scores);
        let mut scored = 0;
        if !all.is_empty() {
            let rows = last_per_key(&all, |s| {
                (
                    s.model.as_str(),
                    s.version.as_str(),
                    s.symbol.as_str(),
                    s.bar_time,
                )
            });
            let text = |f: fn(&Score) -> &str| rows.iter().map(|s| f(s)).collect::<Vec<&str>>();
            let time =
                |f: fn(&Score) -> DateTime<Utc>| rows.iter().map(|s| f(s)).collect::<Vec<_>>();
            let num = |f: fn(&Score) -> f64| rows.iter().map(|s| f(s)).collect::<Vec<_>>();
            let alias: Vec<Option<&str>> = rows.iter().map(|s| s.alias.as_deref()).collect();
            let covered: Vec<Option<bool>> = rows.iter().map(|s| s.covered_80).collect();
            scored = tx
                .execute(
                    UPSERT_SCORES,
                    &[
                        &text(|s| &s.model),
                        &text(|s| &s.version),
                        &alias,
                        &text(|s| &s.symbol),
                        &time(|s| s.bar_time),
                        &time(|s| s.predicted_from),
                        &num(|s| s.realized),
                        &num(|s| s.forecast),
                        &num(|s| s.qlike),
                        &num(|s| s.log_error),
                        &covered,
                    ],
                )
                .await
                .map_err(pg_err("upsert the scores"))?;
        }
        for (consumer, topic, partition, next) in offsets {
            tx.execute(UPSERT_OFFSET, &[consumer, topic, partition, next])
                .await
                .map_err(pg_err("store the offset"))?;
        }
        if !self.commit_delay.is_zero() {
            tokio::time::sleep(self.commit_delay).await;
        }
        tx.commit().await.map_err(pg_err("commit a batch"))?;
        Ok(Written {
            predictions: changed,
            scores: scored,
        })
    }

    /// Commit a consume batch: its candles, predictions, scores and offsets in one transaction.
    ///
    /// The rows of new bars (and the predictions and scores made from them) have keys no stored
    /// row has while this consumer is the tables' only writer, so they go in by binary `COPY`,
    /// without the upserts' conflict checks; replayed candles are upserted. Should a new row's
    /// key be stored after all (another writer), PostgreSQL refuses the COPY with a unique
    /// violation, the transaction is rolled back whole and the batch is redone, and every later
    /// one, through the idempotent upserts of [`Db::commit_batch`]. Either way the batch and its
    /// offsets are one transaction.
    pub async fn commit(&mut self, b: &Batch) -> Result<Written, StreamError> {
        if self.copy_ok {
            match self.commit_copy(b).await {
                Err(e) if is_unique_violation(&e) => {
                    tracing::info!(
                        error = %rps_cli::error_chain(&e),
                        "a new bar's row is already stored (another writer?): upserting from now on"
                    );
                    self.copy_ok = false;
                }
                r => return r,
            }
        }
        let candles: Vec<(String, Candle)> =
            b.candles.iter().map(|(s, c, _)| (s.clone(), *c)).collect();
        let offsets: Vec<(&str, &str, i32, i64)> = b
            .offsets
            .iter()
            .map(|(c, t, p, n)| (c.as_str(), t.as_str(), *p, *n))
            .collect();
        self.commit_batch(&candles, &b.predictions, &b.targets, &b.scores, &offsets)
            .await
    }

    async fn commit_copy(&mut self, b: &Batch) -> Result<Written, StreamError> {
        struct CandleRow<'a> {
            symbol: &'a str,
            at: DateTime<Utc>,
            c: &'a Candle,
            trades: Option<i64>,
        }
        let mut new = Vec::with_capacity(b.candles.len());
        let mut replayed: Vec<(String, Candle)> = Vec::new();
        for (symbol, c, is_new) in &b.candles {
            if *is_new {
                new.push(CandleRow {
                    symbol,
                    at: to_time(c.ts)?,
                    c,
                    trades: c.trades.map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
                });
            } else {
                replayed.push((symbol.clone(), *c));
            }
        }
        let tx = self
            .client
            .transaction()
            .await
            .map_err(pg_err("begin a batch"))?;
        if !new.is_empty() {
            copy_rows(
                &tx,
                COPY_CANDLES,
                CANDLE_TYPES,
                &new,
                |r| {
                    [
                        &r.symbol,
                        &r.at,
                        &r.c.open,
                        &r.c.high,
                        &r.c.low,
                        &r.c.close,
                        &r.c.volume,
                        &r.c.quote_volume,
                        &r.trades,
                        &r.c.taker_buy_volume,
                        &r.c.taker_buy_quote_volume,
                    ]
                },
                "copy the candles",
            )
            .await?;
        }
        if !replayed.is_empty() {
            upsert_candles(&tx, &replayed).await?;
        }
        let mut written = Written::default();
        if !b.predictions.is_empty() {
            written.predictions = copy_rows(
                &tx,
                COPY_PREDICTIONS,
                PREDICTION_TYPES,
                &b.predictions,
                |p| {
                    [
                        &p.model,
                        &p.version,
                        &p.alias,
                        &p.symbol,
                        &p.bar_time,
                        &p.task,
                        &p.volatility,
                        &p.signal,
                        &p.p_sell,
                        &p.p_hold,
                        &p.p_buy,
                        &p.median,
                        &p.lower_80,
                        &p.upper_80,
                    ]
                },
                "copy the predictions",
            )
            .await?;
        }
        let mut all = stored_scores(&tx, &b.targets).await?;
        all.extend_from_slice(&b.scores);
        if !all.is_empty() {
            written.scores = copy_rows(
                &tx,
                COPY_SCORES,
                SCORE_TYPES,
                &all,
                |s| {
                    [
                        &s.model,
                        &s.version,
                        &s.alias,
                        &s.symbol,
                        &s.bar_time,
                        &s.predicted_from,
                        &s.realized,
                        &s.forecast,
                        &s.qlike,
                        &s.log_error,
                        &s.covered_80,
                    ]
                },
                "copy the scores",
            )
            .await?;
        }
        for (consumer, topic, partition, next) in &b.offsets {
            tx.execute(UPSERT_OFFSET, &[consumer, topic, partition, next])
                .await
                .map_err(pg_err("store the offset"))?;
        }
        if !self.commit_delay.is_zero() {
            tokio::time::sleep(self.commit_delay).await;
        }
        tx.commit().await.map_err(pg_err("commit a batch"))?;
        Ok(written)
    }

    /// Fill the median and 80 % band of existing rows that have none (reconcile, after
    /// migration 0003). Only rows still without a band are touched: the mean, the alias and
    /// `predicted_at` stay what they were, and a band a consumer wrote meanwhile is kept.
    pub async fn set_bands(&mut self, symbol: &str, bands: &[Band]) -> Result<u64, StreamError> {
        let tx = self
            .client
            .transaction()
            .await
            .map_err(pg_err("begin band update"))?;
        let mut n = 0;
        for b in bands {
            let k = &b.key;
            n += tx
                .execute(
                    "UPDATE predictions SET median = $5, lower_80 = $6, upper_80 = $7 \
                     WHERE model = $1 AND version = $2 AND symbol = $3 AND bar_time = $4 \
                     AND (median IS NULL OR lower_80 IS NULL OR upper_80 IS NULL)",
                    &[
                        &k.model,
                        &k.version,
                        &symbol,
                        &k.bar_time,
                        &b.median,
                        &b.lower_80,
                        &b.upper_80,
                    ],
                )
                .await
                .map_err(pg_err("fill a band"))?;
        }
        tx.commit().await.map_err(pg_err("commit band update"))?;
        Ok(n)
    }

    /// Set the alias of existing rows (reconcile, when an alias moved but the version stayed).
    pub async fn set_aliases(
        &mut self,
        symbol: &str,
        rows: &[(RowKey, Option<String>)],
    ) -> Result<u64, StreamError> {
        let tx = self
            .client
            .transaction()
            .await
            .map_err(pg_err("begin alias update"))?;
        let mut n = 0;
        for (k, alias) in rows {
            n += tx
                .execute(
                    "UPDATE predictions SET alias = $5 WHERE model = $1 AND version = $2 AND symbol = $3 AND bar_time = $4",
                    &[&k.model, &k.version, &symbol, &k.bar_time, alias],
                )
                .await
                .map_err(pg_err("update an alias"))?;
        }
        tx.commit().await.map_err(pg_err("commit alias update"))?;
        Ok(n)
    }
}

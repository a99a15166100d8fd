//! The raw candle dataset: monthly Parquet partitions and a manifest.
//!
//! Layout under the dataset root:
//! ```text
//! _manifest.json                       the snapshot readers use, replaced last
//! part-2018-01-<hash8>.parquet         one file per calendar month (UTC), content-addressed
//! ```
//! A write stores the new partitions under new names first and swaps the manifest last; files no
//! longer referenced are deleted afterwards. A killed writer therefore leaves the previous
//! snapshot intact, and rewriting unchanged months is skipped (same content, same name).

use crate::object::{ObjectStore, StoreError};
use crate::parquet_io::{self, ParquetError};
use arrow::array::{
    Array, ArrayRef, Float64Array, RecordBatch, TimestampMillisecondArray, UInt64Array,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use rps_core::candle::{Candle, Interval};
use rps_core::time::year_month;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

pub const MANIFEST: &str = "_manifest.json";

/// The columns of the raw schema every partition has.
pub const RAW_COLUMNS: [&str; 6] = ["ts", "open", "high", "low", "close", "volume"];

/// The optional order-flow columns of Binance klines (issue #16), nullable: `quote_volume`,
/// `taker_buy_volume`, `taker_buy_quote_volume` as `Float64`, `trades` as `UInt64`. A partition
/// has a column when at least one of its bars has the value (so datasets from sources without
/// them — Coinbase files, CoinCap, synthetic — are written exactly as before); a partition
/// without a column (written before they existed, too) reads as `None`.
pub const FLOW_COLUMNS: [&str; 4] = [
    "quote_volume",
    "trades",
    "taker_buy_volume",
    "taker_buy_quote_volume",
];

/// Every column a scan projects: [`RAW_COLUMNS`] then [`FLOW_COLUMNS`].
const SCAN_COLUMNS: [&str; 10] = [
    "ts",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "quote_volume",
    "trades",
    "taker_buy_volume",
    "taker_buy_quote_volume",
];

/// A raw-dataset failure.
#[derive(Debug, thiserror::Error)]
pub enum RawError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Parquet(#[from] ParquetError),
    #[error("bad manifest {uri}: {source}")]
    Manifest {
        uri: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{uri}: {problem}")]
    Schema { uri: String, problem: String },
    #[error(
        "partition {uri} does not match the manifest: {algorithm} {actual}, the manifest records {expected} (edited or damaged after it was written; re-extract with --full-refresh)"
    )]
    Checksum {
        uri: String,
        /// `crc32c` or `sha256`: the checksum that was compared.
        algorithm: &'static str,
        expected: String,
        actual: String,
    },
    #[error("dataset at {uri} holds {found} bars, but {wanted} was asked for")]
    IntervalMismatch {
        uri: String,
        found: String,
        wanted: String,
    },
    #[error(
        "the raw dataset at {uri} holds {symbol} from the source {found:?}; merging bars from {wanted:?} into it would mix two datasets (use --full-refresh to replace it, or another --home)"
    )]
    SourceMismatch {
        uri: String,
        symbol: String,
        found: String,
        wanted: String,
    },
}

impl RawError {
    /// Whether the dataset's own content is bad (unreadable Parquet, a wrong schema, a corrupt
    /// manifest, a partition that does not match its checksum) rather than the storage failing:
    /// stages report it as bad input data (exit 4).
    pub fn is_bad_data(&self) -> bool {
        matches!(
            self,
            Self::Parquet(_) | Self::Schema { .. } | Self::Manifest { .. } | Self::Checksum { .. }
        )
    }
}

/// The CRC-32C (Castagnoli) of `bytes` as 8 lower-case hex digits, as [`Partition::crc32c`]
/// records it.
pub fn crc32c_hex(bytes: &[u8]) -> String {
    format!("{:08x}", crc32c::crc32c(bytes))
}

/// One partition in the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Partition {
    pub key: String,
    pub month: String,
    pub rows: usize,
    pub first_ts: i64,
    pub last_ts: i64,
    pub sha256: String,
    /// The file's CRC-32C (Castagnoli, 8 hex digits): what readers verify the bytes against
    /// before decoding them. A hardware instruction computes it about ten times faster than
    /// SHA-256, which stays the partition's identity (its key, the snapshot's content hash).
    /// Absent in manifests written before it was recorded: those partitions are verified
    /// against their SHA-256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc32c: Option<String>,
    /// The file's MD5 (DVC's file hash), recorded when written so that readers tag runs with
    /// DVC's hash of the dataset without hashing every byte again; absent in older manifests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md5: Option<String>,
}

/// The dataset's table of contents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub symbol: String,
    pub interval: Interval,
    pub source: String,
    pub partitions: Vec<Partition>,
}

impl Manifest {
    pub fn rows(&self) -> usize {
        self.partitions.iter().map(|p| p.rows).sum()
    }
    pub fn last_ts(&self) -> Option<i64> {
        self.partitions.iter().map(|p| p.last_ts).max()
    }
    pub fn first_ts(&self) -> Option<i64> {
        self.partitions.iter().map(|p| p.first_ts).min()
    }
    /// A hash of the whole snapshot (of its partitions' hashes), for run tags.
    pub fn content_hash(&self) -> String {
        let joined: String = self
            .partitions
            .iter()
            .map(|p| p.sha256.as_str())
            .collect::<Vec<_>>()
            .join(",");
        crate::sha256_hex(joined.as_bytes())
    }
}

fn base_fields() -> Vec<Field> {
    vec![
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new("open", DataType::Float64, true),
        Field::new("high", DataType::Float64, true),
        Field::new("low", DataType::Float64, true),
        Field::new("close", DataType::Float64, true),
        Field::new("volume", DataType::Float64, true),
    ]
}

/// Candles as an Arrow batch with the raw schema (NaN written as null). The order-flow columns
/// ([`FLOW_COLUMNS`]) are written, nullable, only when some bar has the value.
pub fn to_batch(bars: &[Candle]) -> RecordBatch {
    let col = |f: fn(&Candle) -> f64| -> ArrayRef {
        Arc::new(
            bars.iter()
                .map(|c| Some(f(c)).filter(|v| !v.is_nan()))
                .collect::<Float64Array>(),
        )
    };
    let ts = TimestampMillisecondArray::from(bars.iter().map(|c| c.ts).collect::<Vec<_>>())
        .with_timezone("UTC");
    let mut fields = base_fields();
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(ts),
        col(|c| c.open),
        col(|c| c.high),
        col(|c| c.low),
        col(|c| c.close),
        col(|c| c.volume),
    ];
    let float = |f: fn(&Candle) -> Option<f64>| -> Option<ArrayRef> {
        bars.iter().any(|c| f(c).is_some()).then(|| {
            Arc::new(
                bars.iter()
                    .map(|c| f(c).filter(|v| !v.is_nan()))
                    .collect::<Float64Array>(),
            ) as ArrayRef
        })
    };
    let trades = bars
        .iter()
        .any(|c| c.trades.is_some())
        .then(|| Arc::new(bars.iter().map(|c| c.trades).collect::<UInt64Array>()) as ArrayRef);
    let flow = [
        float(|c| c.quote_volume),
        trades,
        float(|c| c.taker_buy_volume),
        float(|c| c.taker_buy_quote_volume),
    ];
    for (name, array) in FLOW_COLUMNS.iter().zip(flow) {
        if let Some(array) = array {
            fields.push(Field::new(*name, array.data_type().clone(), true));
            columns.push(array);
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .unwrap_or_else(|e| unreachable!("raw schema is fixed: {e}"))
}

/// The raw columns of one record batch, borrowed from the decoder's buffers where they already
/// have the wanted form (`ts` as milliseconds, prices as `f64` without nulls) and converted
/// otherwise. Nulls become NaN so the quality gate can count them.
#[derive(Debug, Clone)]
pub struct CandleColumns<'a> {
    pub ts: Cow<'a, [i64]>,
    pub open: Cow<'a, [f64]>,
    pub high: Cow<'a, [f64]>,
    pub low: Cow<'a, [f64]>,
    pub close: Cow<'a, [f64]>,
    pub volume: Cow<'a, [f64]>,
    /// The order-flow columns ([`FLOW_COLUMNS`]): `None` when the partition has no such column;
    /// a null cell is a bar without the value.
    pub quote_volume: Option<Float64Array>,
    pub trades: Option<UInt64Array>,
    pub taker_buy_volume: Option<Float64Array>,
    pub taker_buy_quote_volume: Option<Float64Array>,
}

impl CandleColumns<'_> {
    pub fn len(&self) -> usize {
        self.ts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }

    /// Row `i` as a candle.
    pub fn candle(&self, i: usize) -> Candle {
        let float =
            |a: &Option<Float64Array>| a.as_ref().and_then(|a| a.is_valid(i).then(|| a.value(i)));
        Candle {
            ts: self.ts[i],
            open: self.open[i],
            high: self.high[i],
            low: self.low[i],
            close: self.close[i],
            volume: self.volume[i],
            quote_volume: float(&self.quote_volume),
            trades: self
                .trades
                .as_ref()
                .and_then(|a| a.is_valid(i).then(|| a.value(i))),
            taker_buy_volume: float(&self.taker_buy_volume),
            taker_buy_quote_volume: float(&self.taker_buy_quote_volume),
        }
    }
}

/// The price and volume columns of the raw schema.
const VALUE_COLUMNS: [&str; 5] = ["open", "high", "low", "close", "volume"];

/// The candle columns of `batch`; schema problems (missing or mistyped value columns, which read
/// as NaN) are appended to `problems`. A missing or mistyped `ts` is an error.
pub fn columns<'a>(
    batch: &'a RecordBatch,
    uri: &str,
    problems: &mut Vec<String>,
) -> Result<CandleColumns<'a>, RawError> {
    let s = batch.schema();
    let Ok(ts_i) = s.index_of("ts") else {
        return Err(RawError::Schema {
            uri: uri.to_owned(),
            problem: "missing column `ts`".to_owned(),
        });
    };
    let ts_col = batch.column(ts_i);
    let ts: Cow<'a, [i64]> = match ts_col.data_type() {
        DataType::Timestamp(TimeUnit::Millisecond, _) => ts_col
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .map_or(Cow::Owned(Vec::new()), |a| Cow::Borrowed(a.values())),
        DataType::Timestamp(unit, _) => {
            let cast =
                arrow::compute::cast(ts_col, &DataType::Timestamp(TimeUnit::Millisecond, None))
                    .map_err(|e| RawError::Schema {
                        uri: uri.to_owned(),
                        problem: format!("column `ts` ({unit:?}): {e}"),
                    })?;
            Cow::Owned(
                cast.as_any()
                    .downcast_ref::<TimestampMillisecondArray>()
                    .map(|a| a.values().to_vec())
                    .unwrap_or_default(),
            )
        }
        DataType::Int64 => ts_col
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>()
            .map_or(Cow::Owned(Vec::new()), |a| Cow::Borrowed(a.values())),
        other => {
            return Err(RawError::Schema {
                uri: uri.to_owned(),
                problem: format!("column `ts` has type {other}, expected a timestamp"),
            });
        }
    };
    let n = batch.num_rows();
    let mut value = |name: &str| -> Cow<'a, [f64]> {
        let Ok(i) = s.index_of(name) else {
            problems.push(format!("missing column `{name}`"));
            return Cow::Owned(vec![f64::NAN; n]);
        };
        let col: &'a ArrayRef = batch.column(i);
        if !col.data_type().is_numeric() {
            problems.push(format!(
                "column `{name}` has type {}, expected a number",
                col.data_type()
            ));
            return Cow::Owned(vec![f64::NAN; n]);
        }
        let with_nan = |a: &Float64Array| -> Vec<f64> {
            (0..a.len())
                .map(|j| if a.is_null(j) { f64::NAN } else { a.value(j) })
                .collect()
        };
        if let Some(a) = col.as_any().downcast_ref::<Float64Array>() {
            return if a.null_count() == 0 {
                Cow::Borrowed(a.values())
            } else {
                Cow::Owned(with_nan(a))
            };
        }
        match arrow::compute::cast(col, &DataType::Float64) {
            Ok(cast) => Cow::Owned(
                cast.as_any()
                    .downcast_ref::<Float64Array>()
                    .map(with_nan)
                    .unwrap_or_default(),
            ),
            Err(_) => {
                problems.push(format!(
                    "column `{name}` has type {}, expected a number",
                    col.data_type()
                ));
                Cow::Owned(vec![f64::NAN; n])
            }
        }
    };
    let [open, high, low, close, volume] = VALUE_COLUMNS.map(&mut value);
    // The optional order-flow columns: absent is fine (None); a type that does not convert is a
    // schema problem and the column reads as absent.
    let mut optional = |name: &str, to: &DataType| -> Option<ArrayRef> {
        let col = batch.column_by_name(name)?;
        if col.data_type() == to {
            return Some(col.clone());
        }
        let cast = (col.data_type().is_numeric() || col.data_type() == &DataType::Null)
            .then(|| arrow::compute::cast(col, to).ok())
            .flatten();
        if cast.is_none() {
            problems.push(format!(
                "column `{name}` has type {}, expected {to}",
                col.data_type()
            ));
        }
        cast
    };
    let mut float = |name: &str| {
        optional(name, &DataType::Float64)
            .and_then(|a| a.as_any().downcast_ref::<Float64Array>().cloned())
    };
    let quote_volume = float("quote_volume");
    let taker_buy_volume = float("taker_buy_volume");
    let taker_buy_quote_volume = float("taker_buy_quote_volume");
    let trades = optional("trades", &DataType::UInt64)
        .and_then(|a| a.as_any().downcast_ref::<UInt64Array>().cloned());
    Ok(CandleColumns {
        ts,
        open,
        high,
        low,
        close,
        volume,
        quote_volume,
        trades,
        taker_buy_volume,
        taker_buy_quote_volume,
    })
}

/// Candles from batches; returns the bars and the schema problems found (missing or mistyped
/// columns). Nulls become NaN so the quality gate can count them.
pub fn from_batches(
    batches: &[RecordBatch],
    uri: &str,
) -> Result<(Vec<Candle>, Vec<String>), RawError> {
    let mut bars = Vec::new();
    let mut problems = Vec::new();
    for batch in batches {
        let cols = columns(batch, uri, &mut problems)?;
        bars.extend((0..cols.len()).map(|i| cols.candle(i)));
    }
    problems.sort();
    problems.dedup();
    Ok((bars, problems))
}

/// A raw dataset at a store root.
#[derive(Debug, Clone)]
pub struct RawDataset {
    store: Arc<dyn ObjectStore>,
}

impl RawDataset {
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self { store }
    }

    pub fn uri(&self) -> String {
        self.store.uri("")
    }

    /// The current manifest, or `None` for a dataset that does not exist yet.
    pub fn manifest(&self) -> Result<Option<Manifest>, RawError> {
        match self.store.get(MANIFEST) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|source| RawError::Manifest {
                        uri: self.store.uri(MANIFEST),
                        source,
                    })
            }
            Err(StoreError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// A partition's bytes, refused unless their checksum is the one the manifest records: the
    /// CRC-32C where the manifest has one, else the SHA-256 (the hash of bytes already in
    /// memory: cheap next to decoding them).
    fn get_verified(&self, p: &Partition) -> Result<Vec<u8>, RawError> {
        let bytes = self.store.get(&p.key)?;
        let (algorithm, expected, actual) = match &p.crc32c {
            Some(crc) => ("crc32c", crc, crc32c_hex(&bytes)),
            None => ("sha256", &p.sha256, crate::sha256_hex(&bytes)),
        };
        if actual != *expected {
            return Err(RawError::Checksum {
                uri: self.store.uri(&p.key),
                algorithm,
                expected: expected.clone(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// Every bar of the snapshot, in storage order, plus schema problems. Each partition is
    /// verified against the manifest's checksum first ([`RawError::Checksum`]).
    pub fn read_all(&self) -> Result<(Manifest, Vec<Candle>, Vec<String>), RawError> {
        let manifest = self.manifest()?.ok_or_else(|| StoreError::NotFound {
            uri: self.store.uri(MANIFEST),
        })?;
        let mut bars = Vec::with_capacity(manifest.rows());
        let mut problems = Vec::new();
        for p in &manifest.partitions {
            let uri = self.store.uri(&p.key);
            let batches = parquet_io::decode(self.get_verified(p)?, &uri)?;
            let (b, pr) = from_batches(&batches, &uri)?;
            bars.extend(b);
            problems.extend(pr.into_iter().map(|x| format!("{}: {x}", p.key)));
        }
        Ok((manifest, bars, problems))
    }

    /// Visit every record batch of the snapshot in storage order, as columns, without
    /// collecting the bars: each partition is verified against the manifest's checksum
    /// ([`RawError::Checksum`]), decoded with only the candle columns projected, visited batch by
    /// batch and dropped before the next one is read. Returns the manifest and the schema
    /// problems (as [`Self::read_all`] does; a problem column is visited as NaN).
    pub fn scan<E: From<RawError>>(
        &self,
        visit: impl FnMut(&CandleColumns<'_>) -> Result<(), E>,
    ) -> Result<(Manifest, Vec<String>), E> {
        self.scan_with(|_, _| {}, visit)
    }

    /// [`Self::scan`], also handing each partition's verified bytes to `on_partition` (before
    /// they are decoded) — e.g. to hash them for DVC without reading the files a second time.
    pub fn scan_with<E: From<RawError>>(
        &self,
        mut on_partition: impl FnMut(&Partition, &bytes::Bytes),
        mut visit: impl FnMut(&CandleColumns<'_>) -> Result<(), E>,
    ) -> Result<(Manifest, Vec<String>), E> {
        let manifest = self.manifest()?.ok_or_else(|| {
            RawError::from(StoreError::NotFound {
                uri: self.store.uri(MANIFEST),
            })
        })?;
        let mut problems = Vec::new();
        // Read and verify the next partitions on a second thread while this one decodes: at
        // most two verified partitions wait in the channel.
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<bytes::Bytes, RawError>>(2);
        let parts = &manifest.partitions;
        let result = std::thread::scope(|s| {
            s.spawn(move || {
                for p in parts {
                    let got = self.get_verified(p).map(bytes::Bytes::from);
                    let failed = got.is_err();
                    if tx.send(got).is_err() || failed {
                        break;
                    }
                }
            });
            // Owned here so that an early return drops it and unblocks the reader.
            let rx = rx;
            for (p, got) in parts.iter().zip(rx.iter()) {
                let bytes = got?;
                let uri = self.store.uri(&p.key);
                on_partition(p, &bytes);
                let mut found = Vec::new();
                for batch in parquet_io::decode_columns(bytes, &uri, &SCAN_COLUMNS)
                    .map_err(RawError::from)?
                {
                    let batch = batch.map_err(RawError::from)?;
                    visit(&columns(&batch, &uri, &mut found)?)?;
                }
                found.sort();
                found.dedup();
                problems.extend(found.into_iter().map(|x| format!("{}: {x}", p.key)));
            }
            Ok::<(), E>(())
        });
        result?;
        Ok((manifest, problems))
    }

    /// Fold every partition of the snapshot on `threads` threads (at least one): each worker
    /// takes the next partition, verifies it against the manifest's checksum
    /// ([`RawError::Checksum`]), decodes only the candle columns and folds its record batches
    /// into a fresh state (`start`, then `visit` per batch, as [`Self::scan`] visits them);
    /// `merge` then receives the states on the calling thread in storage order. A partition's
    /// bytes and batches are dropped once folded, so memory stays at a partition per worker
    /// plus the states not yet merged. Returns the manifest and the schema problems, as
    /// [`Self::scan`]; a failure is the one of the first failing partition in storage order
    /// (later partitions may have been read, none is merged after it).
    pub fn scan_parallel<S: Send, E: From<RawError> + Send>(
        &self,
        threads: usize,
        start: impl Fn() -> S + Sync,
        visit: impl Fn(&mut S, &CandleColumns<'_>) -> Result<(), E> + Sync,
        mut merge: impl FnMut(S) -> Result<(), E>,
    ) -> Result<(Manifest, Vec<String>), E> {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let manifest = self.manifest()?.ok_or_else(|| {
            RawError::from(StoreError::NotFound {
                uri: self.store.uri(MANIFEST),
            })
        })?;
        let parts = &manifest.partitions;
        let fold = |p: &Partition| -> Result<(S, Vec<String>), E> {
            let bytes = bytes::Bytes::from(self.get_verified(p)?);
            let uri = self.store.uri(&p.key);
            let mut state = start();
            let mut found = Vec::new();
            for batch in
                parquet_io::decode_columns(bytes, &uri, &SCAN_COLUMNS).map_err(RawError::from)?
            {
                let batch = batch.map_err(RawError::from)?;
                visit(&mut state, &columns(&batch, &uri, &mut found)?)?;
            }
            found.sort();
            found.dedup();
            Ok((state, found))
        };
        let next = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let (tx, rx) = std::sync::mpsc::channel::<(usize, Result<(S, Vec<String>), E>)>();
        let mut problems = Vec::new();
        std::thread::scope(|s| {
            for _ in 0..threads.max(1) {
                let tx = tx.clone();
                let (next, stop, fold) = (&next, &stop, &fold);
                s.spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(p) = parts.get(i) else { break };
                        let got = fold(p);
                        if got.is_err() {
                            // Partitions before this one are all taken: let them finish.
                            stop.store(true, Ordering::Relaxed);
                        }
                        if tx.send((i, got)).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(tx);
            let merged = (|| {
                let mut pending = BTreeMap::new();
                let mut want = 0;
                for (i, got) in rx.iter() {
                    pending.insert(i, got);
                    while let Some(got) = pending.remove(&want) {
                        let (state, found) = got?;
                        merge(state)?;
                        let key = &parts[want].key;
                        problems.extend(found.into_iter().map(|x| format!("{key}: {x}")));
                        want += 1;
                    }
                }
                Ok::<(), E>(())
            })();
            // On a failure, stop the workers (and drop the receiver: their sends fail).
            stop.store(true, Ordering::Relaxed);
            drop(rx);
            merged
        })?;
        Ok((manifest, problems))
    }

    /// The newest bars: those that opened at most `span_ms` before the dataset's newest bar,
    /// reading only the partitions that hold some (checksums verified as in
    /// [`Self::read_all`]), so a long dataset is not decoded whole. Sorted by open time,
    /// duplicates dropped; empty for a dataset without bars.
    pub fn read_tail(&self, span_ms: i64) -> Result<(Manifest, Vec<Candle>), RawError> {
        let manifest = self.manifest()?.ok_or_else(|| StoreError::NotFound {
            uri: self.store.uri(MANIFEST),
        })?;
        let Some(last) = manifest.last_ts() else {
            return Ok((manifest, Vec::new()));
        };
        let since = last.saturating_sub(span_ms);
        let mut bars = Vec::new();
        for p in manifest.partitions.iter().filter(|p| p.last_ts >= since) {
            let uri = self.store.uri(&p.key);
            let batches = parquet_io::decode(self.get_verified(p)?, &uri)?;
            let (b, _) = from_batches(&batches, &uri)?;
            bars.extend(b.into_iter().filter(|c| c.ts >= since));
        }
        rps_core::candle::sort_dedup(&mut bars);
        Ok((manifest, bars))
    }

    /// Merge `fresh` bars into the dataset: touched months are rewritten, others kept; the
    /// manifest is swapped last. Returns the new manifest and how many partitions were written.
    pub fn upsert(
        &self,
        symbol: &str,
        interval: Interval,
        source: &str,
        fresh: &[Candle],
    ) -> Result<(Manifest, usize), RawError> {
        self.write(symbol, interval, source, fresh, false)
    }

    /// Replace the whole dataset with `bars` (a full refresh); same atomicity as [`Self::upsert`].
    pub fn replace(
        &self,
        symbol: &str,
        interval: Interval,
        source: &str,
        bars: &[Candle],
    ) -> Result<(Manifest, usize), RawError> {
        self.write(symbol, interval, source, bars, true)
    }

    fn write(
        &self,
        symbol: &str,
        interval: Interval,
        source: &str,
        fresh: &[Candle],
        replace: bool,
    ) -> Result<(Manifest, usize), RawError> {
        let current = self.manifest()?;
        crate::commit::sweep_orphan_partitions(self.store.as_ref(), current.as_ref())?;
        if let Some(m) = &current
            && m.interval != interval
            && !replace
        {
            return Err(RawError::IntervalMismatch {
                uri: self.uri(),
                found: m.interval.to_string(),
                wanted: interval.to_string(),
            });
        }
        if let Some(m) = &current
            && m.source != source
            && !replace
        {
            return Err(RawError::SourceMismatch {
                uri: self.uri(),
                symbol: m.symbol.clone(),
                found: m.source.clone(),
                wanted: source.to_owned(),
            });
        }
        let month_of = |ts: i64| {
            let (y, m) = year_month(ts);
            format!("{y:04}-{m:02}")
        };
        let mut by_month: BTreeMap<String, Vec<Candle>> = BTreeMap::new();
        for c in fresh {
            by_month.entry(month_of(c.ts)).or_default().push(*c);
        }
        let current_parts: BTreeMap<String, Partition> = current
            .as_ref()
            .map(|m| {
                m.partitions
                    .iter()
                    .map(|p| (p.month.clone(), p.clone()))
                    .collect()
            })
            .unwrap_or_default();
        // An upsert keeps every current month and merges into touched ones; a replace starts empty.
        let mut partitions = if replace {
            BTreeMap::new()
        } else {
            current_parts.clone()
        };
        let mut written = 0;
        for (month, new_bars) in by_month {
            let existing = match partitions.get(&month) {
                Some(p) => {
                    let uri = self.store.uri(&p.key);
                    from_batches(&parquet_io::decode(self.get_verified(p)?, &uri)?, &uri)?.0
                }
                None => Vec::new(),
            };
            let merged = rps_core::candle::merge(&existing, &new_bars);
            let bytes = parquet_io::encode_raw(&to_batch(&merged))?;
            let sha = crate::sha256_hex(&bytes);
            if let Some(same) = current_parts.get(&month).filter(|p| p.sha256 == sha) {
                // Unchanged; a partition from before CRC-32Cs were recorded gets its own.
                let mut same = same.clone();
                same.crc32c.get_or_insert_with(|| crc32c_hex(&bytes));
                partitions.insert(month, same);
                continue;
            }
            let key = format!("part-{month}-{}.parquet", &sha[..8]);
            self.store.put(&key, &bytes)?;
            written += 1;
            partitions.insert(
                month.clone(),
                Partition {
                    key,
                    month,
                    rows: merged.len(),
                    first_ts: merged.first().map_or(0, |c| c.ts),
                    last_ts: merged.last().map_or(0, |c| c.ts),
                    sha256: sha,
                    crc32c: Some(crc32c_hex(&bytes)),
                    md5: Some(crate::dvc::md5_hex(&bytes)),
                },
            );
        }
        // Months this write did not touch, from a manifest older than CRC-32Cs: verified once
        // more against their SHA-256 and given theirs, so readers use the cheap check from now.
        for p in partitions.values_mut().filter(|p| p.crc32c.is_none()) {
            p.crc32c = Some(crc32c_hex(&self.get_verified(p)?));
        }
        let manifest = Manifest {
            symbol: symbol.to_owned(),
            interval,
            source: source.to_owned(),
            partitions: partitions.into_values().collect(),
        };
        if current.as_ref() != Some(&manifest) {
            let json =
                serde_json::to_vec_pretty(&manifest).map_err(|source| RawError::Manifest {
                    uri: self.store.uri(MANIFEST),
                    source,
                })?;
            self.store.put(MANIFEST, &json)?;
        }
        // Garbage-collect partitions the new manifest no longer references.
        let live: std::collections::HashSet<&str> =
            manifest.partitions.iter().map(|p| p.key.as_str()).collect();
        for key in self.store.list("part-")? {
            if !live.contains(key.as_str()) {
                self.store.delete(&key)?;
            }
        }
        Ok((manifest, written))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::LocalStore;

    const H: i64 = 3_600_000;

    fn bars(from: i64, n: i64) -> Vec<Candle> {
        (from..from + n)
            .map(|i| Candle {
                ts: i * H,
                open: 1.0,
                high: 2.0,
                low: 0.5,
                close: 1.5,
                volume: i as f64,
                ..Default::default()
            })
            .collect()
    }

    #[test]
    fn upsert_is_incremental_and_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let ds = RawDataset::new(Arc::new(LocalStore::new(dir.path())));
        assert!(ds.manifest().unwrap().is_none());
        // 1970-01 has 744 hours; 1000 bars span two months.
        let (m, written) = ds
            .upsert("X", Interval::H1, "test", &bars(0, 1000))
            .unwrap();
        assert_eq!((m.partitions.len(), written, m.rows()), (2, 2, 1000));
        let (_, again) = ds
            .upsert("X", Interval::H1, "test", &bars(0, 1000))
            .unwrap();
        assert_eq!(again, 0, "a rerun of the same window changes nothing");
        // Overlapping fresh data touches only February.
        let (m2, written) = ds
            .upsert("X", Interval::H1, "test", &bars(990, 20))
            .unwrap();
        assert_eq!((written, m2.rows()), (1, 1010));
        assert_eq!(m2.partitions[0], m.partitions[0]);
        let (_, all, problems) = ds.read_all().unwrap();
        assert!(problems.is_empty());
        assert_eq!(all.len(), 1010);
        assert!(all.windows(2).all(|w| w[0].ts < w[1].ts));
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            3,
            "old partition files are collected"
        );
        assert!(matches!(
            ds.upsert("X", Interval::M30, "t", &bars(0, 1)),
            Err(RawError::IntervalMismatch { .. })
        ));
        let (m3, _) = ds.replace("X", Interval::M30, "t", &bars(0, 5)).unwrap();
        assert_eq!((m3.rows(), m3.interval), (5, Interval::M30));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
        // Bars from another source are refused, naming both; a full refresh replaces.
        let err = ds
            .upsert("X", Interval::M30, "synthetic", &bars(5, 1))
            .unwrap_err();
        assert!(matches!(err, RawError::SourceMismatch { .. }), "{err:?}");
        assert!(err.to_string().contains("\"t\"") && err.to_string().contains("\"synthetic\""));
        assert_eq!(ds.manifest().unwrap().unwrap(), m3, "nothing merged");
        let (m4, _) = ds
            .replace("X", Interval::M30, "synthetic", &bars(0, 2))
            .unwrap();
        assert_eq!((m4.rows(), m4.source.as_str()), (2, "synthetic"));
    }

    #[test]
    fn a_partition_edited_after_the_manifest_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ds = RawDataset::new(Arc::new(LocalStore::new(dir.path())));
        let (m, _) = ds
            .upsert("X", Interval::H1, "test", &bars(0, 1000))
            .unwrap();
        let key = &m.partitions[1].key;
        let file = dir.path().join(key);
        // Same length, one byte changed (a value edited in place), then a truncation.
        let mut bytes = std::fs::read(&file).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x01;
        std::fs::write(&file, &bytes).unwrap();
        let err = ds.read_all().unwrap_err();
        assert!(err.is_bad_data());
        let msg = err.to_string();
        let crc = m.partitions[1].crc32c.as_deref().unwrap();
        assert!(
            msg.contains(key.as_str()) && msg.contains(&format!("records {crc}")),
            "{msg}"
        );
        assert!(msg.contains("crc32c"), "{msg}");
        // An upsert into the damaged month refuses too, rather than merging into it.
        assert!(matches!(
            ds.upsert("X", Interval::H1, "test", &bars(999, 2)),
            Err(RawError::Checksum { .. })
        ));
        std::fs::write(&file, &bytes[..mid]).unwrap();
        assert!(matches!(ds.read_all(), Err(RawError::Checksum { .. })));
    }

    #[test]
    fn partitions_are_written_delta_and_byte_stream_split_without_dictionaries() {
        use parquet::basic::Encoding;
        use parquet::file::reader::{FileReader, SerializedFileReader};
        let dir = tempfile::tempdir().unwrap();
        let ds = RawDataset::new(Arc::new(LocalStore::new(dir.path())));
        let want = with_flow(bars(0, 2000));
        let (m, _) = ds.upsert("X", Interval::H1, "test", &want).unwrap();
        let bytes =
            bytes::Bytes::from(std::fs::read(dir.path().join(&m.partitions[0].key)).unwrap());
        let file = SerializedFileReader::new(bytes).unwrap();
        let rg = file.metadata().row_group(0);
        let mut seen = Vec::new();
        for c in rg.columns() {
            let name = c.column_path().string();
            let encodings = c.encodings().collect::<Vec<_>>();
            assert!(
                !encodings.contains(&Encoding::RLE_DICTIONARY)
                    && !encodings.contains(&Encoding::PLAIN_DICTIONARY),
                "{name}: {encodings:?}"
            );
            let expected = match name.as_str() {
                "ts" | "trades" => Encoding::DELTA_BINARY_PACKED,
                _ => Encoding::BYTE_STREAM_SPLIT,
            };
            assert!(encodings.contains(&expected), "{name}: {encodings:?}");
            seen.push(name);
        }
        assert!(seen.contains(&"trades".to_owned()) && seen.contains(&"close".to_owned()));
        // And every value reads back as written.
        let (_, got, problems) = ds.read_all().unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(got, want);
    }

    #[test]
    fn a_manifest_without_crc32c_is_verified_by_sha256_and_gains_them_on_upsert() {
        let dir = tempfile::tempdir().unwrap();
        let ds = RawDataset::new(Arc::new(LocalStore::new(dir.path())));
        let (m, _) = ds
            .upsert("X", Interval::H1, "test", &bars(0, 1000))
            .unwrap();
        assert!(m.partitions.iter().all(|p| {
            let bytes = std::fs::read(dir.path().join(&p.key)).unwrap();
            p.crc32c.as_deref() == Some(crc32c_hex(&bytes).as_str())
        }));
        // The manifest as written before CRC-32Cs were recorded.
        let mut old = m.clone();
        for p in &mut old.partitions {
            p.crc32c = None;
        }
        let json = serde_json::to_vec_pretty(&old).unwrap();
        assert!(!String::from_utf8_lossy(&json).contains("crc32c"));
        std::fs::write(dir.path().join(MANIFEST), &json).unwrap();
        let (_, all, _) = ds.read_all().unwrap();
        assert_eq!(all.len(), 1000);
        // Damage is found by SHA-256 then.
        let file = dir.path().join(&m.partitions[0].key);
        let good = std::fs::read(&file).unwrap();
        let mut bad = good.clone();
        bad[good.len() / 2] ^= 0x01;
        std::fs::write(&file, &bad).unwrap();
        let msg = ds.read_all().unwrap_err().to_string();
        assert!(
            msg.contains("sha256") && msg.contains(&m.partitions[0].sha256),
            "{msg}"
        );
        std::fs::write(&file, &good).unwrap();
        // An upsert records the CRC-32Cs of every partition, those of months it did not
        // touch included.
        let (again, written) = ds.upsert("X", Interval::H1, "test", &bars(0, 10)).unwrap();
        assert_eq!((written, &again), (0, &m));
        assert_eq!(ds.manifest().unwrap().unwrap(), m);
    }

    /// [`RawDataset::scan_parallel`] with `threads` workers, collecting each partition's
    /// candles and merging them in order.
    fn scan_parallel_all(ds: &RawDataset, threads: usize) -> Result<Vec<Candle>, RawError> {
        let mut all = Vec::new();
        ds.scan_parallel(
            threads,
            Vec::new,
            |v: &mut Vec<Candle>, cols| {
                v.extend((0..cols.len()).map(|i| cols.candle(i)));
                Ok::<(), RawError>(())
            },
            |v| {
                all.extend(v);
                Ok(())
            },
        )?;
        Ok(all)
    }

    #[test]
    fn a_parallel_scan_merges_in_storage_order_and_reports_the_first_bad_partition() {
        let dir = tempfile::tempdir().unwrap();
        let ds = RawDataset::new(Arc::new(LocalStore::new(dir.path())));
        // Twelve monthly partitions.
        let (m, _) = ds
            .upsert("X", Interval::H1, "test", &with_flow(bars(0, 8760)))
            .unwrap();
        assert_eq!(m.partitions.len(), 12);
        let (_, want, _) = ds.read_all().unwrap();
        for threads in [1, 2, 3, 8, 20] {
            assert_eq!(
                scan_parallel_all(&ds, threads).unwrap(),
                want,
                "{threads} threads"
            );
        }
        // Two damaged partitions: the first in storage order is the one reported, whichever
        // thread reads it first.
        for k in [9, 4] {
            let file = dir.path().join(&m.partitions[k].key);
            let mut bytes = std::fs::read(&file).unwrap();
            bytes[100] ^= 0x01;
            std::fs::write(&file, &bytes).unwrap();
        }
        for threads in [1, 2, 3, 8] {
            match scan_parallel_all(&ds, threads) {
                Err(RawError::Checksum { uri, .. }) => {
                    assert!(uri.ends_with(&m.partitions[4].key), "{uri}");
                }
                other => panic!("{threads} threads: {other:?}"),
            }
        }
    }

    fn with_flow(mut bars: Vec<Candle>) -> Vec<Candle> {
        for (i, c) in bars.iter_mut().enumerate() {
            c.quote_volume = Some(100.0 + i as f64);
            c.trades = Some(i as u64 * 3);
            c.taker_buy_volume = Some(0.5);
            // A null cell in a present column: a bar without the value.
            c.taker_buy_quote_volume = (i % 7 != 0).then_some(50.0);
        }
        bars
    }

    fn partition_columns(dir: &std::path::Path, key: &str) -> Vec<String> {
        let bytes = std::fs::read(dir.join(key)).unwrap();
        let batches = parquet_io::decode(bytes, key).unwrap();
        batches[0]
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect()
    }

    #[test]
    fn flow_columns_round_trip_and_are_not_written_when_absent() {
        let dir = tempfile::tempdir().unwrap();
        let ds = RawDataset::new(Arc::new(LocalStore::new(dir.path())));
        let want = with_flow(bars(0, 1000));
        let (m, _) = ds.replace("X", Interval::H1, "binance", &want).unwrap();
        let (_, got, problems) = ds.read_all().unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(got, want);
        let mut scanned = Vec::new();
        ds.scan(|cols| {
            scanned.extend((0..cols.len()).map(|i| cols.candle(i)));
            Ok::<(), RawError>(())
        })
        .unwrap();
        assert_eq!(scanned, want, "the scan projects the flow columns too");
        let cols = partition_columns(dir.path(), &m.partitions[0].key);
        assert_eq!(cols[6..], FLOW_COLUMNS.map(String::from));
        let trades = parquet_io::decode(
            std::fs::read(dir.path().join(&m.partitions[0].key)).unwrap(),
            "p",
        )
        .unwrap()[0]
            .schema()
            .field_with_name("trades")
            .unwrap()
            .clone();
        assert_eq!(
            (trades.data_type(), trades.is_nullable()),
            (&DataType::UInt64, true)
        );

        // Bars without them (Coinbase, CoinCap, synthetic) are written with the six columns
        // only, byte for byte as before the flow columns existed.
        let plain = bars(0, 10);
        let (m, _) = ds.replace("X", Interval::H1, "file", &plain).unwrap();
        assert_eq!(
            partition_columns(dir.path(), &m.partitions[0].key),
            RAW_COLUMNS.map(String::from)
        );
        assert_eq!(ds.read_all().unwrap().1, plain);
    }

    #[test]
    fn an_old_format_partition_still_loads_and_takes_new_columns_on_upsert() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(LocalStore::new(dir.path()));
        // A partition with the schema raw datasets had before issue #16, built by hand.
        let old = bars(0, 24);
        let schema = Arc::new(Schema::new(vec![
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                false,
            ),
            Field::new("open", DataType::Float64, true),
            Field::new("high", DataType::Float64, true),
            Field::new("low", DataType::Float64, true),
            Field::new("close", DataType::Float64, true),
            Field::new("volume", DataType::Float64, true),
        ]));
        let f = |g: fn(&Candle) -> f64| -> ArrayRef {
            Arc::new(old.iter().map(g).collect::<Float64Array>())
        };
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(
                    TimestampMillisecondArray::from(old.iter().map(|c| c.ts).collect::<Vec<_>>())
                        .with_timezone("UTC"),
                ),
                f(|c| c.open),
                f(|c| c.high),
                f(|c| c.low),
                f(|c| c.close),
                f(|c| c.volume),
            ],
        )
        .unwrap();
        let bytes = parquet_io::encode(&batch).unwrap();
        let sha = crate::sha256_hex(&bytes);
        let key = format!("part-1970-01-{}.parquet", &sha[..8]);
        store.put(&key, &bytes).unwrap();
        // An old manifest: no md5.
        let manifest = serde_json::json!({
            "symbol": "X", "interval": "1h", "source": "binance",
            "partitions": [{"key": key, "month": "1970-01", "rows": 24, "first_ts": 0,
                            "last_ts": 23 * H, "sha256": sha}]
        });
        store
            .put(MANIFEST, manifest.to_string().as_bytes())
            .unwrap();
        let ds = RawDataset::new(store);
        let (_, got, problems) = ds.read_all().unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(got, old);
        assert!(got.iter().all(|c| !c.has_flow()));
        let mut n = 0;
        ds.scan(|cols| {
            assert!(cols.trades.is_none() && cols.quote_volume.is_none());
            n += cols.len();
            Ok::<(), RawError>(())
        })
        .unwrap();
        assert_eq!(n, 24);
        // New bars with the columns merge into the old month: the old rows read as None.
        let fresh = with_flow(bars(20, 10));
        ds.upsert("X", Interval::H1, "binance", &fresh).unwrap();
        let (_, all, problems) = ds.read_all().unwrap();
        assert!(problems.is_empty());
        assert_eq!(all.len(), 30);
        assert!(all[..20].iter().all(|c| !c.has_flow()));
        assert_eq!(all[20..], fresh[..]);
    }

    #[test]
    fn a_mistyped_flow_column_is_a_schema_problem() {
        let bars = bars(0, 3);
        let mut batch = to_batch(&bars);
        let mut fields: Vec<Field> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| (**f).clone())
            .collect();
        fields.push(Field::new("trades", DataType::Utf8, true));
        let mut cols = batch.columns().to_vec();
        cols.push(Arc::new(arrow::array::StringArray::from(vec![
            "a", "b", "c",
        ])));
        batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).unwrap();
        let (got, problems) = from_batches(&[batch], "p").unwrap();
        assert_eq!(got, bars);
        assert_eq!(
            problems,
            vec!["column `trades` has type Utf8, expected UInt64".to_owned()]
        );
    }
}

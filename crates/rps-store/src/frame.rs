//! The feature dataset: one Parquet file with `ts`, `split`, the features, `bar_vol`, `target`
//! and `close` (each bar's close, for the signal task's labels), plus `schema.json`.

use crate::commit::{CommitError, Snapshot, Writer};
use crate::object::{ObjectStore, StoreError};
use crate::parquet_io::{self, ParquetError};
use arrow::array::{
    Array, ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use rps_core::features::FeatureFrame;
use rps_core::schema::FeatureSchema;
use rps_core::split::Split;
use std::sync::Arc;

pub const DATASET: &str = "features.parquet";
pub const SCHEMA: &str = "schema.json";
/// The column of each row's bar close.
pub const CLOSE: &str = "close";
/// The stage that writes the feature dataset (named in "rerun …" messages).
pub const STAGE: &str = "rps-transform";

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Parquet(#[from] ParquetError),
    #[error(transparent)]
    Commit(#[from] CommitError),
    #[error("bad feature schema {uri}: {source}")]
    Schema {
        uri: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("feature dataset {uri} does not match its schema: {problem}")]
    Mismatch { uri: String, problem: String },
}

impl FrameError {
    /// Whether the dataset itself is missing or bad — torn, not Parquet, a schema that is not
    /// JSON, columns that do not match (exit 4, input) — rather than the store failing (exit 7).
    pub fn is_input(&self) -> bool {
        match self {
            Self::Store(e) => matches!(e, StoreError::NotFound { .. }),
            Self::Commit(e) => e.is_input(),
            Self::Parquet(e) => !matches!(e, ParquetError::Write(_)),
            Self::Schema { .. } | Self::Mismatch { .. } => true,
        }
    }
}

/// A feature frame with each row's split.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub frame: FeatureFrame,
    pub split: Vec<Split>,
    /// Each row's bar close: what the signal task labels rows from
    /// ([`rps_core::signal::columns`]), so train and evaluate never re-read the raw dataset.
    /// `None` for a dataset written before transform wrote the column.
    pub close: Option<Vec<f64>>,
}

impl Dataset {
    /// Row indices of one split, in time order.
    pub fn rows(&self, which: Split) -> Vec<usize> {
        self.split
            .iter()
            .enumerate()
            .filter_map(|(i, s)| (*s == which).then_some(i))
            .collect()
    }
}

/// Why a dataset's rows cannot be labelled for the signal task.
#[derive(Debug, thiserror::Error)]
pub enum LabelError {
    #[error(
        "the feature dataset has no `close` column (written by an older rps-transform); rerun rps-transform"
    )]
    NoClose,
    #[error("the feature schema's bar {0:?} is not an interval")]
    Bar(String),
    #[error("bad signal parameters: {0}")]
    Params(#[from] rps_core::signal::SignalParamsError),
}

impl LabelError {
    /// Whether the dataset is at fault (exit 4) rather than the parameters (exit 3).
    pub fn is_input(&self) -> bool {
        !matches!(self, Self::Params(_))
    }
}

impl Dataset {
    /// The signal task's labels and momentum baseline for every row, from the `close` column
    /// on the schema's bar grid ([`rps_core::signal::columns`]).
    ///
    /// # Errors
    /// A dataset without closes, an unknown bar, bad signal parameters.
    pub fn signal_columns(
        &self,
        schema: &FeatureSchema,
        p: &rps_core::signal::SignalParams,
    ) -> Result<rps_core::signal::SignalColumns, LabelError> {
        p.validate()?;
        let close = self.close.as_deref().ok_or(LabelError::NoClose)?;
        let bar: rps_core::Interval = schema
            .bar
            .parse()
            .map_err(|_| LabelError::Bar(schema.bar.clone()))?;
        Ok(rps_core::signal::columns(
            &self.frame.ts,
            close,
            bar.ms(),
            p,
        )?)
    }
}

/// Encode the dataset as a record batch.
pub fn to_batch(ds: &Dataset) -> RecordBatch {
    let f = &ds.frame;
    let mut fields = vec![
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new("split", DataType::Utf8, false),
    ];
    let mut cols: Vec<ArrayRef> = vec![
        Arc::new(TimestampMillisecondArray::from(f.ts.clone()).with_timezone("UTC")),
        Arc::new(StringArray::from(
            ds.split.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        )),
    ];
    let mut extra = vec![
        ("bar_vol".to_owned(), &f.bar_vol),
        ("target".to_owned(), &f.target),
    ];
    if let Some(close) = &ds.close {
        extra.push((CLOSE.to_owned(), close));
    }
    let named = f
        .names
        .iter()
        .zip(&f.columns)
        .chain(extra.iter().map(|(a, b)| (a, *b)));
    for (name, values) in named {
        fields.push(Field::new(name, DataType::Float64, true));
        cols.push(Arc::new(
            values
                .iter()
                .map(|v| Some(*v).filter(|x| !x.is_nan()))
                .collect::<Float64Array>(),
        ));
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)
        .unwrap_or_else(|e| unreachable!("columns have equal length: {e}"))
}

/// Write the dataset and its schema, then the commit record ([`crate::commit`]): readers see
/// both new files or refuse, never the new dataset with the old schema.
pub fn write(
    store: &dyn ObjectStore,
    ds: &Dataset,
    schema: &FeatureSchema,
) -> Result<(), FrameError> {
    // Plain zstd-1 columns (a dictionary only for `split`), encoded on up to 4 threads: see
    // [`parquet_io::encode_columns`] for why.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    let bytes = parquet_io::encode_columns(&to_batch(ds), &["split"], threads)?;
    let json = serde_json::to_vec_pretty(schema).map_err(|source| FrameError::Schema {
        uri: store.uri(SCHEMA),
        source,
    })?;
    let mut w = Writer::begin(store, STAGE)?;
    w.put(DATASET, &bytes)?;
    w.put(SCHEMA, &json)?;
    w.commit()?;
    Ok(())
}

fn parse_schema(store: &dyn ObjectStore, bytes: &[u8]) -> Result<FeatureSchema, FrameError> {
    serde_json::from_slice(bytes).map_err(|source| FrameError::Schema {
        uri: store.uri(SCHEMA),
        source,
    })
}

/// The committed schema alone.
pub fn read_schema(store: &dyn ObjectStore) -> Result<FeatureSchema, FrameError> {
    let snap = Snapshot::open(store, STAGE)?;
    parse_schema(store, &snap.get(SCHEMA)?)
}

fn f64_column(batch: &RecordBatch, name: &str, uri: &str) -> Result<Vec<f64>, FrameError> {
    let mismatch = |problem: String| FrameError::Mismatch {
        uri: uri.to_owned(),
        problem,
    };
    let col = batch
        .column_by_name(name)
        .ok_or_else(|| mismatch(format!("missing column `{name}`")))?;
    let a = col.as_any().downcast_ref::<Float64Array>().ok_or_else(|| {
        mismatch(format!(
            "column `{name}` is {}, expected Float64",
            col.data_type()
        ))
    })?;
    Ok((0..a.len())
        .map(|i| if a.is_null(i) { f64::NAN } else { a.value(i) })
        .collect())
}

/// Read the dataset and its schema.
pub fn read(store: &dyn ObjectStore) -> Result<(Dataset, FeatureSchema), FrameError> {
    let snap = Snapshot::open(store, STAGE)?;
    let schema = parse_schema(store, &snap.get(SCHEMA)?)?;
    let uri = store.uri(DATASET);
    let batches = parquet_io::decode(snap.get(DATASET)?, &uri)?;
    let batch = arrow::compute::concat_batches(
        &batches
            .first()
            .map_or_else(|| Arc::new(Schema::empty()), RecordBatch::schema),
        &batches,
    )
    .map_err(|e| FrameError::Mismatch {
        uri: uri.clone(),
        problem: e.to_string(),
    })?;
    let mismatch = |problem: String| FrameError::Mismatch {
        uri: uri.clone(),
        problem,
    };
    let ts = batch
        .column_by_name("ts")
        .and_then(|c| c.as_any().downcast_ref::<TimestampMillisecondArray>())
        .ok_or_else(|| mismatch("missing timestamp column `ts`".to_owned()))?
        .values()
        .to_vec();
    let split_col = batch
        .column_by_name("split")
        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        .ok_or_else(|| mismatch("missing string column `split`".to_owned()))?;
    let split = (0..split_col.len())
        .map(|i| {
            Split::parse(split_col.value(i))
                .ok_or_else(|| mismatch(format!("unknown split {:?}", split_col.value(i))))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let columns = schema
        .features
        .iter()
        .map(|n| f64_column(&batch, n, &uri))
        .collect::<Result<Vec<_>, _>>()?;
    let bar_vol = f64_column(&batch, "bar_vol", &uri)?;
    let target = f64_column(&batch, "target", &uri)?;
    let close = batch
        .column_by_name(CLOSE)
        .is_some()
        .then(|| f64_column(&batch, CLOSE, &uri))
        .transpose()?;
    let frame = FeatureFrame {
        present: vec![true; ts.len()],
        ts,
        names: schema.features.clone(),
        columns,
        bar_vol,
        target,
    };
    Ok((
        Dataset {
            frame,
            split,
            close,
        },
        schema,
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn dataset(shift: f64) -> (Dataset, FeatureSchema) {
        let n = 8;
        let params = rps_core::params::Params::default();
        let frame = FeatureFrame {
            ts: (0..n).map(|i| i * 3_600_000).collect(),
            names: vec!["f".to_owned()],
            columns: vec![(0..n).map(|i| i as f64 + shift).collect()],
            bar_vol: vec![0.01; n as usize],
            target: vec![0.02; n as usize],
            present: vec![true; n as usize],
        };
        let schema = FeatureSchema {
            version: FeatureSchema::VERSION,
            symbol: "X".to_owned(),
            source: "synthetic".to_owned(),
            bar: "1h".to_owned(),
            features: vec!["f".to_owned()],
            feature_params: params.features,
            target: params.target,
            reference: Vec::new(),
            rows: Default::default(),
            first_ts: 0,
            last_ts: 0,
            data_hash: format!("hash-{shift}"),
            symbols: Vec::new(),
        };
        let split = vec![Split::Train; n as usize];
        let close = Some((0..n).map(|i| 100.0 + i as f64).collect());
        (
            Dataset {
                frame,
                split,
                close,
            },
            schema,
        )
    }

    #[test]
    fn new_features_never_pair_with_the_old_schema() {
        let dir = tempfile::tempdir().unwrap();
        let s = crate::open(dir.path().to_str().unwrap()).unwrap();
        let (old, old_schema) = dataset(0.0);
        write(s.as_ref(), &old, &old_schema).unwrap();
        assert_eq!(read(s.as_ref()).unwrap(), (old.clone(), old_schema.clone()));
        // A transform killed after features.parquet, before schema.json and the record.
        let (new, _) = dataset(100.0);
        s.put(DATASET, &parquet_io::encode(&to_batch(&new)).unwrap())
            .unwrap();
        let e = read(s.as_ref()).unwrap_err();
        assert!(e.is_input(), "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains("torn or in-progress output")
                && msg.contains(DATASET)
                && msg.contains("rerun rps-transform"),
            "{msg}"
        );
        // The schema alone is still the committed one.
        assert_eq!(read_schema(s.as_ref()).unwrap(), old_schema);
        // The rerun commits both.
        let (new, new_schema) = dataset(100.0);
        write(s.as_ref(), &new, &new_schema).unwrap();
        assert_eq!(read(s.as_ref()).unwrap(), (new, new_schema));
    }

    #[test]
    fn a_missing_dataset_is_not_found_and_a_corrupt_one_is_input() {
        let dir = tempfile::tempdir().unwrap();
        let s = crate::open(dir.path().to_str().unwrap()).unwrap();
        let e = read(s.as_ref()).unwrap_err();
        assert!(
            matches!(
                e,
                FrameError::Commit(CommitError::Store(StoreError::NotFound { .. }))
            ),
            "{e}"
        );
        assert!(e.is_input());
        // A committed but undecodable file (corrupted after the commit, hashes re-recorded):
        // the Parquet error names the file and is bad input.
        let mut w = Writer::begin(s.as_ref(), STAGE).unwrap();
        w.put(DATASET, b"PAR1 truncated").unwrap();
        w.put(SCHEMA, b"{\"version\": 1").unwrap();
        w.commit().unwrap();
        let e = read(s.as_ref()).unwrap_err();
        assert!(e.is_input() && e.to_string().contains(SCHEMA), "{e}");
        let (_, schema) = dataset(0.0);
        let mut w = Writer::begin(s.as_ref(), STAGE).unwrap();
        w.put(DATASET, b"PAR1 truncated").unwrap();
        w.put(SCHEMA, &serde_json::to_vec(&schema).unwrap())
            .unwrap();
        w.commit().unwrap();
        let e = read(s.as_ref()).unwrap_err();
        assert!(e.is_input() && e.to_string().contains(DATASET), "{e}");
    }
}

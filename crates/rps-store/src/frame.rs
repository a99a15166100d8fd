//! The feature dataset: one Parquet file with `ts`, `split`, the features, `bar_vol` and
//! `target`, plus `schema.json`.

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

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Parquet(#[from] ParquetError),
    #[error("bad feature schema {uri}: {source}")]
    Schema {
        uri: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("feature dataset {uri} does not match its schema: {problem}")]
    Mismatch { uri: String, problem: String },
}

/// A feature frame with each row's split.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub frame: FeatureFrame,
    pub split: Vec<Split>,
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
    let extra = [
        ("bar_vol".to_owned(), &f.bar_vol),
        ("target".to_owned(), &f.target),
    ];
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

/// Write the dataset and its schema (dataset first, schema last).
pub fn write(
    store: &dyn ObjectStore,
    ds: &Dataset,
    schema: &FeatureSchema,
) -> Result<(), FrameError> {
    store.put(DATASET, &parquet_io::encode(&to_batch(ds))?)?;
    let json = serde_json::to_vec_pretty(schema).map_err(|source| FrameError::Schema {
        uri: store.uri(SCHEMA),
        source,
    })?;
    store.put(SCHEMA, &json)?;
    Ok(())
}

pub fn read_schema(store: &dyn ObjectStore) -> Result<FeatureSchema, FrameError> {
    serde_json::from_slice(&store.get(SCHEMA)?).map_err(|source| FrameError::Schema {
        uri: store.uri(SCHEMA),
        source,
    })
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
    let schema = read_schema(store)?;
    let uri = store.uri(DATASET);
    let batches = parquet_io::decode(store.get(DATASET)?, &uri)?;
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
    let frame = FeatureFrame {
        present: vec![true; ts.len()],
        ts,
        names: schema.features.clone(),
        columns,
        bar_vol,
        target,
    };
    Ok((Dataset { frame, split }, schema))
}

//! Arrow record batches to and from Parquet bytes.

use arrow::array::RecordBatch;
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

/// A Parquet encode/decode failure.
#[derive(Debug, thiserror::Error)]
pub enum ParquetError {
    #[error("not a readable Parquet file ({what}): {source}")]
    Read {
        what: String,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("could not decode Arrow data in {what}: {source}")]
    Arrow {
        what: String,
        #[source]
        source: arrow::error::ArrowError,
    },
    #[error("could not write Parquet: {0}")]
    Write(#[from] parquet::errors::ParquetError),
}

/// Encode one batch as a zstd-compressed Parquet file.
pub fn encode(batch: &RecordBatch) -> Result<Vec<u8>, ParquetError> {
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default()))
        .set_created_by(concat!("rps ", env!("CARGO_PKG_VERSION")).to_owned())
        .build();
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, batch.schema(), Some(props))?;
    writer.write(batch)?;
    writer.close()?;
    Ok(out)
}

/// Decode every batch of a Parquet file. `what` names the file in errors.
pub fn decode(bytes: Vec<u8>, what: &str) -> Result<Vec<RecordBatch>, ParquetError> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(bytes))
        .map_err(|source| ParquetError::Read {
            what: what.to_owned(),
            source,
        })?
        .with_batch_size(65_536)
        .build()
        .map_err(|source| ParquetError::Read {
            what: what.to_owned(),
            source,
        })?;
    reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| ParquetError::Arrow {
            what: what.to_owned(),
            source,
        })
}

/// Decode a Parquet file batch by batch, reading only the top-level columns named in `names`
/// (those the file has; a missing one is simply absent from the batches). `what` names the file
/// in errors.
pub fn decode_columns(
    bytes: Bytes,
    what: &str,
    names: &[&str],
) -> Result<impl Iterator<Item = Result<RecordBatch, ParquetError>>, ParquetError> {
    let read = |source| ParquetError::Read {
        what: what.to_owned(),
        source,
    };
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(read)?;
    let roots: Vec<usize> = builder
        .schema()
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| names.contains(&f.name().as_str()))
        .map(|(i, _)| i)
        .collect();
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let reader = builder
        .with_projection(mask)
        .with_batch_size(65_536)
        .build()
        .map_err(read)?;
    let what = what.to_owned();
    Ok(reader.map(move |b| {
        b.map_err(|source| ParquetError::Arrow {
            what: what.clone(),
            source,
        })
    }))
}

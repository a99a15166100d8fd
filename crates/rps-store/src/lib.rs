//! Storage for RPS stages.
//!
//! - [`object`]: the [`ObjectStore`] seam over URIs. `file://` URIs and plain paths are local
//!   folders (the embedded default); `s3://bucket/prefix` is S3 or MinIO ([`s3`]).
//!   Every `put` is atomic from a reader's point of view.
//! - [`raw`]: the raw candle dataset — monthly Parquet partitions plus a manifest that is swapped
//!   last, so readers always see a consistent snapshot.
//! - [`commit`]: multi-file outputs (features + schema, a model's files, reports) committed by a
//!   record of every file's hash written last, which readers verify; sweeping killed writers'
//!   leftovers.
//! - [`frame`]: the feature dataset (one Parquet file with a `split` column) and its schema.
//! - [`import`]: reading OHLCV candles from a user's CSV or Parquet file with a column mapping.
//! - [`parquet_io`]: Arrow ⇄ Parquet bytes.

pub mod commit;
pub mod dvc;
pub mod frame;
pub mod import;
pub mod object;
pub mod parquet_io;
pub mod raw;
pub mod s3;

pub use object::{ObjectStore, StoreError, open};

/// Hex SHA-256 of bytes: content hashes that tag runs with the data they saw.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

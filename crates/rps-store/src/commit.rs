//! Multi-file outputs committed at once: a commit record written last, verified by readers.
//!
//! A stage that writes several files that only make sense together (the feature dataset and its
//! schema; the model, its metadata and `version.json`; the evaluation reports) writes each file
//! atomically ([`ObjectStore::put`]) and then [`COMMIT`] (`_commit.json`), listing every file of
//! the output with its SHA-256. A reader opens the output with [`Snapshot::open`] and reads
//! through [`Snapshot::get`], which refuses a file whose bytes do not match the record — a
//! writer killed (or out of space) between two files leaves new files beside the old record, and
//! the reader says so ([`CommitError::Torn`]: "torn or in-progress output at …; rerun <stage>")
//! instead of silently pairing a new file with an old one.
//!
//! The same record works on every store (a local folder and S3 alike: S3 has no directory
//! rename), which is why it is used rather than a directory swap (README "Storage and
//! atomicity").
//!
//! Cleaning up after killed writers: [`sweep_stale_temp`] removes the `.tmp*` files of writers
//! that are no longer running (see [`crate::object::LocalStore::sweep_stale_temp`] for the rule),
//! and [`sweep_orphan_partitions`] removes raw-dataset partitions no manifest references.

use crate::object::{ObjectStore, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The commit record of a multi-file output, written last.
pub const COMMIT: &str = "_commit.json";

/// One committed file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub sha256: String,
    pub bytes: u64,
}

/// What `_commit.json` holds: the stage that wrote the output and each file's hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub stage: String,
    pub files: BTreeMap<String, Entry>,
}

/// A committed output that cannot be read as one consistent state.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("torn or in-progress output at {uri}: {problem}; rerun {stage}")]
    Torn {
        uri: String,
        problem: String,
        stage: String,
    },
}

impl CommitError {
    /// Whether the output itself is bad (exit 4, input), rather than the store failing (exit 7).
    pub fn is_input(&self) -> bool {
        match self {
            Self::Torn { .. } => true,
            Self::Store(e) => matches!(e, StoreError::NotFound { .. }),
        }
    }
}

/// Writes the files of one output, then the record.
#[derive(Debug)]
pub struct Writer<'a> {
    store: &'a dyn ObjectStore,
    record: Record,
}

impl<'a> Writer<'a> {
    /// Start writing an output of `stage` (e.g. `rps-train`) into `store`; stale temporary
    /// files of killed writers are removed first.
    pub fn begin(store: &'a dyn ObjectStore, stage: &str) -> Result<Self, StoreError> {
        sweep_stale_temp(store);
        Ok(Self {
            store,
            record: Record {
                stage: stage.to_owned(),
                files: BTreeMap::new(),
            },
        })
    }

    /// Write one file of the output (atomically) and remember its hash.
    pub fn put(&mut self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        // A large file is hashed on a second thread while it is written (and fsynced).
        let sha256 = if bytes.len() >= 1 << 20 {
            std::thread::scope(|s| {
                let hash = s.spawn(|| crate::sha256_hex(bytes));
                let put = self.store.put(key, bytes);
                let hash = hash.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
                put.map(|()| hash)
            })?
        } else {
            self.store.put(key, bytes)?;
            crate::sha256_hex(bytes)
        };
        self.record.files.insert(
            key.to_owned(),
            Entry {
                sha256,
                bytes: bytes.len() as u64,
            },
        );
        Ok(())
    }

    /// Write the record: from now on readers see the new output.
    pub fn commit(self) -> Result<Record, StoreError> {
        let json = serde_json::to_vec_pretty(&self.record).map_err(|e| StoreError::Io {
            uri: self.store.uri(COMMIT),
            source: std::io::Error::other(e),
        })?;
        self.store.put(COMMIT, &json)?;
        Ok(self.record)
    }
}

/// A committed output opened for reading.
#[derive(Debug, Clone)]
pub struct Snapshot<'a> {
    store: &'a dyn ObjectStore,
    pub record: Record,
    stage: String,
}

impl<'a> Snapshot<'a> {
    /// Open the output in `store` that `stage` writes (named in errors: "rerun <stage>").
    pub fn open(store: &'a dyn ObjectStore, stage: &str) -> Result<Self, CommitError> {
        let torn = |problem: String| CommitError::Torn {
            uri: store.uri(""),
            problem,
            stage: stage.to_owned(),
        };
        let bytes = match store.get(COMMIT) {
            Ok(b) => b,
            Err(StoreError::NotFound { .. }) => {
                // An output that does not exist at all is "not found"; files without a record
                // are a write that never finished (or an output from before commit records).
                if store.list("")?.is_empty() {
                    return Err(StoreError::NotFound {
                        uri: store.uri(COMMIT),
                    }
                    .into());
                }
                return Err(torn(format!("no commit record {COMMIT}")));
            }
            Err(e) => return Err(e.into()),
        };
        let record: Record = serde_json::from_slice(&bytes)
            .map_err(|e| torn(format!("unreadable commit record {COMMIT}: {e}")))?;
        Ok(Self {
            store,
            record,
            stage: stage.to_owned(),
        })
    }

    /// The URI of a key of the output, for messages.
    pub fn uri(&self, key: &str) -> String {
        self.store.uri(key)
    }

    /// Whether the output holds `key`.
    pub fn contains(&self, key: &str) -> bool {
        self.record.files.contains_key(key)
    }

    /// The committed SHA-256 of `key`.
    pub fn sha256(&self, key: &str) -> Option<&str> {
        self.record.files.get(key).map(|e| e.sha256.as_str())
    }

    /// Read `key`, refusing bytes that are not the committed ones.
    pub fn get(&self, key: &str) -> Result<Vec<u8>, CommitError> {
        let torn = |problem: String| CommitError::Torn {
            uri: self.store.uri(""),
            problem,
            stage: self.stage.clone(),
        };
        let entry = self
            .record
            .files
            .get(key)
            .ok_or_else(|| torn(format!("{key} is not in the commit record")))?;
        let bytes = match self.store.get(key) {
            Ok(b) => b,
            Err(StoreError::NotFound { .. }) => {
                return Err(torn(format!("{key} is missing")));
            }
            Err(e) => return Err(e.into()),
        };
        let sha = crate::sha256_hex(&bytes);
        if sha != entry.sha256 {
            return Err(torn(format!(
                "{key} ({} bytes, sha256 {}) is not the committed file ({} bytes, sha256 {})",
                bytes.len(),
                &sha[..12],
                entry.bytes,
                &entry.sha256[..entry.sha256.len().min(12)]
            )));
        }
        Ok(bytes)
    }
}

/// Remove stale temporary files of killed writers under the store (local folders only; see
/// [`crate::object::LocalStore::sweep_stale_temp`] for what "stale" means). Best effort: a
/// failure is logged, never fatal. Returns how many files were removed.
pub fn sweep_stale_temp(store: &dyn ObjectStore) -> usize {
    match store.sweep_stale_temp() {
        Ok(n) => {
            if n > 0 {
                tracing::info!(
                    "removed {n} stale temporary file(s) of killed writers in {}",
                    store.uri("")
                );
            }
            n
        }
        Err(e) => {
            tracing::warn!("could not sweep stale temporary files: {e}");
            0
        }
    }
}

/// Before a raw-dataset write: remove partitions (`part-*`) the current manifest does not
/// reference — left by a writer killed or out of space before it swapped the manifest — and stale
/// temporary files. A raw dataset has one writer at a time (extract, or `rps stream`), so an
/// unreferenced partition is never a concurrent writer's. Returns how many files were removed.
pub fn sweep_orphan_partitions(
    store: &dyn ObjectStore,
    current: Option<&crate::raw::Manifest>,
) -> Result<usize, StoreError> {
    let mut removed = sweep_stale_temp(store);
    let live: std::collections::HashSet<&str> = current
        .map(|m| m.partitions.iter().map(|p| p.key.as_str()).collect())
        .unwrap_or_default();
    for key in store.list("part-")? {
        if !live.contains(key.as_str()) {
            store.delete(&key)?;
            removed += 1;
        }
    }
    if removed > 0 {
        tracing::info!(
            "removed {removed} orphan partition(s)/temporary file(s) in {}",
            store.uri("")
        );
    }
    Ok(removed)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::object::open;

    #[test]
    fn readers_refuse_a_torn_output_and_read_a_committed_one() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path().to_str().unwrap()).unwrap();
        // Nothing there: not found (an input that does not exist), not "torn".
        let e = Snapshot::open(s.as_ref(), "rps-x").unwrap_err();
        assert!(
            matches!(e, CommitError::Store(StoreError::NotFound { .. })),
            "{e}"
        );
        let mut w = Writer::begin(s.as_ref(), "rps-x").unwrap();
        w.put("a.bin", b"old a").unwrap();
        w.put("b.json", b"old b").unwrap();
        w.commit().unwrap();
        let snap = Snapshot::open(s.as_ref(), "rps-x").unwrap();
        assert_eq!(snap.get("a.bin").unwrap(), b"old a");
        assert_eq!(snap.get("b.json").unwrap(), b"old b");
        // A writer killed after its first file: the new a.bin beside the old record.
        let mut w = Writer::begin(s.as_ref(), "rps-x").unwrap();
        w.put("a.bin", b"new a").unwrap();
        drop(w);
        let snap = Snapshot::open(s.as_ref(), "rps-x").unwrap();
        let e = snap.get("a.bin").unwrap_err();
        let msg = e.to_string();
        assert!(e.is_input(), "{msg}");
        assert!(
            msg.contains("torn or in-progress output at")
                && msg.contains("a.bin")
                && msg.contains("rerun rps-x"),
            "{msg}"
        );
        // b.json is still the committed one, but a reader reads both: the pair is refused.
        assert_eq!(snap.get("b.json").unwrap(), b"old b");
        // A missing file and a file outside the record are refused too.
        s.delete("b.json").unwrap();
        assert!(
            snap.get("b.json")
                .unwrap_err()
                .to_string()
                .contains("missing")
        );
        assert!(
            snap.get("c")
                .unwrap_err()
                .to_string()
                .contains("not in the commit record")
        );
        // Files without any record (a first write killed before its record) are torn.
        s.delete(COMMIT).unwrap();
        let e = Snapshot::open(s.as_ref(), "rps-x").unwrap_err();
        assert!(
            e.is_input() && e.to_string().contains("no commit record"),
            "{e}"
        );
        // A corrupt record is torn, with exit 4 semantics.
        s.put(COMMIT, b"{not json").unwrap();
        let e = Snapshot::open(s.as_ref(), "rps-x").unwrap_err();
        assert!(
            e.is_input() && e.to_string().contains("unreadable commit record"),
            "{e}"
        );
    }

    #[test]
    fn orphan_partitions_and_stale_temp_files_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path().to_str().unwrap()).unwrap();
        s.put("part-2018-01-aaaaaaaa.parquet", b"live").unwrap();
        s.put("part-2018-02-bbbbbbbb.parquet", b"orphan").unwrap();
        s.put("_manifest.json", b"{}").unwrap();
        let manifest = crate::raw::Manifest {
            symbol: "X".into(),
            interval: rps_core::candle::Interval::H1,
            source: "test".into(),
            partitions: vec![crate::raw::Partition {
                key: "part-2018-01-aaaaaaaa.parquet".into(),
                month: "2018-01".into(),
                rows: 1,
                first_ts: 0,
                last_ts: 0,
                sha256: String::new(),
                crc32c: None,
                md5: None,
            }],
        };
        // A killed writer's temporary file (a pid that is not running on this host).
        let dead = dir.path().join(format!(
            ".tmp-abcdef.{}.{}",
            u32::MAX - 1,
            crate::object::hostname()
        ));
        std::fs::write(&dead, b"half").unwrap();
        assert_eq!(
            sweep_orphan_partitions(s.as_ref(), Some(&manifest)).unwrap(),
            2
        );
        assert!(!dead.exists());
        assert_eq!(
            s.list("").unwrap(),
            vec!["_manifest.json", "part-2018-01-aaaaaaaa.parquet"]
        );
    }
}

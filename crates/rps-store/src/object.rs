//! The object-store seam: a flat key space under a root URI.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A storage failure, naming the object or location involved.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("object not found: {uri}")]
    NotFound { uri: String },
    #[error("I/O error on {uri}: {source}")]
    Io {
        uri: String,
        #[source]
        source: std::io::Error,
    },
    #[error("unsupported storage URI {uri:?}: {reason}")]
    Unsupported { uri: String, reason: String },
    #[error("invalid object key {key:?}: {reason}")]
    InvalidKey { key: String, reason: String },
    #[error("object store request failed on {uri}: {message}")]
    Remote { uri: String, message: String },
}

/// Keys are relative `/`-separated paths without empty, `.` or `..` segments.
pub(crate) fn check_key(key: &str) -> Result<(), StoreError> {
    let bad = |reason: &str| StoreError::InvalidKey {
        key: key.to_owned(),
        reason: reason.to_owned(),
    };
    if key.is_empty() {
        return Err(bad("empty"));
    }
    if key.starts_with('/')
        || key
            .split('/')
            .any(|s| s == ".." || s == "." || s.is_empty())
    {
        return Err(bad(
            "must be a relative path without '.', '..' or empty segments",
        ));
    }
    Ok(())
}

/// A place to keep objects: a flat namespace of `/`-separated keys under a root.
///
/// `put` is atomic: a reader sees the old object or the whole new one, never a prefix, even if
/// the writer is killed mid-write.
pub trait ObjectStore: Send + Sync + fmt::Debug {
    /// Read a whole object.
    fn get(&self, key: &str) -> Result<Vec<u8>, StoreError>;
    /// Read the bytes `range` of an object (remote stores fetch only those bytes).
    fn get_range(&self, key: &str, range: std::ops::Range<u64>) -> Result<Vec<u8>, StoreError> {
        let all = self.get(key)?;
        let end = usize::try_from(range.end)
            .unwrap_or(usize::MAX)
            .min(all.len());
        let start = usize::try_from(range.start).unwrap_or(usize::MAX).min(end);
        Ok(all[start..end].to_vec())
    }
    /// The size of an object in bytes.
    fn size(&self, key: &str) -> Result<u64, StoreError> {
        Ok(self.get(key)?.len() as u64)
    }
    /// Write a whole object atomically, replacing any previous one.
    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError>;
    /// Keys under `prefix` (recursively), sorted.
    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError>;
    /// Remove an object; removing a missing one is not an error.
    fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// The URI of a key, for messages and run records.
    fn uri(&self, key: &str) -> String;
    /// Whether an object exists.
    fn exists(&self, key: &str) -> Result<bool, StoreError> {
        match self.get(key) {
            Ok(_) => Ok(true),
            Err(StoreError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }
    /// A local path for the key when the store is a local folder (lets stages hand files to
    /// tools that want paths); `None` for remote stores.
    fn local_path(&self, key: &str) -> Option<PathBuf> {
        let _ = key;
        None
    }
    /// Remove the temporary files killed writers left behind (local folders; remote stores
    /// have none). Returns how many were removed.
    fn sweep_stale_temp(&self) -> Result<usize, StoreError> {
        Ok(0)
    }
}

/// This machine's host name (`/proc/sys/kernel/hostname`; `unknown` elsewhere), the part of a
/// temporary file's name that says whose process id it carries.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().replace(['/', '.'], "_"))
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// A temporary file older than this is stale whoever wrote it: a `put` writes, syncs and
/// renames within seconds.
pub const TEMP_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(3600);

/// Whether a `.tmp*` file is a killed writer's (safe to remove), never a live writer's.
///
/// `put` names its temporary file `.tmp-<random>.<pid>.<host>`. It is stale when it was written
/// on this host (same host name: same process namespace) by a process that is no longer running
/// (`/proc/<pid>` is gone), or — for any `.tmp*` file, including those of other hosts sharing the
/// folder — when it has not been modified for [`TEMP_MAX_AGE`]. A live writer's file is never
/// removed: its process exists, and it is younger than an hour.
fn temp_is_stale(name: &str, modified: Option<std::time::SystemTime>, host: &str) -> bool {
    let old = modified
        .and_then(|m| m.elapsed().ok())
        .is_some_and(|age| age > TEMP_MAX_AGE);
    if old {
        return true;
    }
    let Some(rest) = name.strip_prefix(".tmp-") else {
        return false;
    };
    let mut parts = rest.splitn(3, '.');
    let (_, Some(pid), Some(their_host)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    their_host == host
        && pid != std::process::id()
        && Path::new("/proc/self").exists()
        && !Path::new(&format!("/proc/{pid}")).exists()
}

/// Open the store rooted at `uri`: a plain path or `file://` URI is a local folder (created on
/// first write); `s3://bucket/prefix` is a bucket on S3 or an S3-compatible server such as MinIO,
/// configured from the environment (see [`crate::s3`]).
pub fn open(uri: &str) -> Result<Arc<dyn ObjectStore>, StoreError> {
    if let Some(path) = uri.strip_prefix("file://") {
        return Ok(Arc::new(LocalStore::new(path)));
    }
    if uri.starts_with("s3://") {
        return Ok(Arc::new(crate::s3::S3Store::from_uri(uri)?));
    }
    if let Some((scheme, _)) = uri.split_once("://") {
        return Err(StoreError::Unsupported {
            uri: uri.to_owned(),
            reason: format!("unknown scheme {scheme:?}; use a path, file:// or s3://"),
        });
    }
    Ok(Arc::new(LocalStore::new(uri)))
}

/// A local folder.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn path(&self, key: &str) -> Result<PathBuf, StoreError> {
        check_key(key)?;
        Ok(self.root.join(key))
    }

    /// A failed read: `NotFound` for a missing file, else an I/O error.
    fn read_error(&self, key: &str, e: std::io::Error) -> StoreError {
        if e.kind() == std::io::ErrorKind::NotFound {
            StoreError::NotFound { uri: self.uri(key) }
        } else {
            StoreError::Io {
                uri: self.uri(key),
                source: e,
            }
        }
    }

    fn io(&self, key: &str) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
        let uri = self.uri(key);
        move |source| StoreError::Io { uri, source }
    }
}

fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name();
        // Temporary files of in-flight writes are invisible.
        if name.to_string_lossy().starts_with(".tmp") {
            continue;
        }
        if entry.file_type()?.is_dir() {
            walk(&path, base, out)?;
        } else if let Ok(rel) = path.strip_prefix(base) {
            out.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
    Ok(())
}

impl ObjectStore for LocalStore {
    fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        let path = self.path(key)?;
        std::fs::read(&path).map_err(|e| self.read_error(key, e))
    }

    fn get_range(&self, key: &str, range: std::ops::Range<u64>) -> Result<Vec<u8>, StoreError> {
        use std::io::{Read, Seek, SeekFrom};
        let path = self.path(key)?;
        let mut file = std::fs::File::open(&path).map_err(|e| self.read_error(key, e))?;
        file.seek(SeekFrom::Start(range.start))
            .map_err(self.io(key))?;
        let mut out = Vec::new();
        file.take(range.end.saturating_sub(range.start))
            .read_to_end(&mut out)
            .map_err(self.io(key))?;
        Ok(out)
    }

    fn size(&self, key: &str) -> Result<u64, StoreError> {
        let path = self.path(key)?;
        std::fs::metadata(&path)
            .map(|m| m.len())
            .map_err(|e| self.read_error(key, e))
    }

    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let path = self.path(key)?;
        let dir = path.parent().unwrap_or(&self.root);
        std::fs::create_dir_all(dir).map_err(self.io(key))?;
        // Write a temporary file in the same folder, fsync, then rename over the target: a
        // reader sees the old file or the new one, and a killed writer leaves only a `.tmp*`.
        // The name carries the writer's pid and host, so a later run can tell a killed writer's
        // leftover from a live one's ([`temp_is_stale`]).
        let suffix = format!(".{}.{}", std::process::id(), hostname());
        let mut builder = tempfile::Builder::new();
        builder.prefix(".tmp-").rand_bytes(6).suffix(&suffix);
        // rw for all, less the umask, like any file a tool writes (tempfile's own 0600 would
        // keep a read-only container user from the models a host run wrote).
        #[cfg(unix)]
        builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
        let mut tmp = builder.tempfile_in(dir).map_err(self.io(key))?;
        tmp.write_all(bytes).map_err(self.io(key))?;
        tmp.as_file().sync_all().map_err(self.io(key))?;
        tmp.persist(&path).map_err(|e| StoreError::Io {
            uri: self.uri(key),
            source: e.error,
        })?;
        Ok(())
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        walk(&self.root, &self.root, &mut out).map_err(self.io(prefix))?;
        out.retain(|k| k.starts_with(prefix));
        out.sort();
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        match std::fs::remove_file(self.path(key)?) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StoreError::Io {
                uri: self.uri(key),
                source: e,
            }),
            _ => Ok(()),
        }
    }

    fn uri(&self, key: &str) -> String {
        format!("{}", self.root.join(key).display())
    }

    fn local_path(&self, key: &str) -> Option<PathBuf> {
        self.path(key).ok()
    }

    fn sweep_stale_temp(&self) -> Result<usize, StoreError> {
        fn sweep(dir: &Path, host: &str, removed: &mut usize) -> std::io::Result<()> {
            let entries = match std::fs::read_dir(dir) {
                Ok(e) => e,
                // Nothing written there yet (or not a folder: the write will say so).
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                    ) =>
                {
                    return Ok(());
                }
                Err(e) => return Err(e),
            };
            for entry in entries {
                let entry = entry?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let kind = entry.file_type()?;
                if kind.is_dir() {
                    sweep(&entry.path(), host, removed)?;
                } else if name.starts_with(".tmp") {
                    let modified = entry.metadata().ok().and_then(|m| m.modified().ok());
                    if temp_is_stale(&name, modified, host) {
                        match std::fs::remove_file(entry.path()) {
                            Ok(()) => *removed += 1,
                            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                            Err(e) => return Err(e),
                        }
                    }
                }
            }
            Ok(())
        }
        let mut removed = 0;
        sweep(&self.root, &hostname(), &mut removed).map_err(self.io(""))?;
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Files get the mode any tool would give them under the process umask (0644 under the
    /// usual 022), not tempfile's 0600: a container user other than the writer can read them.
    #[cfg(unix)]
    #[test]
    fn written_files_follow_the_umask_not_0600() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path().to_str().unwrap()).unwrap();
        s.put("m/model.json", b"{}").unwrap();
        let reference = dir.path().join("m/reference");
        std::fs::write(&reference, b"{}").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.path().join("m/model.json")), mode(&reference));
        assert_ne!(
            mode(&reference) & 0o044,
            0,
            "the test runs under a umask that hides reads"
        );
    }

    #[test]
    fn local_store_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path().to_str().unwrap()).unwrap();
        s.put("a/b.txt", b"one").unwrap();
        s.put("a/b.txt", b"two").unwrap();
        s.put("c.txt", b"three").unwrap();
        assert_eq!(s.get("a/b.txt").unwrap(), b"two");
        assert_eq!(s.list("").unwrap(), vec!["a/b.txt", "c.txt"]);
        assert_eq!(s.list("a/").unwrap(), vec!["a/b.txt"]);
        // A leftover temporary file of a killed writer is invisible.
        std::fs::write(dir.path().join("a/.tmpXYZ"), b"half").unwrap();
        assert_eq!(s.list("a/").unwrap(), vec!["a/b.txt"]);
        s.delete("a/b.txt").unwrap();
        s.delete("a/b.txt").unwrap();
        assert!(matches!(s.get("a/b.txt"), Err(StoreError::NotFound { .. })));
        assert!(matches!(
            s.put("../x", b""),
            Err(StoreError::InvalidKey { .. })
        ));
        assert!(matches!(
            open("ftp://x"),
            Err(StoreError::Unsupported { .. })
        ));
        assert!(!s.exists("nope").unwrap());
        s.put("r.bin", b"0123456789").unwrap();
        assert_eq!(s.get_range("r.bin", 2..5).unwrap(), b"234");
        assert_eq!(s.get_range("r.bin", 8..50).unwrap(), b"89");
        assert_eq!(s.size("r.bin").unwrap(), 10);
        assert!(matches!(s.size("nope"), Err(StoreError::NotFound { .. })));
    }

    #[test]
    fn only_stale_temporary_files_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path().to_str().unwrap()).unwrap();
        s.put("a/b.txt", b"one").unwrap();
        let host = hostname();
        let me = std::process::id();
        let dead = format!(".tmp-aaaaaa.{}.{host}", u32::MAX - 1);
        let live = format!(".tmp-bbbbbb.{me}.{host}");
        let other_host = format!(".tmp-cccccc.{}.some-other-host", u32::MAX - 1);
        let legacy = ".tmpXYZ123";
        for n in [&dead, &live, &other_host, &legacy.to_owned()] {
            std::fs::write(dir.path().join("a").join(n), b"half").unwrap();
        }
        // The parent process (cargo's test harness) is alive: its file stays too.
        let parent = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|s| {
                s.rsplit(')')
                    .next()?
                    .split_whitespace()
                    .nth(1)?
                    .parse::<u32>()
                    .ok()
            });
        if let Some(ppid) = parent {
            std::fs::write(
                dir.path().join(format!("a/.tmp-dddddd.{ppid}.{host}")),
                b"x",
            )
            .unwrap();
        }
        assert_eq!(
            s.sweep_stale_temp().unwrap(),
            1,
            "only the dead local writer's file"
        );
        let left: Vec<String> = std::fs::read_dir(dir.path().join("a"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(!left.contains(&dead), "{left:?}");
        for n in [&live, &other_host, &legacy.to_owned()] {
            assert!(left.contains(n), "{n} must stay: {left:?}");
        }
        // Age makes any temporary file stale, whoever wrote it.
        let old = std::time::SystemTime::now() - TEMP_MAX_AGE - std::time::Duration::from_secs(5);
        assert!(temp_is_stale(&other_host, Some(old), &host));
        assert!(temp_is_stale(legacy, Some(old), &host));
        assert!(!temp_is_stale(
            legacy,
            Some(std::time::SystemTime::now()),
            &host
        ));
        // The committed file is untouched.
        assert_eq!(s.get("a/b.txt").unwrap(), b"one");
    }
}

//! Run artifacts: upload, list, download.
//!
//! Built in: the MLflow artifact proxy (`mlflow server --serve-artifacts`, run artifact URIs
//! `mlflow-artifacts:/<exp>/<run>/artifacts`), reached through the tracking server with the
//! same credentials. Other schemes (`s3://`, `file://`, …) go to an [`ArtifactBackend`]
//! registered with [`MlflowClient::with_artifact_backend`]; without one they are
//! [`MlflowError::UnsupportedArtifactUri`].

use std::path::{Path, PathBuf};

use reqwest::Method;
use serde::Deserialize;

use crate::client::{ARTIFACT_PROXY, Body, MlflowClient, TRACKING};
use crate::error::{MlflowError, Result};
use crate::types::{FileInfo, RunInfo};

/// Scheme of artifact URIs served by the tracking server's artifact proxy.
pub const PROXY_SCHEME: &str = "mlflow-artifacts:";

/// A store for run artifacts whose URI the tracking server does not proxy (S3 will be one).
///
/// `artifact_uri` is the run's root (`RunInfo::artifact_uri`, e.g. `s3://bucket/1/<run>/artifacts`)
/// and `artifact_path` a validated relative path below it (`model/MLmodel`).
pub trait ArtifactBackend: Send + Sync {
    /// Whether this backend serves `artifact_uri`.
    fn handles(&self, artifact_uri: &str) -> bool;
    /// Stores `bytes` at `artifact_uri/artifact_path`.
    ///
    /// # Errors
    /// Backend-specific.
    fn upload(&self, artifact_uri: &str, artifact_path: &str, bytes: &[u8]) -> Result<()>;
    /// Reads `artifact_uri/artifact_path`.
    ///
    /// # Errors
    /// Backend-specific.
    fn download(&self, artifact_uri: &str, artifact_path: &str) -> Result<Vec<u8>>;
}

/// Checks a relative artifact path: `/`-separated, no empty, `.` or `..` segments, no
/// backslashes. `""` is the root and only allowed where `allow_root`.
///
/// # Errors
/// [`MlflowError::InvalidArgument`].
pub fn validate_artifact_path(path: &str, allow_root: bool) -> Result<()> {
    if path.is_empty() {
        return if allow_root {
            Ok(())
        } else {
            Err(MlflowError::InvalidArgument(
                "artifact path must not be empty".into(),
            ))
        };
    }
    if path.contains('\\')
        || path.chars().any(char::is_control)
        || path
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Err(MlflowError::InvalidArgument(format!(
            "artifact path {path:?} must be relative, '/'-separated, without empty, '.' or '..' segments"
        )));
    }
    Ok(())
}

/// The proxy path of a `mlflow-artifacts:` URI: `mlflow-artifacts:/1/abc/artifacts` and
/// `mlflow-artifacts://host:5000/1/abc/artifacts` both give `1/abc/artifacts`.
#[must_use]
pub fn proxy_root(artifact_uri: &str) -> Option<&str> {
    let rest = artifact_uri.strip_prefix(PROXY_SCHEME)?;
    let rest = match rest.strip_prefix("//") {
        Some(with_authority) => &with_authority[with_authority.find('/')?..],
        None => rest,
    };
    Some(rest.trim_matches('/'))
}

/// Percent-encodes one URL path segment (RFC 3986 unreserved characters stay as they are).
fn encode_segment(segment: &str, out: &mut String) {
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

fn join_encoded(parts: &[&str]) -> String {
    let mut out = String::new();
    for part in parts {
        for seg in part.split('/').filter(|s| !s.is_empty()) {
            if !out.is_empty() {
                out.push('/');
            }
            encode_segment(seg, &mut out);
        }
    }
    out
}

fn join_artifact(dir: &str, name: &str) -> String {
    let dir = dir.trim_matches('/');
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries = std::fs::read_dir(dir)
        .map_err(|e| MlflowError::io("listing", dir, e))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| MlflowError::io("listing", dir, e))?;
    entries.sort();
    for path in entries {
        let meta = std::fs::metadata(&path).map_err(|e| MlflowError::io("reading", &path, e))?;
        if meta.is_dir() {
            collect_files(&path, out)?;
        } else if meta.is_file() {
            out.push(path);
        }
    }
    Ok(())
}

impl MlflowClient {
    fn backend_for(&self, artifact_uri: &str) -> Result<&dyn ArtifactBackend> {
        self.backends
            .iter()
            .find(|b| b.handles(artifact_uri))
            .map(AsRef::as_ref)
            .ok_or_else(|| MlflowError::UnsupportedArtifactUri {
                uri: artifact_uri.to_owned(),
            })
    }

    /// Uploads `bytes` as the run artifact `artifact_path` (e.g. `model/model.json`).
    ///
    /// # Errors
    /// [`MlflowError::InvalidArgument`] for a bad path, [`MlflowError::UnsupportedArtifactUri`],
    /// transport, auth and API errors.
    pub fn log_artifact_bytes(
        &self,
        run: &RunInfo,
        artifact_path: &str,
        bytes: &[u8],
    ) -> Result<()> {
        validate_artifact_path(artifact_path, false)?;
        match proxy_root(&run.artifact_uri) {
            Some(root) => {
                let path = format!("{ARTIFACT_PROXY}/{}", join_encoded(&[root, artifact_path]));
                self.send(
                    &Method::PUT,
                    &path,
                    &[],
                    &Body::Bytes(bytes.to_vec()),
                    self.config().retry,
                )?;
                tracing::debug!(run_id = %run.run_id, artifact_path, bytes = bytes.len(), "uploaded artifact");
                Ok(())
            }
            None => {
                self.backend_for(&run.artifact_uri)?
                    .upload(&run.artifact_uri, artifact_path, bytes)
            }
        }
    }

    /// Uploads one local file into the artifact directory `artifact_dir` (`""` = the root),
    /// keeping its file name, like Python's `mlflow.log_artifact`. Returns the artifact path.
    ///
    /// # Errors
    /// As [`MlflowClient::log_artifact_bytes`], plus IO errors.
    pub fn log_artifact_file(
        &self,
        run: &RunInfo,
        local_file: &Path,
        artifact_dir: &str,
    ) -> Result<String> {
        validate_artifact_path(artifact_dir, true)?;
        let name = local_file
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| {
                MlflowError::InvalidArgument(format!(
                    "{} has no UTF-8 file name",
                    local_file.display()
                ))
            })?;
        let bytes =
            std::fs::read(local_file).map_err(|e| MlflowError::io("reading", local_file, e))?;
        let artifact_path = join_artifact(artifact_dir, name);
        self.log_artifact_bytes(run, &artifact_path, &bytes)?;
        Ok(artifact_path)
    }

    /// Uploads every file below `local_dir` (recursively, in sorted order) into the artifact
    /// directory `artifact_dir` (`""` = the root), like Python's `mlflow.log_artifacts`.
    /// Returns the artifact paths written.
    ///
    /// # Errors
    /// As [`MlflowClient::log_artifact_bytes`], plus IO errors and non-UTF-8 file names.
    pub fn log_artifact_dir(
        &self,
        run: &RunInfo,
        local_dir: &Path,
        artifact_dir: &str,
    ) -> Result<Vec<String>> {
        validate_artifact_path(artifact_dir, true)?;
        let mut files = Vec::new();
        collect_files(local_dir, &mut files)?;
        let mut written = Vec::with_capacity(files.len());
        for file in files {
            let rel = file.strip_prefix(local_dir).map_err(|_| {
                MlflowError::InvalidArgument(format!(
                    "{} escapes {}",
                    file.display(),
                    local_dir.display()
                ))
            })?;
            let rel = rel
                .components()
                .map(|c| {
                    c.as_os_str().to_str().map(str::to_owned).ok_or_else(|| {
                        MlflowError::InvalidArgument(format!("{} is not UTF-8", file.display()))
                    })
                })
                .collect::<Result<Vec<_>>>()?
                .join("/");
            let bytes = std::fs::read(&file).map_err(|e| MlflowError::io("reading", &file, e))?;
            let artifact_path = join_artifact(artifact_dir, &rel);
            self.log_artifact_bytes(run, &artifact_path, &bytes)?;
            written.push(artifact_path);
        }
        Ok(written)
    }

    /// Lists the artifacts directly under `path` (`""` = the root) of a run, through the
    /// tracking server (`artifacts/list`), whatever the artifact store.
    ///
    /// # Errors
    /// Transport, auth and API errors.
    pub fn list_artifacts(&self, run_id: &str, path: &str) -> Result<Vec<FileInfo>> {
        validate_artifact_path(path, true)?;
        #[derive(Deserialize)]
        struct Resp {
            #[serde(default)]
            files: Vec<FileInfo>,
            #[serde(default)]
            next_page_token: Option<String>,
        }
        let endpoint = format!("{TRACKING}/artifacts/list");
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![("run_id", run_id)];
            if !path.is_empty() {
                query.push(("path", path));
            }
            if let Some(t) = &token {
                query.push(("page_token", t.as_str()));
            }
            let r: Resp = self.get_json(&endpoint, &query)?;
            let got = r.files.len();
            out.extend(r.files);
            token = r.next_page_token.filter(|t| !t.is_empty());
            if token.is_none() || got == 0 {
                break;
            }
        }
        Ok(out)
    }

    /// Downloads one artifact file of a run.
    ///
    /// # Errors
    /// [`MlflowError::UnsupportedArtifactUri`], transport, auth and API errors.
    pub fn download_artifact(&self, run: &RunInfo, artifact_path: &str) -> Result<Vec<u8>> {
        validate_artifact_path(artifact_path, false)?;
        match proxy_root(&run.artifact_uri) {
            Some(root) => {
                let path = format!("{ARTIFACT_PROXY}/{}", join_encoded(&[root, artifact_path]));
                self.send(&Method::GET, &path, &[], &Body::Empty, self.config().retry)
            }
            None => self
                .backend_for(&run.artifact_uri)?
                .download(&run.artifact_uri, artifact_path),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_roots() {
        assert_eq!(
            proxy_root("mlflow-artifacts:/1/abc/artifacts"),
            Some("1/abc/artifacts")
        );
        assert_eq!(
            proxy_root("mlflow-artifacts://h:5000/1/abc/artifacts/"),
            Some("1/abc/artifacts")
        );
        assert_eq!(proxy_root("s3://b/1/abc/artifacts"), None);
        assert_eq!(proxy_root("file:///tmp/x"), None);
    }

    #[test]
    fn artifact_paths() {
        assert!(validate_artifact_path("model/MLmodel", false).is_ok());
        assert!(validate_artifact_path("", true).is_ok());
        for bad in ["", "/abs", "a//b", "a/../b", "./a", "a\\b", "a/"] {
            assert!(validate_artifact_path(bad, false).is_err(), "{bad:?}");
        }
        assert_eq!(
            join_encoded(&["1/abc/artifacts", "plots/rv vs pred+1.png"]),
            "1/abc/artifacts/plots/rv%20vs%20pred%2B1.png"
        );
        assert_eq!(join_artifact("", "f"), "f");
        assert_eq!(join_artifact("a/b/", "f"), "a/b/f");
    }
}

//! S3 and S3-compatible servers (MinIO, garage, moto) behind the [`ObjectStore`] seam.
//!
//! Built on Apache Arrow's `object_store` crate (its S3 client: SigV4, path-style requests,
//! multipart upload, ranged reads, retries with exponential back-off on throttling, 5xx and
//! connection errors). Configuration is the one AWS tools already use:
//!
//! | variable | meaning |
//! |---|---|
//! | `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN` | credentials (else the usual AWS chain: web identity, ECS, instance metadata) |
//! | `AWS_REGION` / `AWS_DEFAULT_REGION` | region (default `us-east-1`, which MinIO accepts) |
//! | `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`, `S3_ENDPOINT_URL`, `MLFLOW_S3_ENDPOINT_URL` | endpoint of MinIO or another S3-compatible server, first one set wins; `http://` is allowed for it |
//! | `AWS_VIRTUAL_HOSTED_STYLE_REQUEST` | `true` for virtual-hosted addressing; path-style is the default (MinIO needs it) |
//! | `RPS_S3_MAX_RETRIES`, `RPS_S3_RETRY_TIMEOUT_SECS` | retry budget (default 5 retries within 60 s) |
//!
//! Atomicity: S3 makes an object visible whole or not at all, for a single PUT and for a
//! completed multipart upload alike; a killed writer leaves at most an incomplete multipart upload
//! (invisible to readers; abort it with a bucket lifecycle rule), never a half-written object.

use crate::object::{ObjectStore, StoreError, check_key};
use futures::TryStreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as S3Path;
use object_store::{
    BackoffConfig, ObjectStore as _, ObjectStoreExt as _, PutPayload, RetryConfig, WriteMultipart,
};
use std::future::Future;
use std::ops::Range;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Objects at least this large go up as multipart uploads.
pub const MULTIPART_THRESHOLD: usize = 16 * 1024 * 1024;
/// Part size of multipart uploads (S3's minimum is 5 MiB for every part but the last).
pub const PART_SIZE: usize = 8 * 1024 * 1024;

/// Environment variables naming the endpoint, in order of preference.
const ENDPOINT_VARS: [&str; 4] = [
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL",
    "S3_ENDPOINT_URL",
    "MLFLOW_S3_ENDPOINT_URL",
];

/// A bucket and key prefix on an S3-compatible server.
pub struct S3Store {
    bucket: String,
    prefix: String,
    endpoint: String,
    client: Arc<AmazonS3>,
    multipart_threshold: usize,
    part_size: usize,
}

impl std::fmt::Debug for S3Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Store")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

/// The runtime S3 requests run on: one per process, started on first use, so the synchronous
/// store works from plain threads and from inside another runtime's blocking section alike.
fn runtime() -> Result<&'static tokio::runtime::Runtime, StoreError> {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    if let Some(rt) = RT.get() {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("rps-s3")
        .enable_all()
        .build()
        .map_err(|source| StoreError::Io {
            uri: "s3://".to_owned(),
            source,
        })?;
    Ok(RT.get_or_init(|| rt))
}

/// Run a future on the S3 runtime and wait for it. Never calls `block_on`, so it does not panic
/// when the caller is itself inside a Tokio runtime.
fn wait<T: Send + 'static>(fut: impl Future<Output = T> + Send + 'static) -> Result<T, StoreError> {
    let rt = runtime()?;
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    rt.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv().map_err(|_| StoreError::Remote {
        uri: "s3://".to_owned(),
        message: "the S3 request task stopped without an answer".to_owned(),
    })
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// How to reach the server. [`S3Config::from_env`] reads the variables in the module docs;
/// tests and embedders can fill it in directly.
#[derive(Debug, Clone)]
pub struct S3Config {
    /// MinIO or another S3-compatible server; `None` is AWS itself.
    pub endpoint: Option<String>,
    pub region: String,
    /// Explicit credentials; `None` uses `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` or the AWS
    /// credential chain.
    pub credentials: Option<(String, String)>,
    pub max_retries: usize,
    pub retry_timeout: Duration,
}

impl S3Config {
    /// The configuration in the environment.
    pub fn from_env() -> Result<Self, String> {
        let region = env_nonempty("AWS_REGION")
            .or_else(|| env_nonempty("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| "us-east-1".to_owned());
        let endpoint = ENDPOINT_VARS.iter().find_map(|v| env_nonempty(v));
        let max_retries = env_nonempty("RPS_S3_MAX_RETRIES")
            .map(|v| v.parse::<usize>())
            .transpose()
            .map_err(|_| "RPS_S3_MAX_RETRIES must be a whole number".to_owned())?
            .unwrap_or(5);
        let retry_timeout = env_nonempty("RPS_S3_RETRY_TIMEOUT_SECS")
            .map(|v| v.parse::<u64>())
            .transpose()
            .map_err(|_| "RPS_S3_RETRY_TIMEOUT_SECS must be a whole number of seconds".to_owned())?
            .unwrap_or(60);
        Ok(Self {
            endpoint,
            region,
            credentials: None,
            max_retries,
            retry_timeout: Duration::from_secs(retry_timeout),
        })
    }
}

impl S3Store {
    /// Open `s3://bucket/prefix` with the configuration from the environment (see the module
    /// docs). Nothing is contacted until the first request.
    pub fn from_uri(uri: &str) -> Result<Self, StoreError> {
        let config = S3Config::from_env().map_err(|reason| StoreError::Unsupported {
            uri: uri.to_owned(),
            reason,
        })?;
        Self::new(uri, &config)
    }

    /// Open `s3://bucket/prefix` with `config`.
    pub fn new(uri: &str, config: &S3Config) -> Result<Self, StoreError> {
        let unsupported = |reason: &str| StoreError::Unsupported {
            uri: uri.to_owned(),
            reason: reason.to_owned(),
        };
        let rest = uri
            .strip_prefix("s3://")
            .ok_or_else(|| unsupported("not an s3:// URI"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(unsupported("no bucket name: use s3://BUCKET/PREFIX"));
        }
        let prefix = prefix.trim_matches('/').to_owned();
        if !prefix.is_empty() {
            check_key(&prefix)
                .map_err(|_| unsupported("the key prefix has empty, '.' or '..' segments"))?;
        }

        let mut builder = match &config.credentials {
            Some((id, secret)) => AmazonS3Builder::new()
                .with_access_key_id(id)
                .with_secret_access_key(secret),
            None => AmazonS3Builder::from_env(),
        };
        builder = builder
            .with_bucket_name(bucket)
            .with_region(config.region.clone());
        if let Some(endpoint) = &config.endpoint {
            builder = builder
                .with_endpoint(endpoint.trim_end_matches('/'))
                .with_allow_http(endpoint.starts_with("http://"));
        }
        builder = builder.with_retry(RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: config.max_retries,
            retry_timeout: config.retry_timeout,
        });
        let client = builder.build().map_err(|e| StoreError::Unsupported {
            uri: uri.to_owned(),
            reason: format!("S3 configuration: {e}"),
        })?;
        Ok(Self {
            bucket: bucket.to_owned(),
            prefix,
            endpoint: config
                .endpoint
                .clone()
                .unwrap_or_else(|| format!("https://s3.{}.amazonaws.com", config.region)),
            client: Arc::new(client),
            multipart_threshold: MULTIPART_THRESHOLD,
            part_size: PART_SIZE,
        })
    }

    /// Upload objects of at least `threshold` bytes in parts of `part_size` bytes.
    #[must_use]
    pub fn with_multipart(mut self, threshold: usize, part_size: usize) -> Self {
        self.multipart_threshold = threshold;
        self.part_size = part_size.max(5 * 1024 * 1024);
        self
    }

    fn path(&self, key: &str) -> Result<S3Path, StoreError> {
        check_key(key)?;
        Ok(if self.prefix.is_empty() {
            S3Path::from(key)
        } else {
            S3Path::from(format!("{}/{key}", self.prefix))
        })
    }

    /// Turn an `object_store` error into one that says what to fix.
    fn error(&self, key: &str, e: object_store::Error) -> StoreError {
        let uri = self.uri(key);
        let text = format!("{e}");
        let detail = std::error::Error::source(&e)
            .map(|s| format!("{s:?}"))
            .unwrap_or_default();
        let all = format!("{text} {detail}");
        let remote = |message: String| StoreError::Remote {
            uri: uri.clone(),
            message,
        };
        if all.contains("NoSuchBucket") {
            return remote(format!(
                "bucket {:?} does not exist at {} (create it, or fix the bucket in the URI)",
                self.bucket, self.endpoint
            ));
        }
        match e {
            object_store::Error::NotFound { .. } => StoreError::NotFound { uri },
            object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. } => remote(format!(
                "access denied by {}: check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN) and the bucket policy ({text})",
                self.endpoint
            )),
            _ if [
                "InvalidAccessKeyId",
                "SignatureDoesNotMatch",
                "AccessDenied",
            ]
            .iter()
            .any(|c| all.contains(c)) =>
            {
                remote(format!(
                    "the server rejected the credentials: check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY ({text})"
                ))
            }
            _ if [
                "error sending request",
                "onnection refused",
                "dns error",
                "timed out",
            ]
            .iter()
            .any(|c| all.contains(c)) =>
            {
                remote(format!(
                    "cannot reach the S3 endpoint {} after retries: check AWS_ENDPOINT_URL and that the server is up ({text})",
                    self.endpoint
                ))
            }
            _ => remote(text),
        }
    }

    fn strip_root<'a>(&self, location: &'a str) -> &'a str {
        if self.prefix.is_empty() {
            location
        } else {
            location
                .strip_prefix(self.prefix.as_str())
                .map_or(location, |rest| rest.trim_start_matches('/'))
        }
    }
}

impl ObjectStore for S3Store {
    fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        let path = self.path(key)?;
        let client = Arc::clone(&self.client);
        wait(async move {
            let result = client.get(&path).await?;
            result.bytes().await
        })?
        .map(|b| b.to_vec())
        .map_err(|e| self.error(key, e))
    }

    fn get_range(&self, key: &str, range: Range<u64>) -> Result<Vec<u8>, StoreError> {
        let path = self.path(key)?;
        let client = Arc::clone(&self.client);
        wait(async move { client.get_range(&path, range).await })?
            .map(|b| b.to_vec())
            .map_err(|e| self.error(key, e))
    }

    fn size(&self, key: &str) -> Result<u64, StoreError> {
        let path = self.path(key)?;
        let client = Arc::clone(&self.client);
        wait(async move { client.head(&path).await })?
            .map(|meta| meta.size)
            .map_err(|e| self.error(key, e))
    }

    fn exists(&self, key: &str) -> Result<bool, StoreError> {
        match self.size(key) {
            Ok(_) => Ok(true),
            Err(StoreError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let path = self.path(key)?;
        let client = Arc::clone(&self.client);
        if bytes.len() < self.multipart_threshold {
            let payload = PutPayload::from(bytes.to_vec());
            return wait(async move { client.put(&path, payload).await.map(|_| ()) })?
                .map_err(|e| self.error(key, e));
        }
        let data = bytes::Bytes::copy_from_slice(bytes);
        let part_size = self.part_size;
        wait(async move {
            let upload = client.put_multipart(&path).await?;
            let mut writer = WriteMultipart::new_with_chunk_size(upload, part_size);
            for chunk in data.chunks(part_size) {
                if let Err(e) = writer.wait_for_capacity(4).await {
                    let _ = writer.abort().await;
                    return Err(e);
                }
                writer.write(chunk);
            }
            // On failure `finish` leaves nothing visible; abort frees the uploaded parts.
            writer.finish().await.map(|_| ())
        })?
        .map_err(|e| self.error(key, e))
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        // S3 listings match whole path segments; list the folder and filter by string prefix.
        let dir = prefix.rfind('/').map_or("", |i| &prefix[..i]);
        let root = match (self.prefix.is_empty(), dir.is_empty()) {
            (true, true) => None,
            (true, false) => Some(S3Path::from(dir)),
            (false, true) => Some(S3Path::from(self.prefix.as_str())),
            (false, false) => Some(S3Path::from(format!("{}/{dir}", self.prefix))),
        };
        let client = Arc::clone(&self.client);
        let metas = wait(async move { client.list(root.as_ref()).try_collect::<Vec<_>>().await })?
            .map_err(|e| self.error(prefix, e))?;
        let mut keys: Vec<String> = metas
            .iter()
            .map(|m| self.strip_root(m.location.as_ref()).to_owned())
            .filter(|k| k.starts_with(prefix))
            .collect();
        keys.sort();
        Ok(keys)
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path(key)?;
        let client = Arc::clone(&self.client);
        match wait(async move { client.delete(&path).await })? {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error(key, e)),
        }
    }

    fn uri(&self, key: &str) -> String {
        match (self.prefix.is_empty(), key.is_empty()) {
            (true, _) => format!("s3://{}/{key}", self.bucket),
            (false, true) => format!("s3://{}/{}", self.bucket, self.prefix),
            (false, false) => format!("s3://{}/{}/{key}", self.bucket, self.prefix),
        }
    }
}

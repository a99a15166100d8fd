//! The S3 backend against a real S3-compatible server on loopback (moto, started by
//! `tests/servers.sh`; `make test` does it). Ignored by plain `cargo test`.

#![allow(clippy::unwrap_used)]

use rps_store::ObjectStore;
use rps_store::StoreError;
use rps_store::s3::{S3Config, S3Store};
use std::time::Duration;

fn config() -> S3Config {
    S3Config {
        endpoint: Some(
            std::env::var("RPS_TEST_S3_ENDPOINT")
                .expect("RPS_TEST_S3_ENDPOINT (start crates/rps-store/tests/servers.sh)"),
        ),
        region: "us-east-1".to_owned(),
        credentials: Some(("testing".to_owned(), "testing".to_owned())),
        max_retries: 2,
        retry_timeout: Duration::from_secs(10),
    }
}

/// A fresh prefix per test so tests never see each other's objects.
fn store(test: &str) -> S3Store {
    let bucket = std::env::var("RPS_TEST_S3_BUCKET").unwrap_or_else(|_| "rps-test".to_owned());
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    S3Store::new(
        &format!("s3://{bucket}/store-tests/{test}-{nonce}"),
        &config(),
    )
    .unwrap()
}

#[test]
#[ignore = "needs the S3 server from crates/rps-store/tests/servers.sh"]
fn round_trip_list_range_delete() {
    let s = store("round-trip");
    s.put("a/b.txt", b"one").unwrap();
    s.put("a/b.txt", b"two").unwrap();
    s.put("a/bc.txt", b"x").unwrap();
    s.put("c.txt", b"0123456789").unwrap();
    assert_eq!(s.get("a/b.txt").unwrap(), b"two");
    assert_eq!(s.list("").unwrap(), vec!["a/b.txt", "a/bc.txt", "c.txt"]);
    assert_eq!(s.list("a/").unwrap(), vec!["a/b.txt", "a/bc.txt"]);
    // String prefixes, not only whole folders, as with the local store.
    assert_eq!(s.list("a/b.").unwrap(), vec!["a/b.txt"]);
    assert_eq!(s.get_range("c.txt", 2..5).unwrap(), b"234");
    assert_eq!(s.size("c.txt").unwrap(), 10);
    assert!(s.exists("c.txt").unwrap());
    assert!(!s.exists("nope").unwrap());
    assert!(matches!(s.get("nope"), Err(StoreError::NotFound { .. })));
    s.delete("a/b.txt").unwrap();
    s.delete("a/b.txt").unwrap();
    assert_eq!(s.list("a/").unwrap(), vec!["a/bc.txt"]);
    assert!(s.uri("c.txt").starts_with("s3://"));
    assert!(matches!(
        s.put("../x", b""),
        Err(StoreError::InvalidKey { .. })
    ));
}

#[test]
#[ignore = "needs the S3 server from crates/rps-store/tests/servers.sh"]
fn large_objects_go_up_in_parts() {
    let s = store("multipart").with_multipart(5 * 1024 * 1024, 5 * 1024 * 1024);
    let big: Vec<u8> = (0..12 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    s.put("big.bin", &big).unwrap();
    assert_eq!(s.size("big.bin").unwrap(), big.len() as u64);
    assert_eq!(s.get("big.bin").unwrap(), big);
    let tail = s
        .get_range("big.bin", 11 * 1024 * 1024..11 * 1024 * 1024 + 7)
        .unwrap();
    assert_eq!(tail, &big[11 * 1024 * 1024..11 * 1024 * 1024 + 7]);
    assert_eq!(s.list("").unwrap(), vec!["big.bin"]);
}

#[test]
#[ignore = "needs the S3 server from crates/rps-store/tests/servers.sh"]
fn missing_bucket_is_named() {
    let s = S3Store::new("s3://no-such-bucket-rps/x", &config()).unwrap();
    let err = s.put("k", b"v").unwrap_err().to_string();
    assert!(
        err.contains("no-such-bucket-rps") && err.contains("does not exist"),
        "{err}"
    );
}

#[test]
fn unreachable_endpoint_names_the_variable() {
    // A port nothing listens on: bind, read the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = S3Config {
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        region: "us-east-1".to_owned(),
        credentials: Some(("a".to_owned(), "b".to_owned())),
        max_retries: 1,
        retry_timeout: Duration::from_secs(2),
    };
    let s = S3Store::new("s3://bucket/prefix", &cfg).unwrap();
    let err = s.get("k").unwrap_err();
    assert!(matches!(err, StoreError::Remote { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("AWS_ENDPOINT_URL") && msg.contains(&port.to_string()),
        "{msg}"
    );
}

#[test]
fn bad_uris_are_refused() {
    for uri in ["s3://", "s3:///prefix", "s3://b/a//b", "s3://b/../x"] {
        assert!(
            matches!(
                S3Store::new(uri, &config_offline()),
                Err(StoreError::Unsupported { .. })
            ),
            "{uri}"
        );
    }
}

fn config_offline() -> S3Config {
    S3Config {
        endpoint: Some("http://127.0.0.1:9".to_owned()),
        region: "us-east-1".to_owned(),
        credentials: Some(("a".to_owned(), "b".to_owned())),
        max_retries: 0,
        retry_timeout: Duration::from_secs(1),
    }
}

/// A writer killed mid-upload leaves a multipart upload that was never completed: readers see no
/// object at all, never a prefix of one.
#[test]
#[ignore = "needs the S3 server from crates/rps-store/tests/servers.sh"]
fn an_unfinished_upload_is_invisible() {
    use object_store::{MultipartUpload as _, ObjectStoreExt as _};
    let cfg = config();
    let bucket = std::env::var("RPS_TEST_S3_BUCKET").unwrap_or_else(|_| "rps-test".to_owned());
    let s = store("killed");
    let prefix = s
        .uri("")
        .trim_start_matches(&format!("s3://{bucket}/"))
        .to_owned();
    let raw = object_store::aws::AmazonS3Builder::new()
        .with_bucket_name(&bucket)
        .with_endpoint(cfg.endpoint.clone().unwrap())
        .with_allow_http(true)
        .with_region("us-east-1")
        .with_access_key_id("testing")
        .with_secret_access_key("testing")
        .build()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let path = object_store::path::Path::from(format!("{prefix}/data.parquet"));
        let mut upload = raw.put_multipart(&path).await.unwrap();
        upload
            .put_part(vec![7u8; 5 * 1024 * 1024].into())
            .await
            .unwrap();
        // The writer dies here: no complete, no abort.
        drop(upload);
    });
    assert_eq!(s.list("").unwrap(), Vec::<String>::new());
    assert!(matches!(
        s.get("data.parquet"),
        Err(StoreError::NotFound { .. })
    ));
}

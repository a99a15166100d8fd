//! `runs/log-batch` request planning: key/value validation and chunking under MLflow's limits.
//! Pure, so it is tested without a server.

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;

use crate::error::{MlflowError, Result};
use crate::types::Metric;

/// At most this many metrics in one `log-batch`.
pub const MAX_METRICS_PER_BATCH: usize = 1000;
/// At most this many params in one `log-batch`.
pub const MAX_PARAMS_PER_BATCH: usize = 100;
/// At most this many tags in one `log-batch`.
pub const MAX_TAGS_PER_BATCH: usize = 100;
/// At most this many metrics + params + tags in one `log-batch`.
pub const MAX_ENTITIES_PER_BATCH: usize = 1000;
/// MLflow's cap on a `log-batch` body (`MAX_BATCH_LOG_REQUEST_SIZE`).
pub const MAX_BATCH_BYTES: usize = 1_000_000;
/// Key length limit (metrics, params, tags).
pub const MAX_KEY_LENGTH: usize = 250;
/// Param value length limit.
pub const MAX_PARAM_VALUE_LENGTH: usize = 6000;
/// Tag value length limit. MLflow 3 accepts 8000, MLflow 2.x (DagHub) 5000: we keep to the
/// lower one so a run logs the same everywhere.
pub const MAX_TAG_VALUE_LENGTH: usize = 5000;

/// Our own body budget: the cap less a margin for serialisation differences.
const BODY_BUDGET: usize = MAX_BATCH_BYTES - 4096;

/// Checks a metric/param/tag key like the MLflow server does: 1–250 characters from
/// `[/\w.\- ]`, and not a path that normalises to something else (`a//b`, `./a`, `a/`, `/a`, `..`).
///
/// # Errors
/// [`MlflowError::InvalidKey`] naming the key and the rule it breaks.
pub fn validate_key(kind: &'static str, key: &str) -> Result<()> {
    let invalid = |reason: &str| MlflowError::InvalidKey {
        kind,
        key: key.to_owned(),
        reason: reason.to_owned(),
    };
    if key.is_empty() {
        return Err(invalid("keys must not be empty"));
    }
    let len = key.chars().count();
    if len > MAX_KEY_LENGTH {
        return Err(invalid(&format!(
            "{len} characters, MLflow accepts at most {MAX_KEY_LENGTH} (nothing is truncated)"
        )));
    }
    if let Some(c) = key
        .chars()
        .find(|c| !(c.is_alphanumeric() || matches!(c, '_' | '/' | '.' | '-' | ' ')))
    {
        return Err(invalid(&format!(
            "character {c:?} is not allowed; keys may contain only alphanumerics, underscores, \
             periods, dashes, spaces and slashes"
        )));
    }
    if key
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return Err(invalid(
            "keys are treated as paths and must not contain empty, '.' or '..' segments \
             (no leading, trailing or double slashes)",
        ));
    }
    Ok(())
}

fn validate_value(kind: &'static str, key: &str, value: &str, max: usize) -> Result<()> {
    let len = value.chars().count();
    if len > max {
        return Err(MlflowError::ValueTooLong {
            kind,
            key: key.to_owned(),
            len,
            max,
        });
    }
    Ok(())
}

/// A `{key, value}` pair on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyValue<'a> {
    /// Key.
    pub key: &'a str,
    /// Value.
    pub value: &'a str,
}

/// One `runs/log-batch` request body.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogBatchRequest<'a> {
    /// The run.
    pub run_id: &'a str,
    /// Metrics of this chunk.
    pub metrics: Vec<&'a Metric>,
    /// Params of this chunk.
    pub params: Vec<KeyValue<'a>>,
    /// Tags of this chunk.
    pub tags: Vec<KeyValue<'a>>,
}

impl LogBatchRequest<'_> {
    fn entities(&self) -> usize {
        self.metrics.len() + self.params.len() + self.tags.len()
    }
}

/// Validates everything, then splits it into `log-batch` bodies that each respect every MLflow
/// limit (≤ 1000 metrics, ≤ 100 params, ≤ 100 tags, ≤ 1000 entities, < 1 MB). Params go
/// first, then tags, then metrics, each in the given order; nothing is dropped, except exact
/// duplicate params (same key and value) and repeated tags (the last value wins).
///
/// # Errors
/// [`MlflowError::InvalidKey`], [`MlflowError::ValueTooLong`], or
/// [`MlflowError::ParamConflict`] when one key is given two different values.
pub fn plan_log_batch<'a>(
    run_id: &'a str,
    metrics: &'a [Metric],
    params: &'a [(String, String)],
    tags: &'a [(String, String)],
) -> Result<Vec<LogBatchRequest<'a>>> {
    // Validate each distinct metric key once.
    let mut seen = HashSet::new();
    for m in metrics {
        if seen.insert(m.key.as_str()) {
            validate_key("metric", &m.key)?;
        }
    }
    let mut param_values: BTreeMap<&str, &str> = BTreeMap::new();
    let mut unique_params = Vec::with_capacity(params.len());
    for (k, v) in params {
        validate_key("param", k)?;
        validate_value("param", k, v, MAX_PARAM_VALUE_LENGTH)?;
        match param_values.insert(k, v) {
            None => unique_params.push(KeyValue { key: k, value: v }),
            Some(old) if old == v => {}
            Some(old) => {
                return Err(MlflowError::ParamConflict {
                    run_id: run_id.to_owned(),
                    message: format!("param {k:?} given twice, as {old:?} and {v:?}"),
                });
            }
        }
    }
    let mut tag_values: BTreeMap<&str, &str> = BTreeMap::new();
    let mut tag_order = Vec::with_capacity(tags.len());
    for (k, v) in tags {
        validate_key("tag", k)?;
        validate_value("tag", k, v, MAX_TAG_VALUE_LENGTH)?;
        if tag_values.insert(k, v).is_none() {
            tag_order.push(k.as_str());
        }
    }
    let unique_tags = tag_order
        .into_iter()
        .filter_map(|k| tag_values.get(k).map(|v| KeyValue { key: k, value: v }));

    let empty = LogBatchRequest {
        run_id,
        metrics: Vec::new(),
        params: Vec::new(),
        tags: Vec::new(),
    };
    let envelope = serde_json::to_vec(&empty)?.len();
    let mut out = Vec::new();
    let mut cur = empty.clone();
    let mut size = envelope;

    enum Entity<'a> {
        Param(KeyValue<'a>),
        Tag(KeyValue<'a>),
        Metric(&'a Metric),
    }
    let all = unique_params
        .into_iter()
        .map(Entity::Param)
        .chain(unique_tags.map(Entity::Tag))
        .chain(metrics.iter().map(Entity::Metric));
    for entity in all {
        let (bytes, full) = match &entity {
            Entity::Param(kv) => (
                serde_json::to_vec(kv)?.len(),
                cur.params.len() >= MAX_PARAMS_PER_BATCH,
            ),
            Entity::Tag(kv) => (
                serde_json::to_vec(kv)?.len(),
                cur.tags.len() >= MAX_TAGS_PER_BATCH,
            ),
            Entity::Metric(m) => (
                serde_json::to_vec(m)?.len(),
                cur.metrics.len() >= MAX_METRICS_PER_BATCH,
            ),
        };
        let cost = bytes + 1; // the separating comma
        if full || cur.entities() >= MAX_ENTITIES_PER_BATCH || size + cost > BODY_BUDGET {
            out.push(std::mem::replace(&mut cur, empty.clone()));
            size = envelope;
        }
        size += cost;
        match entity {
            Entity::Param(kv) => cur.params.push(kv),
            Entity::Tag(kv) => cur.tags.push(kv),
            Entity::Metric(m) => cur.metrics.push(m),
        }
    }
    if cur.entities() > 0 {
        out.push(cur);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(n: usize) -> Vec<Metric> {
        (0..n)
            .map(|i| Metric {
                key: format!("m{}", i % 7),
                value: i as f64,
                timestamp: 1_700_000_000_000,
                step: i64::try_from(i).unwrap_or(0),
            })
            .collect()
    }

    fn kv(prefix: &str, n: usize) -> Vec<(String, String)> {
        (0..n)
            .map(|i| (format!("{prefix}{i}"), format!("v{i}")))
            .collect()
    }

    fn check_limits(batches: &[LogBatchRequest<'_>]) -> Result<()> {
        for b in batches {
            assert!(b.metrics.len() <= MAX_METRICS_PER_BATCH);
            assert!(b.params.len() <= MAX_PARAMS_PER_BATCH);
            assert!(b.tags.len() <= MAX_TAGS_PER_BATCH);
            assert!(b.entities() <= MAX_ENTITIES_PER_BATCH);
            assert!(b.entities() > 0);
            let body = serde_json::to_vec(b)?;
            assert!(body.len() < MAX_BATCH_BYTES, "{} bytes", body.len());
        }
        Ok(())
    }

    #[test]
    fn chunks_2500_metrics_150_params_120_tags() -> Result<()> {
        let ms = metrics(2500);
        let ps = kv("p", 150);
        let ts = kv("t", 120);
        let batches = plan_log_batch("run", &ms, &ps, &ts)?;
        check_limits(&batches)?;
        // 150 params need 2 requests, 120 tags 2 more slots, 2500 metrics 3 more: greedy packing
        // gives [100p], [50p+100t], [20t+980m], [1000m], [520m].
        let shape: Vec<_> = batches
            .iter()
            .map(|b| (b.params.len(), b.tags.len(), b.metrics.len()))
            .collect();
        assert_eq!(
            shape,
            vec![
                (100, 0, 0),
                (50, 100, 0),
                (0, 20, 980),
                (0, 0, 1000),
                (0, 0, 520)
            ]
        );
        // Nothing lost, order kept.
        let got_m: Vec<&Metric> = batches.iter().flat_map(|b| b.metrics.clone()).collect();
        assert_eq!(got_m, ms.iter().collect::<Vec<_>>());
        let got_p: Vec<_> = batches
            .iter()
            .flat_map(|b| b.params.iter().map(|kv| (kv.key, kv.value)))
            .collect();
        assert_eq!(
            got_p,
            ps.iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect::<Vec<_>>()
        );
        let n_tags: usize = batches.iter().map(|b| b.tags.len()).sum();
        assert_eq!(n_tags, 120);
        Ok(())
    }

    #[test]
    fn big_values_split_by_body_size() -> Result<()> {
        // 100 params of 6000 chars = 600 kB, 100 tags of 5000 = 500 kB: must not share a body.
        let ps: Vec<_> = (0..100)
            .map(|i| (format!("p{i}"), "x".repeat(MAX_PARAM_VALUE_LENGTH)))
            .collect();
        let ts: Vec<_> = (0..100)
            .map(|i| (format!("t{i}"), "y".repeat(MAX_TAG_VALUE_LENGTH)))
            .collect();
        let batches = plan_log_batch("run", &[], &ps, &ts)?;
        check_limits(&batches)?;
        assert!(batches.len() >= 2);
        let total: usize = batches.iter().map(LogBatchRequest::entities).sum();
        assert_eq!(total, 200);
        Ok(())
    }

    #[test]
    fn empty_input_sends_nothing() -> Result<()> {
        assert!(plan_log_batch("run", &[], &[], &[])?.is_empty());
        Ok(())
    }

    #[test]
    fn duplicate_params_dedup_conflicts_error() -> Result<()> {
        let ps = vec![
            ("a".to_owned(), "1".to_owned()),
            ("a".to_owned(), "1".to_owned()),
        ];
        let b = plan_log_batch("run", &[], &ps, &[])?;
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].params.len(), 1);
        let ps = vec![
            ("a".to_owned(), "1".to_owned()),
            ("a".to_owned(), "2".to_owned()),
        ];
        let e = plan_log_batch("run", &[], &ps, &[]);
        assert!(
            matches!(e, Err(MlflowError::ParamConflict { message, .. }) if message.contains("\"a\""))
        );
        let ts = vec![
            ("t".to_owned(), "1".to_owned()),
            ("t".to_owned(), "2".to_owned()),
        ];
        let b = plan_log_batch("run", &[], &[], &ts)?;
        assert_eq!(
            b[0].tags,
            vec![KeyValue {
                key: "t",
                value: "2"
            }]
        );
        Ok(())
    }

    #[test]
    fn key_validation() {
        for good in [
            "rmse",
            "val/rmse",
            "a.b-c d_e",
            "fold 3/qlike",
            "mlflow.runName",
            "é",
        ] {
            assert!(validate_key("metric", good).is_ok(), "{good}");
        }
        for bad in [
            "", "a:b", "a\tb", "x=1", "/a", "a/", "a//b", "./a", "a/../b", "..", ".", "a$",
        ] {
            let e = validate_key("metric", bad);
            assert!(
                matches!(&e, Err(MlflowError::InvalidKey { key, kind: "metric", .. }) if key == bad),
                "{bad:?} → {e:?}"
            );
        }
        let long = "k".repeat(251);
        let e = validate_key("param", &long);
        assert!(matches!(e, Err(MlflowError::InvalidKey { reason, .. }) if reason.contains("251")));
        assert!(validate_key("param", &"k".repeat(250)).is_ok());
    }

    #[test]
    fn values_are_never_truncated() {
        let ps = vec![("p".to_owned(), "v".repeat(MAX_PARAM_VALUE_LENGTH + 1))];
        let e = plan_log_batch("run", &[], &ps, &[]);
        assert!(
            matches!(e, Err(MlflowError::ValueTooLong { key, len: 6001, max: 6000, .. }) if key == "p")
        );
        let ts = vec![("bad key!".to_owned(), "v".to_owned())];
        let e = plan_log_batch("run", &[], &[], &ts);
        assert!(matches!(
            e,
            Err(MlflowError::InvalidKey { kind: "tag", .. })
        ));
        let ms = vec![Metric::new("bad:key", 1.0, 0)];
        let e = plan_log_batch("run", &ms, &[], &[]);
        assert!(
            matches!(e, Err(MlflowError::InvalidKey { kind: "metric", key, .. }) if key == "bad:key")
        );
    }
}

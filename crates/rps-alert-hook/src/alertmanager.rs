//! Alertmanager's webhook payload (version 4) and what this receiver takes from it.
//!
//! Only the fields used are typed; everything else Alertmanager sends (groupKey, externalURL,
//! generatorURL, annotations, ...) is ignored, so a newer Alertmanager adding fields is fine.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// The label that routes an alert to a retraining run, and its value.
pub const ACTION_LABEL: &str = "action";
pub const ACTION_RETRAIN: &str = "retrain";

/// One webhook notification: a group of alerts.
#[derive(Debug, Clone, Deserialize)]
pub struct Notification {
    pub version: String,
    #[serde(default)]
    pub status: Option<Status>,
    pub alerts: Vec<Alert>,
}

/// An alert's (or a group's) state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Firing,
    Resolved,
}

/// One alert of a notification.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    pub status: Status,
    pub labels: BTreeMap<String, String>,
    pub starts_at: DateTime<Utc>,
    /// Alertmanager's hash of the labels; computed here when a sender leaves it out.
    #[serde(default)]
    pub fingerprint: Option<String>,
}

/// Why a notification was refused (answered 4xx: resending it would not help).
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("the body is not an Alertmanager webhook payload: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("webhook payload version {0:?} is not supported (expected \"4\")")]
    Version(String),
}

impl Notification {
    /// Parse and check a webhook body.
    pub fn parse(body: &[u8]) -> Result<Self, PayloadError> {
        let n: Self = serde_json::from_slice(body)?;
        if n.version != "4" {
            return Err(PayloadError::Version(n.version));
        }
        Ok(n)
    }
}

impl Alert {
    pub fn name(&self) -> &str {
        self.labels.get("alertname").map_or("", String::as_str)
    }

    pub fn symbol(&self) -> Option<&str> {
        self.labels.get("symbol").map(String::as_str)
    }

    /// A firing alert that asks for a retraining run.
    pub fn wants_retrain(&self) -> bool {
        self.status == Status::Firing
            && self.labels.get(ACTION_LABEL).map(String::as_str) == Some(ACTION_RETRAIN)
    }

    /// Alertmanager's fingerprint when it is a plain identifier, else a hash of the labels.
    fn fingerprint(&self) -> String {
        match &self.fingerprint {
            Some(f)
                if !f.is_empty()
                    && f.len() <= 64
                    && f.bytes().all(|b| b.is_ascii_alphanumeric()) =>
            {
                f.clone()
            }
            _ => {
                let mut h = Sha256::new();
                for (k, v) in &self.labels {
                    h.update(k.as_bytes());
                    h.update([0]);
                    h.update(v.as_bytes());
                    h.update([0]);
                }
                h.finalize()[..8]
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect()
            }
        }
    }

    /// The DAG run id of this alert: the same for every repeat notification of one firing (same
    /// labels, same `startsAt`), so Airflow refuses a second run with 409; a new firing (new
    /// `startsAt`) gets a new id. Only characters Airflow accepts in run ids.
    pub fn dag_run_id(&self) -> String {
        let name: String = self
            .name()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(64)
            .collect();
        format!(
            "alert__{name}__{}__{}",
            self.fingerprint(),
            self.starts_at.format("%Y%m%dT%H%M%S%.fZ")
        )
    }

    /// The DAG run's `conf`: what fired, for whom, since when.
    pub fn conf(&self) -> serde_json::Value {
        serde_json::json!({
            "trigger": "alert",
            "alertname": self.name(),
            "symbol": self.symbol(),
            "starts_at": self.starts_at.to_rfc3339(),
            "fingerprint": self.fingerprint(),
            "labels": self.labels,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn payload(version: &str, status: &str, starts: &str, fp: &str) -> String {
        format!(
            r#"{{"version":"{version}","status":"{status}","receiver":"retrain","groupKey":"{{}}:{{}}",
            "alerts":[{{"status":"{status}","labels":{{"alertname":"RpsChampionWorseThanHarRv","symbol":"BTC-USDT","action":"retrain","severity":"warning"}},
            "annotations":{{"summary":"x"}},"startsAt":"{starts}","endsAt":"0001-01-01T00:00:00Z","generatorURL":"http://p","fingerprint":"{fp}"}}],
            "groupLabels":{{}},"commonLabels":{{}},"commonAnnotations":{{}},"externalURL":"http://am","truncatedAlerts":0}}"#
        )
    }

    #[test]
    fn repeats_share_a_run_id_and_new_firings_do_not() {
        let a = Notification::parse(
            payload(
                "4",
                "firing",
                "2026-12-06T02:15:00.123456789Z",
                "3f2a9c0d11e4b5a6",
            )
            .as_bytes(),
        )
        .unwrap();
        let b = Notification::parse(
            payload(
                "4",
                "firing",
                "2026-12-06T02:15:00.123456789Z",
                "3f2a9c0d11e4b5a6",
            )
            .as_bytes(),
        )
        .unwrap();
        let c = Notification::parse(
            payload("4", "firing", "2026-12-07T09:00:00Z", "3f2a9c0d11e4b5a6").as_bytes(),
        )
        .unwrap();
        let id = a.alerts[0].dag_run_id();
        assert_eq!(
            id,
            "alert__RpsChampionWorseThanHarRv__3f2a9c0d11e4b5a6__20261206T021500.123456789Z"
        );
        assert_eq!(id, b.alerts[0].dag_run_id());
        assert_ne!(id, c.alerts[0].dag_run_id());
        assert!(a.alerts[0].wants_retrain());
        let conf = a.alerts[0].conf();
        assert_eq!(conf["alertname"], "RpsChampionWorseThanHarRv");
        assert_eq!(conf["symbol"], "BTC-USDT");
        assert_eq!(conf["starts_at"], "2026-12-06T02:15:00.123456789+00:00");
    }

    #[test]
    fn an_odd_fingerprint_is_replaced_by_a_label_hash() {
        let n = Notification::parse(
            payload("4", "firing", "2026-12-06T02:15:00Z", "../x y").as_bytes(),
        )
        .unwrap();
        let id = n.alerts[0].dag_run_id();
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)),
            "{id}"
        );
        assert!(!id.contains("x y"));
    }

    #[test]
    fn resolved_and_unlabelled_alerts_do_not_retrain() {
        let n =
            Notification::parse(payload("4", "resolved", "2026-12-06T02:15:00Z", "ab").as_bytes())
                .unwrap();
        assert!(!n.alerts[0].wants_retrain());
        let body = payload("4", "firing", "2026-12-06T02:15:00Z", "ab")
            .replace(r#""action":"retrain","#, "");
        let n = Notification::parse(body.as_bytes()).unwrap();
        assert!(!n.alerts[0].wants_retrain());
    }

    #[test]
    fn bad_payloads_are_refused() {
        assert!(
            matches!(Notification::parse(payload("3", "firing", "2026-12-06T02:15:00Z", "ab").as_bytes()), Err(PayloadError::Version(v)) if v == "3")
        );
        assert!(matches!(
            Notification::parse(b"{\"version\":\"4\"}"),
            Err(PayloadError::Malformed(_))
        ));
        assert!(matches!(
            Notification::parse(b"not json"),
            Err(PayloadError::Malformed(_))
        ));
        let bad_time = payload("4", "firing", "yesterday", "ab");
        assert!(matches!(
            Notification::parse(bad_time.as_bytes()),
            Err(PayloadError::Malformed(_))
        ));
    }
}

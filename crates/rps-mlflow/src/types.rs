//! Plain data exchanged with MLflow.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// One metric point. `timestamp` is Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    /// Metric name (≤ 250 chars, `^[/\w.\- ]*$`).
    pub key: String,
    /// Value; NaN and ±∞ travel as MLflow's `"NaN"`, `"Infinity"`, `"-Infinity"`.
    #[serde(serialize_with = "ser_f64", deserialize_with = "de_f64")]
    pub value: f64,
    /// Unix milliseconds.
    #[serde(deserialize_with = "de_i64")]
    pub timestamp: i64,
    /// Step (e.g. boosting round, fold, epoch).
    #[serde(default, deserialize_with = "de_i64")]
    pub step: i64,
}

impl Metric {
    /// A point stamped now.
    #[must_use]
    pub fn new(key: impl Into<String>, value: f64, step: i64) -> Self {
        Self {
            key: key.into(),
            value,
            timestamp: now_millis(),
            step,
        }
    }
}

/// Unix time in milliseconds.
#[must_use]
pub fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// MLflow's run status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum RunStatus {
    /// Running.
    Running,
    /// Scheduled (set by some launchers; reads only).
    Scheduled,
    /// Finished successfully.
    Finished,
    /// Failed.
    Failed,
    /// Killed.
    Killed,
}

impl RunStatus {
    /// The wire name (`FINISHED`, …).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "RUNNING",
            Self::Scheduled => "SCHEDULED",
            Self::Finished => "FINISHED",
            Self::Failed => "FAILED",
            Self::Killed => "KILLED",
        }
    }

    /// True for `FINISHED`, `FAILED` and `KILLED`.
    #[must_use]
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Finished | Self::Failed | Self::Killed)
    }
}

/// The identity of a run and where its artifacts live.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RunInfo {
    /// Run id (32 hex chars on MLflow servers).
    pub run_id: String,
    /// The experiment it belongs to.
    pub experiment_id: String,
    /// e.g. `mlflow-artifacts:/1/<run_id>/artifacts` (proxied) or `s3://…`.
    pub artifact_uri: String,
    /// Display name.
    #[serde(default)]
    pub run_name: Option<String>,
    /// Status, when the server sent it.
    #[serde(default)]
    pub status: Option<RunStatus>,
    /// Unix ms.
    #[serde(default, deserialize_with = "de_opt_i64")]
    pub start_time: Option<i64>,
    /// Unix ms, for ended runs.
    #[serde(default, deserialize_with = "de_opt_i64")]
    pub end_time: Option<i64>,
    /// `active` or `deleted`.
    #[serde(default)]
    pub lifecycle_stage: Option<String>,
}

/// A run with its data (latest metric values, params, tags).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Run {
    /// Identity and status.
    pub info: RunInfo,
    /// Latest value of each metric (use `get_metric_history` for all points).
    pub metrics: BTreeMap<String, Metric>,
    /// Params.
    pub params: BTreeMap<String, String>,
    /// Tags (including MLflow's `mlflow.*` system tags).
    pub tags: BTreeMap<String, String>,
}

/// One entry of an artifact listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileInfo {
    /// Path relative to the run's artifact root.
    pub path: String,
    /// True for directories.
    #[serde(default)]
    pub is_dir: bool,
    /// Size in bytes (files only).
    #[serde(default, deserialize_with = "de_opt_i64")]
    pub file_size: Option<i64>,
}

/// A registered model version.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ModelVersion {
    /// Registered model name.
    pub name: String,
    /// Version number as a string (`"1"`, `"2"`, …).
    pub version: String,
    /// Model source URI (`runs:/<run>/model`, `mlflow-artifacts:/…`, …).
    #[serde(default)]
    pub source: Option<String>,
    /// The run that produced it.
    #[serde(default)]
    pub run_id: Option<String>,
    /// `READY`, `PENDING_REGISTRATION`, `FAILED_REGISTRATION`.
    #[serde(default)]
    pub status: Option<String>,
    /// Aliases pointing at this version.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Unix ms.
    #[serde(default, deserialize_with = "de_opt_i64")]
    pub creation_timestamp: Option<i64>,
    /// Tags of the version (`model-versions/set-tag`).
    #[serde(default)]
    pub tags: Vec<ModelVersionTag>,
}

impl ModelVersion {
    /// The value of tag `key`, if set.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|t| t.key == key)
            .map(|t| t.value.as_str())
    }
}

/// One tag of a model version.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ModelVersionTag {
    pub key: String,
    #[serde(default)]
    pub value: String,
}

/// An experiment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Experiment {
    /// Id (a string on the wire).
    pub experiment_id: String,
    /// Name.
    pub name: String,
    /// Root of the runs' artifact URIs.
    #[serde(default)]
    pub artifact_location: Option<String>,
    /// `active` or `deleted`.
    #[serde(default)]
    pub lifecycle_stage: Option<String>,
}

/// What [`crate::MlflowClient::log_model`] achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogModelOutcome {
    /// The server recorded the model on the run (tag `mlflow.log-model.history`).
    Recorded,
    /// The server answered HTTP 500, as old servers (DagHub's MLflow 2.7) do for newer model
    /// JSON; a warning was logged and the artifacts are still usable.
    SkippedByServer,
}

// ----- lenient number (de)serialisation: MLflow sends int64 sometimes as strings, and
// non-finite doubles as "NaN" / "Infinity" / "-Infinity" -----

pub(crate) fn ser_f64<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    if v.is_nan() {
        s.serialize_str("NaN")
    } else if v.is_infinite() {
        s.serialize_str(if *v > 0.0 { "Infinity" } else { "-Infinity" })
    } else {
        s.serialize_f64(*v)
    }
}

fn parse_f64_str(v: &str) -> Option<f64> {
    match v {
        "NaN" | "nan" => Some(f64::NAN),
        "Infinity" | "inf" => Some(f64::INFINITY),
        "-Infinity" | "-inf" => Some(f64::NEG_INFINITY),
        other => other.parse().ok(),
    }
}

struct NumVisitor;

impl Visitor<'_> for NumVisitor {
    type Value = NumOrStr;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number or a numeric string")
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<NumOrStr, E> {
        Ok(NumOrStr::I(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<NumOrStr, E> {
        i64::try_from(v)
            .map(NumOrStr::I)
            .map_err(|_| E::custom("integer out of range"))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<NumOrStr, E> {
        Ok(NumOrStr::F(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<NumOrStr, E> {
        Ok(NumOrStr::S(v.to_owned()))
    }
}

enum NumOrStr {
    I(i64),
    F(f64),
    S(String),
}

#[allow(clippy::cast_precision_loss)]
fn de_f64<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    match d.deserialize_any(NumVisitor)? {
        NumOrStr::I(i) => Ok(i as f64),
        NumOrStr::F(f) => Ok(f),
        NumOrStr::S(s) => {
            parse_f64_str(&s).ok_or_else(|| de::Error::custom(format!("not a number: {s:?}")))
        }
    }
}

#[allow(clippy::cast_possible_truncation)]
fn de_i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    match d.deserialize_any(NumVisitor)? {
        NumOrStr::I(i) => Ok(i),
        NumOrStr::F(f) if f.fract() == 0.0 => Ok(f as i64),
        NumOrStr::F(f) => Err(de::Error::custom(format!("not an integer: {f}"))),
        NumOrStr::S(s) => s
            .parse()
            .map_err(|_| de::Error::custom(format!("not an integer: {s:?}"))),
    }
}

fn de_opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    struct Wrap(#[serde(deserialize_with = "de_i64")] i64);
    Ok(Option::<Wrap>::deserialize(d)?.map(|w| w.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_version_tags_and_aliases_parse() -> Result<(), serde_json::Error> {
        let mv: ModelVersion = serde_json::from_str(
            r#"{"name":"m","version":"3","aliases":["challenger"],"tags":[{"key":"rps.archived","value":"true"}]}"#,
        )?;
        assert_eq!(mv.tag("rps.archived"), Some("true"));
        assert_eq!(mv.tag("other"), None);
        assert_eq!(mv.aliases, vec!["challenger".to_owned()]);
        let bare: ModelVersion = serde_json::from_str(r#"{"name":"m","version":"1"}"#)?;
        assert!(bare.tags.is_empty());
        Ok(())
    }

    #[test]
    fn metric_wire_format_handles_strings_and_non_finite() -> Result<(), serde_json::Error> {
        let m: Metric = serde_json::from_str(
            r#"{"key":"a","value":"NaN","timestamp":"1700000000000","step":"3"}"#,
        )?;
        assert!(m.value.is_nan());
        assert_eq!((m.timestamp, m.step), (1_700_000_000_000, 3));
        let m: Metric = serde_json::from_str(r#"{"key":"a","value":1.5,"timestamp":5}"#)?;
        assert_eq!((m.value, m.step), (1.5, 0));
        let out = serde_json::to_string(&Metric {
            key: "x".into(),
            value: f64::NEG_INFINITY,
            timestamp: 1,
            step: 2,
        })?;
        assert_eq!(
            out,
            r#"{"key":"x","value":"-Infinity","timestamp":1,"step":2}"#
        );
        Ok(())
    }

    #[test]
    fn run_status_wire_names() -> Result<(), serde_json::Error> {
        assert_eq!(
            serde_json::to_string(&RunStatus::Finished)?,
            r#""FINISHED""#
        );
        let s: RunStatus = serde_json::from_str(r#""KILLED""#)?;
        assert_eq!(s, RunStatus::Killed);
        assert_eq!(RunStatus::Failed.as_str(), "FAILED");
        Ok(())
    }
}

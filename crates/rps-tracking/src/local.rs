//! The embedded run store: one folder per run in an object store.

use crate::{MetricPoint, Run, RunStatus, Tracker, TrackingError, new_run_id};
use rps_store::ObjectStore;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What a local run records, in `<run_id>/run.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub run_id: String,
    pub stage: String,
    pub status: RunStatus,
    pub start_time_ms: i64,
    pub end_time_ms: Option<i64>,
    pub params: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
    pub metrics: Vec<MetricPoint>,
    pub artifacts: Vec<String>,
}

/// Runs kept in an object store (by default `.rps/runs`).
#[derive(Debug, Clone)]
pub struct LocalTracker {
    store: Arc<dyn ObjectStore>,
}

impl LocalTracker {
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self { store }
    }

    /// Read a run back.
    pub fn get(&self, run_id: &str) -> Result<RunRecord, TrackingError> {
        let key = format!("{run_id}/run.json");
        serde_json::from_slice(&self.store.get(&key)?).map_err(|source| TrackingError::Json {
            uri: self.store.uri(&key),
            source,
        })
    }
}

impl Tracker for LocalTracker {
    fn start_run(
        &self,
        stage: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<Box<dyn Run>, TrackingError> {
        // Temporary files of runs killed mid-write (never a live writer's: see the rule in
        // rps_store::object).
        rps_store::commit::sweep_stale_temp(self.store.as_ref());
        let mut run = LocalRun {
            store: self.store.clone(),
            record: RunRecord {
                run_id: new_run_id(),
                stage: stage.to_owned(),
                status: RunStatus::Running,
                start_time_ms: chrono::Utc::now().timestamp_millis(),
                end_time_ms: None,
                params: BTreeMap::new(),
                tags: tags.clone(),
                metrics: Vec::new(),
                artifacts: Vec::new(),
            },
        };
        run.save()?;
        Ok(Box::new(run))
    }

    fn describe(&self) -> String {
        format!("local run store {}", self.store.uri(""))
    }
}

/// An open local run; every call rewrites `run.json` atomically.
#[derive(Debug)]
pub struct LocalRun {
    store: Arc<dyn ObjectStore>,
    record: RunRecord,
}

impl LocalRun {
    fn save(&mut self) -> Result<(), TrackingError> {
        let key = format!("{}/run.json", self.record.run_id);
        let json =
            serde_json::to_vec_pretty(&self.record).map_err(|source| TrackingError::Json {
                uri: self.store.uri(&key),
                source,
            })?;
        self.store.put(&key, &json)?;
        Ok(())
    }
}

impl Run for LocalRun {
    fn id(&self) -> &str {
        &self.record.run_id
    }

    fn log_params(&mut self, params: &[(String, String)]) -> Result<(), TrackingError> {
        for (k, v) in params {
            // Params are immutable, as in MLflow: the same value again is fine.
            match self.record.params.get(k) {
                Some(old) if old != v => {
                    return Err(TrackingError::Backend(format!(
                        "param {k:?} already logged as {old:?}; cannot change it to {v:?}"
                    )));
                }
                _ => {
                    self.record.params.insert(k.clone(), v.clone());
                }
            }
        }
        self.save()
    }

    fn log_metrics(&mut self, metrics: &[MetricPoint]) -> Result<(), TrackingError> {
        self.record.metrics.extend_from_slice(metrics);
        self.save()
    }

    fn set_tags(&mut self, tags: &[(String, String)]) -> Result<(), TrackingError> {
        self.record.tags.extend(tags.iter().cloned());
        self.save()
    }

    fn log_artifact(&mut self, path: &str, bytes: &[u8]) -> Result<(), TrackingError> {
        self.store
            .put(&format!("{}/artifacts/{path}", self.record.run_id), bytes)?;
        if !self.record.artifacts.iter().any(|a| a == path) {
            self.record.artifacts.push(path.to_owned());
        }
        self.save()
    }

    fn finish(&mut self, status: RunStatus) -> Result<(), TrackingError> {
        self.record.status = status;
        self.record.end_time_ms = Some(chrono::Utc::now().timestamp_millis());
        self.save()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_lifecycle() {
        let dir = tempfile::tempdir().unwrap();
        let t = LocalTracker::new(rps_store::open(dir.path().to_str().unwrap()).unwrap());
        let mut run = t
            .start_run(
                "train",
                &BTreeMap::from([("git_commit".to_owned(), "abc".to_owned())]),
            )
            .unwrap();
        let id = run.id().to_owned();
        assert_eq!(t.get(&id).unwrap().status, RunStatus::Running);
        run.log_params(&[("eta".into(), "0.1".into())]).unwrap();
        run.log_params(&[("eta".into(), "0.1".into())]).unwrap();
        assert!(run.log_params(&[("eta".into(), "0.2".into())]).is_err());
        run.log_values(&[("rmse", 1.5), ("nan", f64::NAN)]).unwrap();
        run.log_artifact("model/model.json", b"{}").unwrap();
        run.finish(RunStatus::Failed).unwrap();
        let r = t.get(&id).unwrap();
        assert_eq!(r.status, RunStatus::Failed);
        assert_eq!(r.metrics.len(), 1);
        assert_eq!(r.artifacts, vec!["model/model.json"]);
        assert_eq!(r.tags["git_commit"], "abc");
        assert_eq!(id.len(), 32);
    }
}

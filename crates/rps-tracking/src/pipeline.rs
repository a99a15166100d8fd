//! What ties one pipeline invocation's runs together in MLflow, and what they read.
//!
//! - **Parent run.** With `RPS_PIPELINE_RUN` set (the Airflow DAG sets it to its `run_id`,
//!   `make demo` to a fresh id; any string of letters, digits and `-_.:+` works), every stage
//!   run is created as a child of one parent run per invocation (`mlflow.parentRunId`), so the
//!   MLflow UI shows a pipeline with its five stage runs nested under it, not five loose runs.
//!   The first stage creates the parent (tagged `rps.stage = pipeline`,
//!   `rps.pipeline_run = <id>`); later stages find it by that tag. The parent ends FAILED as
//!   soon as a stage fails, FINISHED when `evaluate` (the last stage) finishes.
//! - **Dataset lineage.** A stage whose tags name its input (`data_uri`, with `dvc_md5` or
//!   `data_hash` as the digest) logs it with `runs/log-inputs`, so the UI's Dataset column shows
//!   name, digest and source; `mlflow.data.context` is `training` for train, `evaluation` for
//!   evaluate, `source` for the others.

use rps_mlflow::{Dataset, DatasetInput, MlflowClient, RunStatus};

/// The variable naming one pipeline invocation.
pub const ENV_PIPELINE_RUN: &str = "RPS_PIPELINE_RUN";
/// The tag carrying it, on the parent and on every stage run.
pub const PIPELINE_TAG: &str = "rps.pipeline_run";
/// MLflow's own tag for nesting.
pub const PARENT_TAG: &str = "mlflow.parentRunId";
/// The stage whose end closes the parent run.
pub const LAST_STAGE: &str = "evaluate";

/// The pipeline invocation id from the environment, if set and usable.
pub fn invocation() -> Option<String> {
    let id = std::env::var(ENV_PIPELINE_RUN).ok()?;
    let id = id.trim().to_owned();
    valid_id(&id).then_some(id)
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 250
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:+".contains(c))
}

/// The parent run of invocation `id` in the experiment: found by its tag, else created.
pub fn parent_run(
    client: &MlflowClient,
    experiment_id: &str,
    id: &str,
) -> Result<String, rps_mlflow::MlflowError> {
    let filter = format!("tags.`{PIPELINE_TAG}` = '{id}' and tags.`rps.stage` = 'pipeline'");
    if let Some(run) = client
        .search_runs(&[experiment_id], &filter, &["attributes.start_time ASC"], 1)?
        .into_iter()
        .next()
    {
        return Ok(run.info.run_id);
    }
    let tags = vec![
        ("rps.stage".to_owned(), "pipeline".to_owned()),
        (PIPELINE_TAG.to_owned(), id.to_owned()),
        ("mlflow.source.name".to_owned(), "rps".to_owned()),
        ("mlflow.source.type".to_owned(), "LOCAL".to_owned()),
    ];
    Ok(client
        .create_run(experiment_id, &format!("pipeline {id}"), &tags)?
        .run_id)
}

/// A stage run's link to its parent: closed by the last stage, failed by any stage.
#[derive(Debug, Clone)]
pub struct Parent {
    pub run_id: String,
    pub closes: bool,
}

impl Parent {
    /// Mark the parent after the stage ended with `status`.
    pub fn stage_ended(&self, client: &MlflowClient, status: RunStatus) {
        let parent_status = match status {
            RunStatus::Failed | RunStatus::Killed => Some(RunStatus::Failed),
            RunStatus::Finished if self.closes => Some(RunStatus::Finished),
            _ => None,
        };
        if let Some(s) = parent_status
            && let Err(e) = client.update_run(&self.run_id, s)
        {
            tracing::warn!(parent = %self.run_id, "could not mark the pipeline run {s:?}: {e}");
        }
    }
}

/// The dataset a stage read, from its tags (`data_uri`, `dvc_md5` or `data_hash`).
pub fn dataset_input(
    stage: &str,
    tags: &std::collections::BTreeMap<String, String>,
) -> Option<DatasetInput> {
    let uri = tags.get("data_uri")?;
    let digest = tags.get("dvc_md5").or_else(|| tags.get("data_hash"))?;
    let name = uri
        .trim_end_matches('/')
        .rsplit('/')
        .take(2)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("/");
    let context = match stage {
        "train" => "training",
        "evaluate" => "evaluation",
        _ => "source",
    };
    // A local folder is named by its absolute path: the UI is read away from the stage's cwd.
    let uri = if uri.contains("://") {
        uri.clone()
    } else {
        std::path::Path::new(uri)
            .canonicalize()
            .map_or_else(|_| uri.clone(), |p| p.display().to_string())
    };
    Some(DatasetInput {
        dataset: Dataset::at(&name, &uri, digest),
        context: context.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn ids_with_quotes_or_spaces_are_not_used_in_filters() {
        assert!(valid_id("manual__2026-12-04T10:00:00+00:00"));
        assert!(valid_id("demo-1a2b"));
        assert!(!valid_id("x' or '1'='1"));
        assert!(!valid_id(""));
        assert!(!valid_id("a b"));
    }

    #[test]
    fn the_input_names_the_dataset_and_its_digest() {
        let tags = BTreeMap::from([
            (
                "data_uri".to_owned(),
                "/p/.rps/data/features/BTC-USD".to_owned(),
            ),
            (
                "dvc_md5".to_owned(),
                "40226b0d1a2e3f4a5b6c7d8e9f001122.dir".to_owned(),
            ),
            ("data_hash".to_owned(), "f".repeat(64)),
        ]);
        let i = dataset_input("train", &tags).unwrap();
        assert_eq!(i.dataset.name, "features/BTC-USD");
        assert_eq!(i.dataset.digest, "40226b0d1a2e3f4a5b6c7d8e9f001122.dir");
        assert_eq!(i.context, "training");
        let no_dvc = BTreeMap::from([
            ("data_uri".to_owned(), "s3://b/raw/BTC-USD".to_owned()),
            ("data_hash".to_owned(), "f".repeat(64)),
        ]);
        let i = dataset_input("quality", &no_dvc).unwrap();
        assert_eq!(i.dataset.digest.len(), 36);
        assert_eq!(i.dataset.source_type, "s3");
        assert!(dataset_input("x", &BTreeMap::new()).is_none());
    }
}

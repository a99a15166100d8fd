//! Dataset lineage in MLflow's own terms: `runs/log-inputs` records which dataset a run read
//! (name, digest, source, schema, profile), so the MLflow UI's "Dataset" column and the run's
//! "Datasets used" panel are filled.

use serde::Serialize;
use serde_json::json;

use crate::client::MlflowClient;
use crate::error::{MlflowError, Result};

/// MLflow's limit on a dataset digest (`MAX_DATASET_DIGEST_SIZE`).
pub const MAX_DIGEST_LEN: usize = 36;

/// One dataset a run used, as `mlflow.entities.Dataset` describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dataset {
    /// e.g. `BTC-USD features`.
    pub name: String,
    /// A content hash, at most 36 characters (MLflow's limit): DVC's md5 of the folder when it
    /// has one, else the start of the data's sha256.
    pub digest: String,
    /// `local`, `s3`, `http`, … (MLflow's dataset source types).
    pub source_type: String,
    /// JSON: `{"uri": "…"}`.
    pub source: String,
    /// JSON: `{"mlflow_colspec": [{"type": "double", "name": "…", "required": true}, …]}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// JSON: `{"num_rows": …}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
}

impl Dataset {
    /// A dataset at `uri` (a local path or `s3://…`) with `digest` (cut to 36 characters).
    #[must_use]
    pub fn at(name: &str, uri: &str, digest: &str) -> Self {
        let source_type = if uri.starts_with("s3://") {
            "s3"
        } else if uri.starts_with("http://") || uri.starts_with("https://") {
            "http"
        } else {
            "local"
        };
        Self {
            name: name.to_owned(),
            digest: digest.chars().take(MAX_DIGEST_LEN).collect(),
            source_type: source_type.to_owned(),
            source: json!({ "uri": uri }).to_string(),
            schema: None,
            profile: None,
        }
    }

    /// With the columns (all `double`) the model reads.
    #[must_use]
    pub fn with_columns(mut self, columns: &[String]) -> Self {
        let cols: Vec<_> = columns
            .iter()
            .map(|c| json!({"type": "double", "name": c, "required": true}))
            .collect();
        self.schema = Some(json!({ "mlflow_colspec": cols }).to_string());
        self
    }

    /// With the number of rows.
    #[must_use]
    pub fn with_rows(mut self, rows: usize) -> Self {
        self.profile = Some(json!({ "num_rows": rows }).to_string());
        self
    }
}

/// How a run used a dataset: MLflow's `mlflow.data.context` input tag (`training`,
/// `evaluation`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetInput {
    pub dataset: Dataset,
    pub context: String,
}

impl MlflowClient {
    /// Records the datasets `run_id` read (`runs/log-inputs`).
    ///
    /// # Errors
    /// [`MlflowError::InvalidArgument`] for an empty name or digest; transport, auth and API
    /// errors.
    pub fn log_inputs(&self, run_id: &str, inputs: &[DatasetInput]) -> Result<()> {
        let mut datasets = Vec::with_capacity(inputs.len());
        for i in inputs {
            if i.dataset.name.is_empty() || i.dataset.digest.is_empty() {
                return Err(MlflowError::InvalidArgument(
                    "a dataset needs a name and a digest".into(),
                ));
            }
            datasets.push(json!({
                "tags": [{"key": "mlflow.data.context", "value": i.context}],
                "dataset": i.dataset,
            }));
        }
        let _: serde_json::Value = self.post_json(
            &format!("{}/runs/log-inputs", crate::client::TRACKING),
            &json!({ "run_id": run_id, "datasets": datasets }),
        )?;
        Ok(())
    }

    /// Sets the description of registered model `name` (`registered-models/update`).
    ///
    /// # Errors
    /// [`MlflowError::RegistryUnsupported`], transport, auth and API errors.
    pub fn update_registered_model_description(&self, name: &str, description: &str) -> Result<()> {
        let _: serde_json::Value = self.call_json(
            &reqwest::Method::PATCH,
            &format!("{}/registered-models/update", crate::client::TRACKING),
            &json!({ "name": name, "description": description }),
            self.config().retry,
        )?;
        Ok(())
    }

    /// Sets tag `key` of registered model `name` (`registered-models/set-tag`).
    ///
    /// # Errors
    /// [`MlflowError::RegistryUnsupported`], transport, auth and API errors.
    pub fn set_registered_model_tag(&self, name: &str, key: &str, value: &str) -> Result<()> {
        let _: serde_json::Value = self.post_json(
            &format!("{}/registered-models/set-tag", crate::client::TRACKING),
            &json!({ "name": name, "key": key, "value": value }),
        )?;
        Ok(())
    }

    /// Sets the description of version `version` of `name` (`model-versions/update`).
    ///
    /// # Errors
    /// [`MlflowError::RegistryUnsupported`], transport, auth and API errors.
    pub fn update_model_version_description(
        &self,
        name: &str,
        version: &str,
        description: &str,
    ) -> Result<()> {
        let _: serde_json::Value = self.call_json(
            &reqwest::Method::PATCH,
            &format!("{}/model-versions/update", crate::client::TRACKING),
            &json!({ "name": name, "version": version, "description": description }),
            self.config().retry,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dataset_names_its_source_and_fits_mlflow_limits() {
        let d = Dataset::at("BTC-USD features", "s3://b/p/features", &"a".repeat(64))
            .with_columns(&["har_1b".to_owned()])
            .with_rows(10);
        assert_eq!(d.digest.len(), MAX_DIGEST_LEN);
        assert_eq!(d.source_type, "s3");
        assert_eq!(d.source, r#"{"uri":"s3://b/p/features"}"#);
        assert!(d.schema.unwrap().contains(r#""name":"har_1b""#));
        assert_eq!(d.profile.unwrap(), r#"{"num_rows":10}"#);
        assert_eq!(Dataset::at("x", "/tmp/x", "1").source_type, "local");
    }
}

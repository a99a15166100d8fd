//! Model registry: registered models, versions, aliases.
//!
//! Servers without a registry (DagHub's old MLflow answers 404 "Model Registry features are
//! not supported by the store"; others 404 `ENDPOINT_NOT_FOUND`) give
//! [`MlflowError::RegistryUnsupported`] from every method here, so the caller can fall back
//! (e.g. to a tag on the run).

use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use crate::client::{MlflowClient, TRACKING};
use crate::error::{MlflowError, Result};
use crate::types::ModelVersion;

/// Checks an alias the way MLflow does: 1–255 characters of `[\w-]`, not `latest`, not
/// `v<digits>` (both reserved).
///
/// # Errors
/// [`MlflowError::InvalidArgument`].
pub fn validate_alias(alias: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(MlflowError::InvalidArgument(format!(
            "alias {alias:?}: {why}"
        )))
    };
    if alias.is_empty() || alias.chars().count() > 255 {
        return bad("must be 1–255 characters");
    }
    if !alias
        .chars()
        .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
    {
        return bad("may contain only alphanumerics, underscores and dashes");
    }
    let lower = alias.to_ascii_lowercase();
    if lower == "latest" {
        return bad("'latest' is reserved");
    }
    if let Some(digits) = lower.strip_prefix('v')
        && !digits.is_empty()
        && digits.chars().all(|c| c.is_ascii_digit())
    {
        return bad("'v<number>' is reserved for versions");
    }
    Ok(())
}

/// MLflow 3 answers a missing alias of an existing model with 400 `INVALID_PARAMETER_VALUE`
/// "Registered model alias champion not found." (a missing model is 404
/// `RESOURCE_DOES_NOT_EXIST`).
fn is_missing_alias(e: &MlflowError) -> bool {
    match e {
        MlflowError::Api {
            error_code,
            message,
            ..
        } => {
            let m = message.to_ascii_lowercase();
            error_code == "INVALID_PARAMETER_VALUE"
                && m.contains("alias")
                && m.contains("not found")
        }
        _ => false,
    }
}

fn validate_name(name: &str) -> Result<()> {
    if name.trim().is_empty() {
        return Err(MlflowError::InvalidArgument(
            "registered model name must not be empty".into(),
        ));
    }
    Ok(())
}

impl MlflowClient {
    /// Creates a registered model; an existing one is fine (`RESOURCE_ALREADY_EXISTS`).
    ///
    /// # Errors
    /// [`MlflowError::RegistryUnsupported`], transport, auth and API errors.
    pub fn create_registered_model(&self, name: &str) -> Result<()> {
        validate_name(name)?;
        let path = format!("{TRACKING}/registered-models/create");
        match self.post_json::<serde_json::Value>(&path, &json!({ "name": name })) {
            Ok(_) => Ok(()),
            Err(e) if e.is_already_exists() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Registers a new version of `name` from `source` (the model's artifact location, e.g.
    /// `format!("{}/model", run.artifact_uri)`), produced by `run_id`. Returns the version
    /// number as MLflow's string (`"1"`, `"2"`, …).
    ///
    /// # Errors
    /// [`MlflowError::RegistryUnsupported`], transport, auth and API errors.
    pub fn create_model_version(&self, name: &str, source: &str, run_id: &str) -> Result<String> {
        validate_name(name)?;
        #[derive(Deserialize)]
        struct Resp {
            model_version: ModelVersion,
        }
        let mut body = json!({ "name": name, "source": source });
        if !run_id.is_empty() {
            body["run_id"] = json!(run_id);
        }
        let r: Resp = self.post_json(&format!("{TRACKING}/model-versions/create"), &body)?;
        tracing::info!(model = name, version = %r.model_version.version, "registered model version");
        Ok(r.model_version.version)
    }

    /// Points `alias` (e.g. `champion`) of `name` at `version`, moving it if it existed.
    ///
    /// # Errors
    /// Invalid alias; [`MlflowError::RegistryUnsupported`], transport, auth and API errors.
    pub fn set_alias(&self, name: &str, alias: &str, version: &str) -> Result<()> {
        validate_name(name)?;
        validate_alias(alias)?;
        let _: serde_json::Value = self.post_json(
            &format!("{TRACKING}/registered-models/alias"),
            &json!({ "name": name, "alias": alias, "version": version }),
        )?;
        Ok(())
    }

    /// The version `alias` points at, or `None` when the alias (or the model) does not exist
    /// (MLflow answers 404 for a missing model, 400 `INVALID_PARAMETER_VALUE` for a missing
    /// alias; both are `None`).
    ///
    /// # Errors
    /// [`MlflowError::RegistryUnsupported`], transport, auth and API errors.
    pub fn get_version_by_alias(&self, name: &str, alias: &str) -> Result<Option<ModelVersion>> {
        validate_name(name)?;
        validate_alias(alias)?;
        #[derive(Deserialize)]
        struct Resp {
            model_version: ModelVersion,
        }
        match self.get_json::<Resp>(
            &format!("{TRACKING}/registered-models/alias"),
            &[("name", name), ("alias", alias)],
        ) {
            Ok(r) => Ok(Some(r.model_version)),
            Err(e) if e.is_not_found() || is_missing_alias(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Removes `alias` from `name`. Removing a missing alias is not an error.
    ///
    /// # Errors
    /// [`MlflowError::RegistryUnsupported`], transport, auth and API errors.
    pub fn delete_alias(&self, name: &str, alias: &str) -> Result<()> {
        validate_name(name)?;
        validate_alias(alias)?;
        let path = format!("{TRACKING}/registered-models/alias");
        match self.call_json::<serde_json::Value>(
            &Method::DELETE,
            &path,
            &json!({ "name": name, "alias": alias }),
            self.config().retry,
        ) {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Every version of `name` (`model-versions/search`), in no particular order; an unknown
    /// model gives an empty list.
    ///
    /// # Errors
    /// [`MlflowError::RegistryUnsupported`], transport, auth and API errors.
    pub fn search_model_versions(&self, name: &str) -> Result<Vec<ModelVersion>> {
        validate_name(name)?;
        #[derive(Deserialize)]
        struct Resp {
            #[serde(default)]
            model_versions: Vec<ModelVersion>,
            #[serde(default)]
            next_page_token: Option<String>,
        }
        let filter = format!("name='{}'", name.replace('\'', "\\'"));
        let path = format!("{TRACKING}/model-versions/search");
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![("filter", filter.as_str()), ("max_results", "1000")];
            if let Some(t) = &token {
                query.push(("page_token", t.as_str()));
            }
            let r: Resp = self.get_json(&path, &query)?;
            let got = r.model_versions.len();
            out.extend(r.model_versions);
            token = r.next_page_token.filter(|t| !t.is_empty());
            if token.is_none() || got == 0 {
                break;
            }
        }
        Ok(out)
    }

    /// Sets tag `key` of version `version` of `name` (`model-versions/set-tag`).
    ///
    /// # Errors
    /// [`MlflowError::RegistryUnsupported`], transport, auth and API errors.
    pub fn set_model_version_tag(
        &self,
        name: &str,
        version: &str,
        key: &str,
        value: &str,
    ) -> Result<()> {
        validate_name(name)?;
        let _: serde_json::Value = self.post_json(
            &format!("{TRACKING}/model-versions/set-tag"),
            &json!({ "name": name, "version": version, "key": key, "value": value }),
        )?;
        Ok(())
    }

    /// One model version.
    ///
    /// # Errors
    /// `RESOURCE_DOES_NOT_EXIST`, [`MlflowError::RegistryUnsupported`], transport, auth and
    /// API errors.
    pub fn get_model_version(&self, name: &str, version: &str) -> Result<ModelVersion> {
        #[derive(Deserialize)]
        struct Resp {
            model_version: ModelVersion,
        }
        let r: Resp = self.get_json(
            &format!("{TRACKING}/model-versions/get"),
            &[("name", name), ("version", version)],
        )?;
        Ok(r.model_version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases() {
        for good in ["champion", "challenger-2", "prod_eu", "v1a", "vx"] {
            assert!(validate_alias(good).is_ok(), "{good}");
        }
        for bad in ["", "latest", "LATEST", "v1", "V12", "a b", "a.b", "a/b"] {
            assert!(validate_alias(bad).is_err(), "{bad}");
        }
    }
}

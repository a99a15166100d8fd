//! An MLflow model directory for an XGBoost JSON model, laid out exactly like
//! `mlflow.xgboost.save_model(booster, path, signature=…, model_format="json")` of MLflow 3.17.2
//! with xgboost 3.2.0 writes it, so `mlflow.pyfunc.load_model` and `mlflow models serve` load it:
//!
//! ```text
//! model/
//!   MLmodel            flavors python_function + xgboost, signature, run_id, model_uuid, …
//!   model.json         the booster, byte for byte
//!   python_env.yaml    python version, build deps, `-r requirements.txt`
//!   requirements.txt   mlflow==…, xgboost==…, …
//!   conda.yaml         the same for conda
//! ```
//!
//! The rendering is pure ([`XgboostModel::files`]); [`XgboostModel::write_dir`] writes it and
//! [`MlflowClient::log_xgboost_model`] uploads it to a run and records it.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::json;

use crate::client::MlflowClient;
use crate::error::{MlflowError, Result};
use crate::types::{LogModelOutcome, RunInfo};

/// The MLflow version this layout was checked against.
pub const VERIFIED_MLFLOW_VERSION: &str = "3.17.2";
/// The xgboost version this layout was checked against.
pub const VERIFIED_XGBOOST_VERSION: &str = "3.2.0";
/// The Python the layout was checked with (written to `python_env.yaml`).
pub const DEFAULT_PYTHON_VERSION: &str = "3.11.7";
/// The model file name inside the directory.
pub const MODEL_DATA_FILE: &str = "model.json";
/// RPS's pyfunc loader module, shipped inside the model directory under `code/` (see
/// [`XgboostModel::with_rps_pyfunc`]).
pub const RPS_PYFUNC_MODULE: &str = "rps_pyfunc";
/// Where the loader lives in the model directory.
pub const RPS_PYFUNC_FILE: &str = "code/rps_pyfunc.py";
/// The loader's source.
pub const RPS_PYFUNC_SOURCE: &str = include_str!("pyfunc/rps_pyfunc.py");

/// The Python environment recorded in the model directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PythonEnv {
    /// e.g. `3.11.7`.
    pub python_version: String,
    /// e.g. `3.17.2` (MLmodel `mlflow_version`).
    pub mlflow_version: String,
    /// e.g. `3.2.0` (MLmodel `flavors.xgboost.xgb_version`).
    pub xgb_version: String,
    /// Lines of `requirements.txt` and of conda's `pip:` list.
    pub pip_requirements: Vec<String>,
}

impl PythonEnv {
    /// The environment for these versions; requirements are MLflow, xgboost and the
    /// libraries `mlflow.xgboost` pulls in at inference (numpy, pandas, scipy), sorted as
    /// MLflow writes them.
    #[must_use]
    pub fn new(python_version: &str, mlflow_version: &str, xgb_version: &str) -> Self {
        Self {
            python_version: python_version.to_owned(),
            mlflow_version: mlflow_version.to_owned(),
            xgb_version: xgb_version.to_owned(),
            pip_requirements: vec![
                format!("mlflow=={mlflow_version}"),
                "numpy".to_owned(),
                "pandas".to_owned(),
                "scipy".to_owned(),
                format!("xgboost=={xgb_version}"),
            ],
        }
    }
}

impl Default for PythonEnv {
    fn default() -> Self {
        Self::new(
            DEFAULT_PYTHON_VERSION,
            VERIFIED_MLFLOW_VERSION,
            VERIFIED_XGBOOST_VERSION,
        )
    }
}

/// An XGBoost JSON model plus what MLflow needs to serve it.
#[derive(Debug, Clone, PartialEq)]
pub struct XgboostModel {
    /// The booster as XGBoost JSON (`Booster.save_model("x.json")` format).
    pub model_json: Vec<u8>,
    /// Input columns, in the order the model expects; all `double`.
    pub feature_names: Vec<String>,
    /// Name of the single output column.
    pub output_name: String,
    /// The run that produced the model (MLmodel `run_id`), if logged to one.
    pub run_id: Option<String>,
    /// Where in the run's artifacts the directory lives (MLmodel `artifact_path`, e.g. `model`).
    pub artifact_path: Option<String>,
    /// Python environment files.
    pub env: PythonEnv,
    /// 32 lowercase hex characters (Python's `uuid.uuid4().hex`).
    pub model_uuid: String,
    /// `YYYY-MM-DD HH:MM:SS.ffffff`, UTC.
    pub utc_time_created: String,
    /// The pyfunc's output columns `(type, name)` when the `python_function` flavor is RPS's own
    /// loader ([`XgboostModel::with_rps_pyfunc`]); `None`: `mlflow.xgboost` (raw booster output).
    pub pyfunc_outputs: Option<Vec<(String, String)>>,
    /// Rows (in `feature_names` order) saved as the model's input example
    /// (`input_example.json`, pandas `split` orient); non-finite values are written as `null`.
    pub input_example: Option<Vec<Vec<f64>>>,
}

/// One file of the model directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFile {
    /// File name inside the directory.
    pub name: &'static str,
    /// Contents.
    pub bytes: Vec<u8>,
}

/// A random version-4 UUID as 32 hex characters.
#[must_use]
pub fn new_model_uuid() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    b.iter().fold(String::with_capacity(32), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

/// Now, formatted like MLflow's `utc_time_created`.
#[must_use]
pub fn utc_now_string() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%d %H:%M:%S%.6f")
        .to_string()
}

impl XgboostModel {
    /// Checks the inputs and stamps a fresh `model_uuid` and creation time.
    ///
    /// # Errors
    /// [`MlflowError::InvalidArgument`] when `model_json` is not a JSON object with a
    /// `learner` (e.g. UBJSON bytes), or feature names are empty or repeated.
    pub fn new(
        model_json: Vec<u8>,
        feature_names: Vec<String>,
        output_name: impl Into<String>,
    ) -> Result<Self> {
        let parsed: serde_json::Value = serde_json::from_slice(&model_json).map_err(|e| {
            MlflowError::InvalidArgument(format!("model bytes are not XGBoost JSON: {e}"))
        })?;
        if parsed.get("learner").is_none() {
            return Err(MlflowError::InvalidArgument(
                "model JSON has no `learner`: not an XGBoost JSON model".into(),
            ));
        }
        if feature_names.is_empty() {
            return Err(MlflowError::InvalidArgument(
                "a model needs at least one feature".into(),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for name in &feature_names {
            if name.is_empty() || !seen.insert(name.as_str()) {
                return Err(MlflowError::InvalidArgument(format!(
                    "feature name {name:?} is empty or repeated"
                )));
            }
        }
        let output_name = output_name.into();
        if output_name.is_empty() {
            return Err(MlflowError::InvalidArgument(
                "output name must not be empty".into(),
            ));
        }
        Ok(Self {
            model_json,
            feature_names,
            output_name,
            run_id: None,
            artifact_path: None,
            env: PythonEnv::default(),
            model_uuid: new_model_uuid(),
            utc_time_created: utc_now_string(),
            pyfunc_outputs: None,
            input_example: None,
        })
    }

    /// Save `rows` (each in `feature_names` order) as the input example MLflow shows on the
    /// model page and uses for `mlflow models predict` / serving checks.
    #[must_use]
    pub fn with_input_example(mut self, rows: Vec<Vec<f64>>) -> Self {
        self.input_example = Some(rows);
        self
    }

    /// `input_example.json`: `{"columns": [...], "data": [[...], ...]}`.
    fn input_example_json(&self) -> Option<serde_json::Value> {
        let rows = self.input_example.as_ref()?;
        let data: Vec<Vec<serde_json::Value>> = rows
            .iter()
            .map(|r| {
                r.iter()
                    .map(|v| {
                        serde_json::Number::from_f64(*v).map_or(serde_json::Value::Null, Into::into)
                    })
                    .collect()
            })
            .collect();
        Some(json!({ "columns": self.feature_names, "data": data }))
    }

    /// Make the `python_function` flavor RPS's own loader (`code/rps_pyfunc.py`, shipped in the
    /// directory), whose `predict` returns forecasts — `outputs` are its columns as
    /// `(type, name)`, e.g. `("double", "volatility")` — instead of raw booster values. It reads
    /// `meta.json` beside `model.json`, which the caller uploads into the same directory. The
    /// `xgboost` flavor stays, for those who want the booster.
    #[must_use]
    pub fn with_rps_pyfunc(mut self, outputs: Vec<(String, String)>) -> Self {
        self.pyfunc_outputs = Some(outputs);
        self
    }

    /// The `loader_module` and `code` of the `python_function` flavor.
    fn pyfunc_loader(&self) -> (&'static str, Option<&'static str>) {
        if self.pyfunc_outputs.is_some() {
            (RPS_PYFUNC_MODULE, Some("code"))
        } else {
            ("mlflow.xgboost", None)
        }
    }

    /// Records the run and the artifact path the directory is logged under.
    #[must_use]
    pub fn with_run(mut self, run_id: impl Into<String>, artifact_path: impl Into<String>) -> Self {
        self.run_id = Some(run_id.into());
        self.artifact_path = Some(artifact_path.into());
        self
    }

    /// Replaces the Python environment.
    #[must_use]
    pub fn with_env(mut self, env: PythonEnv) -> Self {
        self.env = env;
        self
    }

    /// The signature's `inputs`: a JSON string, formatted like Python's `json.dumps`.
    #[must_use]
    pub fn signature_inputs(&self) -> String {
        let cols: Vec<String> = self
            .feature_names
            .iter()
            .map(|n| column_spec("double", n))
            .collect();
        format!("[{}]", cols.join(", "))
    }

    /// The signature's `outputs`: one `float` column (an XGBoost booster predicts float32,
    /// which is what MLflow infers from its predictions).
    #[must_use]
    pub fn signature_outputs(&self) -> String {
        match &self.pyfunc_outputs {
            Some(cols) => format!(
                "[{}]",
                cols.iter()
                    .map(|(ty, name)| column_spec(ty, name))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            None => format!("[{}]", column_spec("float", &self.output_name)),
        }
    }

    /// The `MLmodel` YAML, keys sorted as PyYAML's `safe_dump` writes them.
    #[must_use]
    pub fn mlmodel_yaml(&self) -> String {
        let env = &self.env;
        let mut y = String::new();
        if let Some(p) = &self.artifact_path {
            y.push_str(&format!("artifact_path: {}\n", yaml_scalar(p)));
        }
        y.push_str("flavors:\n");
        let (loader, code) = self.pyfunc_loader();
        y.push_str("  python_function:\n");
        if let Some(code) = code {
            y.push_str(&format!("    code: {code}\n"));
        }
        y.push_str(&format!("    data: {MODEL_DATA_FILE}\n"));
        y.push_str("    env:\n");
        y.push_str("      conda: conda.yaml\n");
        y.push_str("      virtualenv: python_env.yaml\n");
        y.push_str(&format!("    loader_module: {loader}\n"));
        y.push_str(&format!(
            "    python_version: {}\n",
            yaml_scalar(&env.python_version)
        ));
        y.push_str("  xgboost:\n");
        y.push_str("    code: null\n");
        y.push_str(&format!("    data: {MODEL_DATA_FILE}\n"));
        y.push_str("    model_class: xgboost.core.Booster\n");
        y.push_str("    model_format: json\n");
        y.push_str(&format!(
            "    xgb_version: {}\n",
            yaml_scalar(&env.xgb_version)
        ));
        y.push_str("is_signature_from_type_hint: false\n");
        y.push_str(&format!(
            "mlflow_version: {}\n",
            yaml_scalar(&env.mlflow_version)
        ));
        y.push_str("model_id: null\n");
        y.push_str(&format!("model_size_bytes: {}\n", self.model_json.len()));
        y.push_str(&format!("model_uuid: {}\n", yaml_scalar(&self.model_uuid)));
        y.push_str("prompts: null\n");
        if let Some(r) = &self.run_id {
            y.push_str(&format!("run_id: {}\n", yaml_scalar(r)));
        }
        if self.input_example.is_some() {
            y.push_str("saved_input_example_info:\n");
            y.push_str("  artifact_path: input_example.json\n");
            y.push_str("  pandas_orient: split\n");
            y.push_str("  serving_input_path: serving_input_example.json\n");
            y.push_str("  type: dataframe\n");
        }
        y.push_str("signature:\n");
        y.push_str(&format!(
            "  inputs: {}\n",
            yaml_scalar(&self.signature_inputs())
        ));
        y.push_str(&format!(
            "  outputs: {}\n",
            yaml_scalar(&self.signature_outputs())
        ));
        y.push_str("  params: null\n");
        y.push_str("type_hint_from_example: false\n");
        y.push_str(&format!(
            "utc_time_created: {}\n",
            yaml_scalar(&self.utc_time_created)
        ));
        y
    }

    /// `python_env.yaml`.
    #[must_use]
    pub fn python_env_yaml(&self) -> String {
        format!(
            "python: {}\nbuild_dependencies:\n- pip\n- setuptools\n- wheel\ndependencies:\n- -r requirements.txt\n",
            yaml_scalar(&self.env.python_version)
        )
    }

    /// `requirements.txt` (no trailing newline, as MLflow writes it).
    #[must_use]
    pub fn requirements_txt(&self) -> String {
        self.env.pip_requirements.join("\n")
    }

    /// `conda.yaml`.
    #[must_use]
    pub fn conda_yaml(&self) -> String {
        let mut y = String::from("channels:\n- conda-forge\ndependencies:\n");
        y.push_str(&format!(
            "- {}\n- pip\n- pip:\n",
            yaml_scalar(&format!("python={}", self.env.python_version))
        ));
        for r in &self.env.pip_requirements {
            y.push_str(&format!("  - {}\n", yaml_scalar(r)));
        }
        y.push_str("name: mlflow-env\n");
        y
    }

    /// Every file of the directory, `MLmodel` first.
    #[must_use]
    pub fn files(&self) -> Vec<ModelFile> {
        let mut files = vec![
            ModelFile {
                name: "MLmodel",
                bytes: self.mlmodel_yaml().into_bytes(),
            },
            ModelFile {
                name: MODEL_DATA_FILE,
                bytes: self.model_json.clone(),
            },
            ModelFile {
                name: "python_env.yaml",
                bytes: self.python_env_yaml().into_bytes(),
            },
            ModelFile {
                name: "requirements.txt",
                bytes: self.requirements_txt().into_bytes(),
            },
            ModelFile {
                name: "conda.yaml",
                bytes: self.conda_yaml().into_bytes(),
            },
        ];
        if let Some(example) = self.input_example_json() {
            files.push(ModelFile {
                name: "input_example.json",
                bytes: example.to_string().into_bytes(),
            });
            files.push(ModelFile {
                name: "serving_input_example.json",
                bytes: serde_json::to_vec_pretty(&json!({ "dataframe_split": example }))
                    .unwrap_or_default(),
            });
        }
        if self.pyfunc_outputs.is_some() {
            files.push(ModelFile {
                name: RPS_PYFUNC_FILE,
                bytes: RPS_PYFUNC_SOURCE.as_bytes().to_vec(),
            });
        }
        files
    }

    /// Writes the directory `model_dir` (created if needed; existing files are replaced).
    ///
    /// # Errors
    /// [`MlflowError::Io`].
    pub fn write_dir(&self, model_dir: &Path) -> Result<()> {
        std::fs::create_dir_all(model_dir)
            .map_err(|e| MlflowError::io("creating", model_dir, e))?;
        for f in self.files() {
            let path = model_dir.join(f.name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| MlflowError::io("creating", parent, e))?;
            }
            std::fs::write(&path, &f.bytes).map_err(|e| MlflowError::io("writing", &path, e))?;
        }
        Ok(())
    }

    /// The `model_json` of `runs/log-model`: what the Python client sends
    /// (`Model.get_tags_dict()`: `run_id`, `artifact_path`, `utc_time_created`, `model_uuid`,
    /// `flavors`).
    #[must_use]
    pub fn log_model_json(&self) -> String {
        let (loader, code) = self.pyfunc_loader();
        let mut pyfunc = json!({
            "data": MODEL_DATA_FILE,
            "env": {"conda": "conda.yaml", "virtualenv": "python_env.yaml"},
            "loader_module": loader,
            "python_version": self.env.python_version,
        });
        if let Some(code) = code {
            pyfunc["code"] = json!(code);
        }
        let mut v = json!({
            "utc_time_created": self.utc_time_created,
            "model_uuid": self.model_uuid,
            "flavors": {
                "python_function": pyfunc,
                "xgboost": {
                    "code": null,
                    "data": MODEL_DATA_FILE,
                    "model_class": "xgboost.core.Booster",
                    "model_format": "json",
                    "xgb_version": self.env.xgb_version,
                },
            },
        });
        if let Some(r) = &self.run_id {
            v["run_id"] = json!(r);
        }
        if let Some(p) = &self.artifact_path {
            v["artifact_path"] = json!(p);
        }
        if self.input_example.is_some() {
            v["saved_input_example_info"] = json!({
                "artifact_path": "input_example.json",
                "pandas_orient": "split",
                "serving_input_path": "serving_input_example.json",
                "type": "dataframe",
            });
        }
        v.to_string()
    }
}

/// Writes the model directory for `model_json` at `model_dir` and returns the model
/// description (with a fresh uuid and time). The free-function form of
/// [`XgboostModel::new`] + [`XgboostModel::with_run`] + [`XgboostModel::write_dir`].
///
/// # Errors
/// As [`XgboostModel::new`] and [`XgboostModel::write_dir`].
pub fn write_xgboost_model_dir(
    model_dir: &Path,
    model_json: &[u8],
    feature_names: &[String],
    output_name: &str,
    run_id: Option<&str>,
    artifact_path: &str,
) -> Result<XgboostModel> {
    let mut model = XgboostModel::new(model_json.to_vec(), feature_names.to_vec(), output_name)?;
    if let Some(run_id) = run_id {
        model = model.with_run(run_id, artifact_path);
    }
    model.write_dir(model_dir)?;
    Ok(model)
}

fn column_spec(ty: &str, name: &str) -> String {
    let name = serde_json::Value::String(name.to_owned()).to_string();
    format!(r#"{{"type": "{ty}", "name": {name}, "required": true}}"#)
}

/// A YAML scalar for `s` that both YAML 1.1 (PyYAML) and 1.2 (serde_yaml) read back as the same
/// string: plain when unambiguous, else single-quoted, else (control characters) double-quoted.
fn yaml_scalar(s: &str) -> String {
    let safe_chars = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '/' | '='))
        && s.starts_with(|c: char| c.is_ascii_alphanumeric());
    let lower = s.to_ascii_lowercase();
    let keyword = matches!(
        lower.as_str(),
        "y" | "n" | "yes" | "no" | "on" | "off" | "true" | "false" | "null" | "nan" | "inf"
    );
    let numberish = s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_digit() || "_.eE+-".contains(c))
        && !is_dotted_version(s);
    if safe_chars && !keyword && !numberish {
        s.to_owned()
    } else if !s.chars().any(char::is_control) {
        format!("'{}'", s.replace('\'', "''"))
    } else {
        serde_json::Value::String(s.to_owned()).to_string()
    }
}

/// `3.11.7` (two or more dots, digits only) is a string in every YAML version.
fn is_dotted_version(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() >= 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}

impl MlflowClient {
    /// Uploads the model directory under `artifact_path` (e.g. `model`) of `run`, then records
    /// it with `runs/log-model`. The uploaded `MLmodel` carries the run id and artifact path.
    /// Returns the outcome of `runs/log-model` (old servers cannot record it; the artifacts are
    /// there either way).
    ///
    /// # Errors
    /// As [`MlflowClient::log_artifact_bytes`] and [`MlflowClient::log_model`].
    pub fn log_xgboost_model(
        &self,
        run: &RunInfo,
        artifact_path: &str,
        model: &XgboostModel,
    ) -> Result<LogModelOutcome> {
        crate::artifacts::validate_artifact_path(artifact_path, false)?;
        let model = model.clone().with_run(run.run_id.clone(), artifact_path);
        for f in model.files() {
            self.log_artifact_bytes(run, &format!("{artifact_path}/{}", f.name), &f.bytes)?;
        }
        self.log_model(&run.run_id, &model.log_model_json())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_scalars() {
        assert_eq!(yaml_scalar("3.11.7"), "3.11.7");
        assert_eq!(yaml_scalar("3.11"), "'3.11'");
        assert_eq!(yaml_scalar("mlflow==3.17.2"), "mlflow==3.17.2");
        assert_eq!(
            yaml_scalar("5ae2242674df489b82ba9dba3f59bde5"),
            "5ae2242674df489b82ba9dba3f59bde5"
        );
        assert_eq!(
            yaml_scalar("12345678901234567890123456789012"),
            "'12345678901234567890123456789012'"
        );
        assert_eq!(yaml_scalar("1e5"), "'1e5'");
        assert_eq!(yaml_scalar("yes"), "'yes'");
        assert_eq!(
            yaml_scalar("2026-11-23 03:59:52.063148"),
            "'2026-11-23 03:59:52.063148'"
        );
        assert_eq!(yaml_scalar("it's"), "'it''s'");
        assert_eq!(yaml_scalar("a\nb"), r#""a\nb""#);
    }

    #[test]
    fn uuid_shape() {
        let u = new_model_uuid();
        assert_eq!(u.len(), 32);
        assert!(
            u.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_eq!(&u[12..13], "4");
        assert_ne!(u, new_model_uuid());
    }

    #[test]
    fn time_shape() {
        let t = utc_now_string();
        assert_eq!(t.len(), "2026-11-23 03:59:52.063148".len(), "{t}");
    }

    #[test]
    fn rps_pyfunc_ships_its_loader_and_names_its_outputs() {
        let json = br#"{"learner":{}}"#.to_vec();
        let plain = XgboostModel::new(json.clone(), vec!["a".into()], "volatility").unwrap();
        assert!(
            plain
                .mlmodel_yaml()
                .contains("    loader_module: mlflow.xgboost\n")
        );
        assert!(!plain.files().iter().any(|f| f.name == RPS_PYFUNC_FILE));

        let m = XgboostModel::new(json, vec!["a".into()], "volatility")
            .unwrap()
            .with_rps_pyfunc(vec![
                ("string".into(), "signal".into()),
                ("double".into(), "p_sell".into()),
            ]);
        let y = m.mlmodel_yaml();
        assert!(
            y.contains("  python_function:\n    code: code\n    data: model.json\n"),
            "{y}"
        );
        assert!(y.contains("    loader_module: rps_pyfunc\n"), "{y}");
        // The booster stays reachable as the xgboost flavor.
        assert!(
            y.contains("  xgboost:\n    code: null\n    data: model.json\n"),
            "{y}"
        );
        assert_eq!(
            m.signature_outputs(),
            r#"[{"type": "string", "name": "signal", "required": true}, {"type": "double", "name": "p_sell", "required": true}]"#
        );
        let loader = m
            .files()
            .into_iter()
            .find(|f| f.name == RPS_PYFUNC_FILE)
            .unwrap();
        let src = String::from_utf8(loader.bytes).unwrap();
        assert!(src.contains("def _load_pyfunc(data_path):"));
        let logged: serde_json::Value = serde_json::from_str(&m.log_model_json()).unwrap();
        assert_eq!(
            logged["flavors"]["python_function"]["loader_module"],
            "rps_pyfunc"
        );
        assert_eq!(logged["flavors"]["python_function"]["code"], "code");

        let dir = tempfile::tempdir().unwrap();
        m.write_dir(dir.path()).unwrap();
        assert!(dir.path().join(RPS_PYFUNC_FILE).is_file());

        let m = m.with_input_example(vec![vec![0.5], vec![f64::NAN]]);
        assert!(
            m.mlmodel_yaml()
                .contains("saved_input_example_info:\n  artifact_path: input_example.json\n")
        );
        let example = m
            .files()
            .into_iter()
            .find(|f| f.name == "input_example.json")
            .unwrap();
        assert_eq!(
            String::from_utf8(example.bytes).unwrap(),
            r#"{"columns":["a"],"data":[[0.5],[null]]}"#
        );
    }

    #[test]
    fn rejects_non_json_models() {
        let e = XgboostModel::new(b"{L\x00".to_vec(), vec!["a".into()], "y");
        assert!(matches!(e, Err(MlflowError::InvalidArgument(_))));
        let e = XgboostModel::new(b"{}".to_vec(), vec!["a".into()], "y");
        assert!(matches!(e, Err(MlflowError::InvalidArgument(_))));
        let e = XgboostModel::new(
            br#"{"learner":{}}"#.to_vec(),
            vec!["a".into(), "a".into()],
            "y",
        );
        assert!(matches!(e, Err(MlflowError::InvalidArgument(_))));
    }
}

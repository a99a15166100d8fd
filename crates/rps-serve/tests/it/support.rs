//! Test support: one small model trained once per test binary on synthetic bars, tempdir
//! registries, a running server on 127.0.0.1:0 and an HTTP client.

#![allow(dead_code, clippy::unwrap_used)]

use rps_core::candle::{Candle, HOUR_MS, Interval};
use rps_core::params::{Params, TrainParams};
use rps_core::schema::FeatureSchema;
use rps_core::split::Split;
use rps_core::synthetic::{SyntheticParams, simulate};
use rps_model::{Rows, SignalModel, VolatilityModel};
use rps_serve::{Config, Server};
use rps_tracking::{LocalRegistry, ModelFiles, Registry, VersionInfo};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

pub const NAME: &str = "btc-volatility";
/// The signal model's registered name (`train.signal_model_name`).
pub const SIGNAL_NAME: &str = "btc-signal";
pub const TOKEN: &str = "test-token";

/// The model, its schema and some realistic (all-finite) feature rows from the test split.
pub struct Trained {
    pub model: VolatilityModel,
    /// A Buy/Hold/Sell model on the same rows (`train.task: signal`).
    pub signal: SignalModel,
    pub schema: FeatureSchema,
    pub rows: Vec<Vec<f64>>,
}

pub fn trained() -> &'static Trained {
    static T: OnceLock<Trained> = OnceLock::new();
    T.get_or_init(train)
}

fn train() -> Trained {
    let bars: Vec<Candle> = simulate(&SyntheticParams::default(), Interval::H1, 0, 2000 * HOUR_MS);
    // The same features, target, split and reference statistics as the transform stage.
    let params = Params::default();
    let (ds, schema) = rps_transform::transform(&params, &bars, "synthetic-42").unwrap();
    let frame = &ds.frame;
    let (tr, va, te) = (
        ds.rows(Split::Train),
        ds.rows(Split::Validation),
        ds.rows(Split::Test),
    );
    let ys = |ix: &[usize]| -> Vec<f64> { ix.iter().map(|&i| frame.target[i]).collect() };
    let mut p = TrainParams {
        num_boost_round: 50,
        early_stopping_rounds: 0,
        ..TrainParams::default()
    };
    p.xgboost.insert("eta".to_owned(), json!(0.1));
    let (xt, xv) = (
        Rows::gather(&frame.columns, &tr),
        Rows::gather(&frame.columns, &va),
    );
    let (model, _) = VolatilityModel::train(
        &p,
        &frame.names,
        params.target.floor,
        (&xt, &ys(&tr)),
        (&xv, &ys(&va)),
    )
    .unwrap();
    // The signal task's model: the same feature rows, labels from the closes (one label rule).
    let cols = rps_transform::signal_columns(&params, &bars, &frame.ts).unwrap();
    let labelled = |ix: &[usize]| -> (Rows, Vec<rps_core::signal::Signal>) {
        let (ix, y): (Vec<usize>, Vec<_>) = ix
            .iter()
            .filter_map(|&i| cols.labels[i].map(|l| (i, l)))
            .unzip();
        (Rows::gather(&frame.columns, &ix), y)
    };
    let (st, sv) = (labelled(&tr), labelled(&va));
    let (signal, _) = SignalModel::train(
        &p,
        &params.signal,
        &frame.names,
        (&st.0, &st.1),
        (&sv.0, &sv.1),
    )
    .unwrap();
    let rows: Vec<Vec<f64>> = te
        .iter()
        .map(|&i| frame.row(i))
        .filter(|r| r.iter().all(|v| v.is_finite()))
        .take(200)
        .collect();
    assert!(rows.len() >= 50, "enough finite test rows");
    Trained {
        model,
        signal,
        schema,
        rows,
    }
}

/// A tempdir registry.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub registry: LocalRegistry,
}

impl Fixture {
    /// An empty registry.
    pub fn empty() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let registry = LocalRegistry::new(rps_store::open(dir.path().to_str().unwrap()).unwrap());
        Self { dir, registry }
    }

    /// A registry whose champion is version 1.
    pub fn with_champion() -> Self {
        let f = Self::empty();
        let v = f.register();
        f.promote(v);
        f
    }

    pub fn files() -> ModelFiles {
        let t = trained();
        ModelFiles::from_model(&t.model, &t.schema).unwrap()
    }

    /// Register the trained model as a new version.
    pub fn register(&self) -> u32 {
        self.register_files(&Self::files())
    }

    pub fn register_files(&self, files: &ModelFiles) -> u32 {
        self.register_as(NAME, files)
    }

    /// Register the signal model as a new version of [`SIGNAL_NAME`] and make it its champion.
    pub fn register_signal_champion(&self) -> u32 {
        let t = trained();
        let files = ModelFiles::from_signal_model(&t.signal, &t.schema).unwrap();
        let v = self.register_as(SIGNAL_NAME, &files);
        self.registry.set_alias(SIGNAL_NAME, "champion", v).unwrap();
        v
    }

    pub fn register_as(&self, name: &str, files: &ModelFiles) -> u32 {
        let info = VersionInfo {
            name: name.to_owned(),
            version: 0,
            created_at: "2026-01-01T00:00:00Z".to_owned(),
            run_id: "0123456789abcdef0123456789abcdef".to_owned(),
            data_hash: "synthetic-42".to_owned(),
            git_commit: "test".to_owned(),
            // The keys rps-train records.
            metrics: BTreeMap::from([
                ("validation_qlike".to_owned(), 0.123),
                ("validation_rmse".to_owned(), 0.001),
            ]),
        };
        self.registry.register(files, info).unwrap()
    }

    pub fn promote(&self, version: u32) {
        self.registry.set_alias(NAME, "champion", version).unwrap();
    }

    pub fn path(&self) -> String {
        self.dir.path().to_str().unwrap().to_owned()
    }

    /// Config for this registry on 127.0.0.1:0 with the test token.
    pub fn config(&self) -> Config {
        let mut c = Config::for_registry(&self.path());
        c.bind = "127.0.0.1:0".to_owned();
        c.token = Some(TOKEN.to_owned());
        c.workers = Some(2);
        c
    }

    pub fn start(&self) -> Server {
        Server::spawn(self.config()).unwrap()
    }
}

pub fn client() -> reqwest::blocking::Client {
    // A fresh connection per request: after an error answered before the body was read (413),
    // the server closes the connection, and a pooled client racing that close would see
    // `IncompleteMessage` on its next request — a client-side race, not a server failure.
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(20))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

/// Row `i` of the sample as a JSON object by feature name.
pub fn row_object(i: usize) -> Map<String, Value> {
    let t = trained();
    t.schema
        .features
        .iter()
        .zip(&t.rows[i % t.rows.len()])
        .map(|(n, v)| (n.clone(), json!(v)))
        .collect()
}

pub fn row_array(i: usize) -> Vec<f64> {
    let t = trained();
    t.rows[i % t.rows.len()].clone()
}

/// What the model predicts for row `i` locally.
pub fn expected(i: usize) -> f64 {
    #[allow(clippy::cast_possible_truncation)]
    let row: Vec<f32> = row_array(i).iter().map(|v| *v as f32).collect();
    trained().model.predict_one(&row).unwrap()
}

/// POST JSON to `/predict` (with an optional query string).
pub fn predict(
    c: &reqwest::blocking::Client,
    server: &Server,
    query: &str,
    body: &Value,
) -> reqwest::blocking::Response {
    c.post(format!("{}/predict{query}", server.url()))
        .json(body)
        .send()
        .unwrap()
}

/// Assert the response is a JSON error with `status` and `code`; returns the message.
pub fn expect_error(resp: reqwest::blocking::Response, status: u16, code: &str) -> String {
    assert_eq!(resp.status().as_u16(), status, "status");
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    assert!(ct.starts_with("application/json"), "content type {ct}");
    let body: Value = resp.json().unwrap();
    assert_eq!(body["error"]["code"], code, "{body}");
    body["error"]["message"].as_str().unwrap().to_owned()
}

//! What the streaming tests against real servers share: a database and topic per test, a small
//! trained model in a local registry, the `rps-stream` binary driven as an operator would.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr
)]

use rps_core::params::Params;
use rps_core::split::Split;
use rps_model::{Rows, SignalModel, VolatilityModel};
use rps_tracking::{LocalRegistry, ModelFiles, Registry, VersionInfo};
use std::path::PathBuf;
use std::process::{Command, Output};

pub const BARS: usize = 1000;
pub const SERVERS: &str = "needs PostgreSQL and Kafka (tansu): crates/rps-stream/tests/servers.sh";

pub struct Env {
    pub _dir: tempfile::TempDir,
    pub params: PathBuf,
    pub home: PathBuf,
    pub brokers: String,
    pub base_url: String,
    pub topic: String,
    pub name: String,
}

/// The Coinbase 2018 fixture (data/sample/README.md): a year without gaps, read as `BTC-USD`
/// with [`coinbase_columns`].
pub fn sample() -> String {
    concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../data/sample/btc_usd_1h_coinbase_2018.csv"
    )
    .to_owned()
}

/// The column mapping of [`sample`]'s layout.
pub fn coinbase_columns() -> rps_core::params::ColumnMapping {
    serde_yaml::from_str(
        "{timestamp: timestamp_utc, open: open, high: high, low: low, close: close, volume: volume_btc}",
    )
    .unwrap()
}

pub fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} not set: run {SERVERS}"))
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Run SQL on database `db` of the test server; rows as strings.
pub fn sql(base: &str, db: &str, q: &str) -> Vec<Vec<Option<String>>> {
    let url = with_db(base, db);
    rt().block_on(async {
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .expect("connect to the test PostgreSQL");
        tokio::spawn(conn);
        let msgs = client.simple_query(q).await.expect(q);
        msgs.into_iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => {
                    Some((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect())
                }
                _ => None,
            })
            .collect()
    })
}

pub fn count(e: &Env, db: &str, q: &str) -> i64 {
    sql(&e.base_url, db, q)[0][0]
        .as_deref()
        .unwrap()
        .parse()
        .unwrap()
}

pub fn with_db(base: &str, db: &str) -> String {
    let (head, _) = base.rsplit_once('/').expect("URL ends with /database");
    format!("{head}/{db}")
}

/// The small model of these tests, trained on the first `BARS` sample bars.
pub fn train(params: &Params, seed: i64) -> (ModelFiles, VolatilityModel) {
    let mut bars = rps_store::import::read_file(&params.data.file).unwrap();
    rps_core::candle::sort_dedup(&mut bars);
    bars.truncate(BARS);
    let (ds, schema) = rps_transform::transform(params, &bars, "test").unwrap();
    let f = &ds.frame;
    let (tr, va) = (ds.rows(Split::Train), ds.rows(Split::Validation));
    let y = |idx: &[usize]| idx.iter().map(|&i| f.target[i]).collect::<Vec<f64>>();
    let mut tp = params.train.clone();
    tp.xgboost
        .insert("seed".to_owned(), serde_json::json!(seed));
    let (model, _) = VolatilityModel::train(
        &tp,
        &schema.features,
        params.target.floor,
        (&Rows::gather(&f.columns, &tr), &y(&tr)),
        (&Rows::gather(&f.columns, &va), &y(&va)),
    )
    .unwrap();
    (ModelFiles::from_model(&model, &schema).unwrap(), model)
}

/// The first `BARS` sample bars, their batch features and a small Buy/Hold/Sell model.
pub fn train_signal(
    params: &Params,
) -> (ModelFiles, SignalModel, rps_core::features::FeatureFrame) {
    let mut bars = rps_store::import::read_file(&params.data.file).unwrap();
    rps_core::candle::sort_dedup(&mut bars);
    bars.truncate(BARS);
    let (ds, schema) = rps_transform::transform(params, &bars, "test").unwrap();
    let cols = rps_transform::signal_columns(params, &bars, &ds.frame.ts).unwrap();
    let f = &ds.frame;
    let labelled = |which: Split| -> (Rows, Vec<rps_core::signal::Signal>) {
        let (ix, y): (Vec<usize>, Vec<_>) = ds
            .rows(which)
            .into_iter()
            .filter_map(|i| cols.labels[i].map(|l| (i, l)))
            .unzip();
        (Rows::gather(&f.columns, &ix), y)
    };
    let (t, v) = (labelled(Split::Train), labelled(Split::Validation));
    let (model, _) = SignalModel::train(
        &params.train,
        &params.signal,
        &schema.features,
        (&t.0, &t.1),
        (&v.0, &v.1),
    )
    .unwrap();
    let files = ModelFiles::from_signal_model(&model, &schema).unwrap();
    (files, model, ds.frame)
}

pub fn register(e: &Env, files: &ModelFiles, alias: &str) -> u32 {
    register_as(e, "btc-volatility", files, alias)
}

pub fn register_as(e: &Env, name: &str, files: &ModelFiles, alias: &str) -> u32 {
    let registry =
        LocalRegistry::new(rps_store::open(e.home.join("registry").to_str().unwrap()).unwrap());
    let info = VersionInfo {
        name: name.to_owned(),
        version: 0,
        created_at: "2026-01-01T00:00:00Z".to_owned(),
        run_id: "test".to_owned(),
        data_hash: "test".to_owned(),
        git_commit: "test".to_owned(),
        metrics: Default::default(),
    };
    let v = registry.register(files, info).unwrap();
    registry.set_alias(name, alias, v).unwrap();
    v
}

pub fn set_alias(e: &Env, alias: &str, v: u32) {
    let registry =
        LocalRegistry::new(rps_store::open(e.home.join("registry").to_str().unwrap()).unwrap());
    registry.set_alias("btc-volatility", alias, v).unwrap();
}

/// A fresh database `rps_<name>` and topic, a home folder with a params file.
pub fn setup(name: &str) -> Env {
    setup_on(
        name,
        var("RPS_TEST_DATABASE_URL"),
        var("RPS_TEST_KAFKA_BROKERS"),
    )
}

/// [`setup`] against a given PostgreSQL (`postgres://…/postgres`) and brokers.
pub fn setup_on(name: &str, base_url: String, brokers: String) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let mut params: Params =
        rps_cli::params_from_str(include_str!("../../../../params.yaml")).unwrap();
    params.data.file.path = sample();
    params.data.file.columns = coinbase_columns();
    params.data.symbol = "BTC-USD".to_owned();
    params.train.num_boost_round = 40;
    params.train.power_grid = Vec::new();
    params.stream.batch_size = 50;
    let p = dir.path().join("params.yaml");
    std::fs::write(&p, serde_yaml::to_string(&params).unwrap()).unwrap();
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let e = Env {
        params: p,
        home: dir.path().join("home"),
        _dir: dir,
        brokers,
        base_url,
        topic: format!("rps-test-{name}-{stamp}"),
        name: name.to_owned(),
    };
    for db in [e.db(""), e.db("_ref")] {
        sql(
            &e.base_url,
            "postgres",
            &format!("DROP DATABASE IF EXISTS {db}"),
        );
        sql(&e.base_url, "postgres", &format!("CREATE DATABASE {db}"));
    }
    e
}

impl Env {
    pub fn db(&self, suffix: &str) -> String {
        format!("rps_{}{suffix}", self.name)
    }

    pub fn params(&self) -> Params {
        serde_yaml::from_str(&std::fs::read_to_string(&self.params).unwrap()).unwrap()
    }

    pub fn command(&self, db: &str, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_rps-stream"));
        c.arg("--params")
            .arg(&self.params)
            .arg("--home")
            .arg(&self.home)
            .args(["--brokers", &self.brokers, "--topic", &self.topic])
            .args(["--database-url", &with_db(&self.base_url, db)])
            .args(args)
            .env_remove("DATABASE_URL")
            .env_remove("RPS_KAFKA_BROKERS")
            .env_remove("RPS_KAFKA_TOPIC");
        c
    }

    pub fn run(&self, db: &str, args: &[&str]) -> Output {
        let out = self.command(db, args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "rps-stream {args:?} failed:\n{err}");
        eprintln!("rps-stream {args:?}:\n{err}");
        out
    }

    pub fn produce(&self, extra: &[&str]) {
        let limit = BARS.to_string();
        let mut args = vec!["produce", "--limit", &limit];
        args.extend_from_slice(extra);
        self.run(&self.db(""), &args);
    }

    pub fn consume(&self, db: &str, extra: &[&str]) -> Output {
        let mut args = vec!["consume", "--idle-exit", "2"];
        args.extend_from_slice(extra);
        self.run(db, &args)
    }

    /// (model, version, alias, symbol, bar_time, task, volatility, median, lower_80, upper_80,
    /// predicted_at) of every row, sorted.
    pub fn rows(&self, db: &str) -> Vec<Vec<Option<String>>> {
        sql(
            &self.base_url,
            db,
            "SELECT model, version, alias, symbol, bar_time::text, task, volatility::text,
               median::text, lower_80::text, upper_80::text, predicted_at::text
             FROM predictions ORDER BY model, version, symbol, bar_time",
        )
    }
}

impl Env {
    /// (model, version, alias, symbol, bar_time, predicted_from, realized, forecast, qlike,
    /// log_error, covered_80, scored_at) of every score row, sorted.
    pub fn scores(&self, db: &str) -> Vec<Vec<Option<String>>> {
        sql(
            &self.base_url,
            db,
            "SELECT model, version, alias, symbol, bar_time::text, predicted_from::text,
               realized::text, forecast::text, qlike::text, log_error::text, covered_80::text,
               scored_at::text
             FROM scores ORDER BY model, version, symbol, bar_time",
        )
    }
}

pub fn without_predicted_at(rows: &[Vec<Option<String>>]) -> Vec<Vec<Option<String>>> {
    rows.iter().map(|r| r[..r.len() - 1].to_vec()).collect()
}

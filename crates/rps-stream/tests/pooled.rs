//! Issue #20, `train.pooling: pooled`: the consumer's live set for each symbol is the one
//! pooled model, predicting that symbol's rows with its own one-hot; a symbol the model was not
//! trained on is refused when the live set loads, never predicted.
#![allow(clippy::unwrap_used)]

use rps_core::candle::Interval;
use rps_core::params::Params;
use rps_core::schema::FeatureSchema;
use rps_model::VolatilityModel;
use rps_stream::live::{self, Binding};
use rps_tracking::{LocalRegistry, ModelFiles, Registry as _, VersionInfo};

const NAME: &str = "crypto-vol";
const SYMBOLS: [&str; 2] = rps_testkit::POOLED_SYMBOLS;

/// The pooled fixture of `rps-testkit` (also rps-serve's): the model, its schema and finite
/// test rows of AAA-USD's features.
fn pooled() -> (VolatilityModel, FeatureSchema, Vec<Vec<f64>>) {
    let p = rps_testkit::pooled();
    (p.model.clone(), p.schema.clone(), p.rows.clone())
}

fn binding(symbol: Option<&str>) -> Binding {
    Binding {
        symbol: symbol.map(str::to_owned),
        names: vec![NAME.to_owned()],
        interval: Interval::H1,
    }
}

#[test]
fn each_symbol_is_predicted_by_the_pooled_model_with_its_one_hot() {
    let (model, schema, rows) = pooled();
    let dir = tempfile::tempdir().unwrap();
    let registry = LocalRegistry::new(rps_store::open(dir.path().to_str().unwrap()).unwrap());
    let info = VersionInfo {
        name: NAME.to_owned(),
        version: 0,
        created_at: "2026-01-01T00:00:00Z".to_owned(),
        run_id: "run".to_owned(),
        data_hash: "synthetic".to_owned(),
        git_commit: "test".to_owned(),
        metrics: Default::default(),
    };
    let v = registry
        .register(&ModelFiles::from_model(&model, &schema).unwrap(), info)
        .unwrap();
    registry.set_alias(NAME, "champion", v).unwrap();
    let aliases = ["champion".to_owned()];
    let bindings: Vec<Binding> = SYMBOLS.iter().map(|s| binding(Some(s))).collect();
    let mut loaded = live::Loaded::default();
    let live = live::load_bound_sharing(&registry, &bindings, &aliases, &mut loaded).unwrap();
    assert_eq!(live.len(), 2, "one live model per symbol's binding");
    // One booster in memory for both symbols' bindings of the version, not a copy each.
    assert_eq!(loaded.len(), 1, "the version is read once");
    assert!(live::shares_model(&live[0], &live[1]));
    // The same version under a second alias is still one entry per binding.
    registry.set_alias(NAME, "challenger", v).unwrap();
    let both = ["champion".to_owned(), "challenger".to_owned()];
    let again = live::load_bound(&registry, &bindings, &both).unwrap();
    assert_eq!(again.len(), 2);
    assert_eq!(again[0].alias, "champion,challenger");
    assert!(live::shares_model(&again[0], &again[1]));
    for row in &rows {
        let mut got = Vec::new();
        for (m, symbol) in live.iter().zip(SYMBOLS) {
            assert!(m.serves(symbol) && !m.serves(SYMBOLS[1 - got.len()]));
            let rps_model::Forecast::Volatility(f) = m.predict(row).unwrap() else {
                panic!("a volatility model")
            };
            // The inputs as training laid them out: the features, then the symbol's one-hot.
            let cols: Vec<Vec<f64>> = row.iter().map(|v| vec![*v]).collect();
            let x = rps_core::pooling::with_one_hot(&cols, 1, &schema.symbols, symbol).unwrap();
            #[allow(clippy::cast_possible_truncation)]
            let x: Vec<f32> = x.iter().map(|c| c[0] as f32).collect();
            assert_eq!(f.mean, model.predict_one(&x).unwrap(), "{symbol}");
            got.push(f.mean);
        }
        assert!(
            (got[1] / got[0] - 1.0).abs() > 0.05,
            "the one-hot changes the forecast: {got:?}"
        );
    }
    // A symbol the model was not trained on, or no symbol at all: refused at load.
    for (b, want) in [
        (binding(Some("CCC-USD")), "cannot forecast \"CCC-USD\""),
        (binding(None), "needs the symbol of each row"),
    ] {
        let err = live::load_bound(&registry, &[b], &aliases).unwrap_err();
        assert!(err.to_string().contains(want), "{err}");
        assert_eq!(rps_cli::StageError::exit_code(&err), rps_cli::exit::CONFIG);
    }
}

/// `rps stream reconcile --symbol S` binds S when params.yaml lists several symbols, so that a
/// pooled model loads with S's one-hot (before, the binding had no symbol and a pooled model was
/// refused); with one symbol, no symbol, as before.
#[test]
fn a_one_symbol_command_binds_its_symbol_when_several_are_listed() {
    let several = rps_cli::param_set_from_str(
        "data:\n  symbols: {AAA-USD: {}, BBB-USD: {}}\ntrain:\n  pooling: pooled\n  model_name: crypto-vol\n",
        "params.yaml",
        &[],
        None,
    )
    .unwrap();
    for symbol in SYMBOLS {
        let b = live::binding(several.get(symbol).unwrap());
        assert_eq!(b.symbol.as_deref(), Some(symbol));
        assert_eq!(b.names[0], NAME);
    }
    let one = Params::default();
    assert_eq!(live::binding(&one).symbol, None);
}

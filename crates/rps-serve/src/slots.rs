//! Which models the service serves: one registered name for every symbol, or, when params.yaml
//! lists several symbols (`data.symbols`), one slot per symbol with that symbol's own names.
//!
//! | `--params` lists | `--model-name` | served |
//! | --- | --- | --- |
//! | nothing (no `--params`) | given or `btc-volatility` | that name, for every symbol |
//! | one symbol | given, else its `train.model_name` | that name, for every symbol |
//! | several symbols | refused (exit 3) | each symbol's `train.model_name`, for that symbol only; `--symbol` narrows the list |

use crate::config::{Config, DEFAULT_MODEL_NAME, DEFAULT_SIGNAL_MODEL_NAME};
use crate::error::ServeError;
use crate::state::Slot;
use std::path::Path;

/// The slots to serve and whether each answers its own symbol only. Reads `--params` (the
/// whole file, validated as the stages validate it) and sets `config.monitor` from it.
pub fn resolve(config: &mut Config) -> Result<(Vec<Slot>, bool), ServeError> {
    let Some(path) = config.params.clone() else {
        if !config.symbols.is_empty() {
            return Err(ServeError::Config(
                "--symbol picks symbols of params.yaml's data.symbols: pass --params too"
                    .to_owned(),
            ));
        }
        return Ok((vec![single(config, None, None, None)], false));
    };
    let set = rps_cli::load_param_set(Path::new(&path), &[], None)
        .map_err(|e| ServeError::Config(e.to_string()))?;
    config.monitor = set.shared().monitor.clone();
    let listed = set.symbols();
    for s in &config.symbols {
        if !listed.contains(&s.as_str()) {
            return Err(ServeError::Config(format!(
                "--symbol {s:?} is not in {path}, which lists {}",
                listed.join(", ")
            )));
        }
    }
    if listed.len() == 1 {
        let p = set.shared();
        return Ok((
            vec![single(
                config,
                Some(p.data.symbol.clone()),
                Some(&p.train.model_name),
                Some(&p.train.signal_model_name),
            )],
            false,
        ));
    }
    if let Some(name) = &config.model_name {
        return Err(ServeError::Config(format!(
            "--model-name {name:?} serves one model, but {path} lists {} symbols ({}), each with \
             its own registered name: drop --model-name (and RPS_MODEL_NAME), or pass --symbol",
            listed.len(),
            listed.join(", ")
        )));
    }
    let slots = set
        .iter()
        .filter(|p| config.symbols.is_empty() || config.symbols.contains(&p.data.symbol))
        .map(|p| {
            Slot::new(
                Some(p.data.symbol.clone()),
                p.train.model_name.clone(),
                config
                    .signal_model_name
                    .clone()
                    .unwrap_or_else(|| p.train.signal_model_name.clone()),
            )
        })
        .collect();
    Ok((slots, true))
}

/// The one slot of a service that serves one model for every symbol.
fn single(
    config: &Config,
    symbol: Option<String>,
    model: Option<&String>,
    signal: Option<&String>,
) -> Slot {
    Slot::new(
        symbol,
        config
            .model_name
            .clone()
            .or_else(|| model.cloned())
            .unwrap_or_else(|| DEFAULT_MODEL_NAME.to_owned()),
        config
            .signal_model_name
            .clone()
            .or_else(|| signal.cloned())
            .unwrap_or_else(|| DEFAULT_SIGNAL_MODEL_NAME.to_owned()),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn config_with(params: &str) -> (tempfile::TempDir, Config) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("params.yaml");
        std::fs::write(&p, params).unwrap();
        let mut c = Config::for_registry("x");
        c.params = Some(p.to_str().unwrap().to_owned());
        (dir, c)
    }

    fn names(slots: &[Slot]) -> Vec<(Option<&str>, &str, &str)> {
        slots
            .iter()
            .map(|s| {
                (
                    s.symbol.as_deref(),
                    s.model_name.as_str(),
                    s.signal_model_name.as_str(),
                )
            })
            .collect()
    }

    #[test]
    fn without_params_one_model_serves_every_symbol() {
        let mut c = Config::for_registry("x");
        let (slots, per_symbol) = resolve(&mut c).unwrap();
        assert!(!per_symbol);
        assert_eq!(
            names(&slots),
            [(None, "btc-volatility", "btc-signal")].to_vec()
        );
        c.model_name = Some("m".to_owned());
        assert_eq!(resolve(&mut c).unwrap().0[0].model_name, "m");
        c.symbols = vec!["BTC-USD".to_owned()];
        let e = resolve(&mut c).unwrap_err().to_string();
        assert!(e.contains("pass --params"), "{e}");
    }

    #[test]
    fn one_symbol_takes_the_names_of_params_unless_given() {
        let (_d, mut c) = config_with(
            "data:\n  symbol: ETH-USD\ntrain:\n  model_name: eth-vol\nmonitor:\n  qlike_margin: 0.2\n",
        );
        let (slots, per_symbol) = resolve(&mut c).unwrap();
        assert!(!per_symbol);
        assert_eq!(
            names(&slots),
            [(Some("ETH-USD"), "eth-vol", "btc-signal")].to_vec()
        );
        assert_eq!(c.monitor.qlike_margin, 0.2);
        c.model_name = Some("other".to_owned());
        assert_eq!(resolve(&mut c).unwrap().0[0].model_name, "other");
    }

    #[test]
    fn several_symbols_get_a_slot_each_with_their_own_names() {
        let (_d, mut c) = config_with(
            "data:\n  symbols:\n    BTC-USD: {}\n    ETH-USD: {model_name: eth-volatility, signal_model_name: eth-signal}\n    SOL-USD: {}\ntrain:\n  model_name: '{symbol}-vol'\n  signal_model_name: '{symbol}-sig'\n",
        );
        let (slots, per_symbol) = resolve(&mut c).unwrap();
        assert!(per_symbol);
        assert_eq!(
            names(&slots),
            [
                (Some("BTC-USD"), "BTC-USD-vol", "BTC-USD-sig"),
                (Some("ETH-USD"), "eth-volatility", "eth-signal"),
                (Some("SOL-USD"), "SOL-USD-vol", "SOL-USD-sig"),
            ]
            .to_vec()
        );
        c.symbols = vec!["SOL-USD".to_owned(), "ETH-USD".to_owned()];
        let (slots, _) = resolve(&mut c).unwrap();
        // params.yaml's order, not the flag's.
        assert_eq!(
            slots
                .iter()
                .map(|s| s.symbol.as_deref().unwrap())
                .collect::<Vec<_>>(),
            ["ETH-USD", "SOL-USD"]
        );
        c.symbols = vec!["DOGE-USD".to_owned()];
        let e = resolve(&mut c).unwrap_err().to_string();
        assert!(
            e.contains("\"DOGE-USD\" is not in") && e.contains("SOL-USD"),
            "{e}"
        );
        c.symbols.clear();
        c.model_name = Some("btc-volatility".to_owned());
        let e = resolve(&mut c).unwrap_err().to_string();
        assert!(e.contains("drop --model-name"), "{e}");
    }

    #[test]
    fn a_bad_params_file_is_a_config_error_naming_the_key() {
        let (_d, mut c) = config_with("monitor:\n  coverage_low: 0.9\n");
        let e = resolve(&mut c).unwrap_err();
        assert_eq!(e.exit_code(), rps_cli::exit::CONFIG);
        assert!(e.to_string().contains("coverage"), "{e}");
        let (_d, mut c) = config_with("monitor:\n  margin: 0.1\n");
        let e = resolve(&mut c).unwrap_err().to_string();
        assert!(e.contains("margin"), "{e}");
        c.params = Some("/nonexistent/params.yaml".to_owned());
        let e = resolve(&mut c).unwrap_err().to_string();
        assert!(e.contains("cannot read"), "{e}");
        let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/../../params.yaml");
        c.params = Some(shipped.to_owned());
        let (slots, per_symbol) = resolve(&mut c).unwrap();
        assert!(!per_symbol);
        assert_eq!(slots[0].model_name, "btc-volatility");
    }
}

//! Reading `params.yaml`: the file, then the `--set` overrides, then the per-symbol entries of
//! `data.symbols`, then the one validation ([`rps_core::validate`]) of every symbol's set, all
//! before a stage does anything. A bad value anywhere, even in another symbol's entry, is a
//! configuration error (exit 3) naming its key.
//!
//! `data.symbols` maps each symbol to what differs for it from the `data:` section (its source,
//! interval, file and column mapping, Binance symbol, CoinCap slug, span) and, optionally, its
//! registry names (`model_name`, `signal_model_name`). Each symbol's parameters are the file with
//! that entry merged into `data:` (mappings key by key, anything else replaced) and
//! `data.symbol` set to the symbol. Without `data.symbols`, `data.symbol` is the one symbol.
//! `{symbol}` in `train.model_name` or `train.signal_model_name` is replaced by the symbol.

use rps_core::params::Params;
use serde_yaml::{Mapping, Value};
use std::path::Path;

/// The problem with a parameter file.
#[derive(Debug, thiserror::Error)]
pub enum ParamsError {
    #[error("cannot read parameter file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid parameter file {path}: {source}")]
    Parse {
        path: String,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("bad --home {home:?}")]
    Home {
        home: String,
        #[source]
        source: rps_store::StoreError,
    },
    #[error("bad --set {arg:?}: {problem}")]
    Override { arg: String, problem: String },
    #[error("invalid parameter file {path}{with_sets}: {source}")]
    Invalid {
        path: String,
        /// ` with --set …` when overrides were applied, and the symbol whose set is invalid.
        with_sets: String,
        #[source]
        source: rps_core::validate::InvalidParams,
    },
    #[error("invalid parameter file {path}{with_sets}: {problem}")]
    Symbols {
        path: String,
        with_sets: String,
        problem: String,
    },
    #[error("--symbol {symbol:?} is not in {path}, which lists {listed}")]
    UnknownSymbol {
        symbol: String,
        path: String,
        listed: String,
    },
    #[error(
        "{path} lists several symbols under data.symbols ({listed}): pass --symbol (or set RPS_SYMBOL) to pick the one this run is for"
    )]
    NoSymbol { path: String, listed: String },
}

/// The parameters of every symbol a parameter file lists, and the one this run is for.
#[derive(Debug, Clone)]
pub struct ParamSet {
    path: String,
    /// One set per symbol (`data.symbol` set), in the file's order; never empty.
    sets: Vec<Params>,
    /// Index into `sets` of the `--symbol` given.
    selected: Option<usize>,
}

impl ParamSet {
    /// The symbols, in the file's order.
    pub fn symbols(&self) -> Vec<&str> {
        self.sets.iter().map(|p| p.data.symbol.as_str()).collect()
    }

    /// Every symbol's parameters, in the file's order.
    pub fn iter(&self) -> impl Iterator<Item = &Params> {
        self.sets.iter()
    }

    pub fn get(&self, symbol: &str) -> Option<&Params> {
        self.sets.iter().find(|p| p.data.symbol == symbol)
    }

    /// The parameters of the symbol this run is for: the `--symbol` given, or the only one.
    pub fn selected(&self) -> Result<&Params, ParamsError> {
        match (self.selected, self.sets.as_slice()) {
            (Some(i), _) => Ok(&self.sets[i]),
            (None, [only]) => Ok(only),
            (None, _) => Err(ParamsError::NoSymbol {
                path: self.path.clone(),
                listed: self.symbols().join(", "),
            }),
        }
    }

    pub fn into_selected(mut self) -> Result<Params, ParamsError> {
        self.selected()?;
        let i = self.selected.unwrap_or(0);
        Ok(self.sets.swap_remove(i))
    }

    /// For commands that work across symbols and read only the sections every symbol shares
    /// (everything but `data:` and the registry names): the selected symbol's set, else the first.
    pub fn shared(&self) -> &Params {
        &self.sets[self.selected.unwrap_or(0)]
    }
}

/// Read `params.yaml` (no overrides) and validate it; with several symbols, `--symbol` is
/// needed ([`load_param_set`] reads them all). Every section and key is optional (defaults
/// apply); unknown keys fail.
pub fn load_params(path: &Path) -> Result<Params, ParamsError> {
    load_params_with(path, &[])
}

/// [`load_params`] with `section.key=value` overrides.
pub fn load_params_with(path: &Path, sets: &[String]) -> Result<Params, ParamsError> {
    load_param_set(path, sets, None)?.into_selected()
}

/// Read `params.yaml`, apply `section.key=value` overrides, resolve each symbol of
/// `data.symbols` and validate every symbol's set. The overrides are parsed as YAML and put into
/// the file's tree before it is typed, so they are refused exactly as the same value in the file
/// would be (unknown key, wrong type, bad range). `symbol` (`--symbol`) must be one of the
/// symbols.
pub fn load_param_set(
    path: &Path,
    sets: &[String],
    symbol: Option<&str>,
) -> Result<ParamSet, ParamsError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ParamsError::Read {
        path: shown.clone(),
        source,
    })?;
    param_set_from_str(&text, &shown, sets, symbol)
}

/// The parameters of the one symbol a params.yaml text lists (its `data.symbol`, or the single
/// entry of `data.symbols`), resolved and validated as a stage reads them: for tests and tools
/// that hold the text, not a file.
pub fn params_from_str(text: &str) -> Result<Params, ParamsError> {
    param_set_from_str(text, "params.yaml", &[], None)?.into_selected()
}

/// [`load_param_set`] on the text of a parameter file (`shown` names it in errors).
pub fn param_set_from_str(
    text: &str,
    shown: &str,
    sets: &[String],
    symbol: Option<&str>,
) -> Result<ParamSet, ParamsError> {
    let shown = shown.to_owned();
    let with_sets = if sets.is_empty() {
        String::new()
    } else {
        format!(" with --set {}", sets.join(" --set "))
    };
    let mut tree: Value = if text.trim().is_empty() {
        Value::Mapping(Mapping::new())
    } else {
        serde_yaml::from_str(text).map_err(|source| ParamsError::Parse {
            path: shown.clone(),
            source,
        })?
    };
    for arg in sets {
        apply_set(&mut tree, arg)?;
    }
    for arg in sets {
        shadowed_set(&tree, arg)?;
    }
    let trees = per_symbol(tree).map_err(|problem| ParamsError::Symbols {
        path: shown.clone(),
        with_sets: with_sets.clone(),
        problem,
    })?;
    let listed: Vec<String> = trees.iter().filter_map(|(s, _)| s.clone()).collect();
    let mut resolved = Vec::with_capacity(trees.len());
    for (symbol, tree) in trees {
        let context = symbol
            .as_deref()
            .map(|s| format!(" (data.symbols.{s})"))
            .unwrap_or_default();
        let mut params: Params =
            serde_yaml::from_value(tree).map_err(|source| ParamsError::Parse {
                path: format!("{shown}{with_sets}{context}"),
                source,
            })?;
        name_models(&mut params);
        rps_core::validate::params(&params).map_err(|source| ParamsError::Invalid {
            path: shown.clone(),
            with_sets: format!("{with_sets}{context}"),
            source,
        })?;
        // What a stage gets is this symbol's set alone; the list says which others exist.
        params.data.symbols.clear();
        params.data.listed.clone_from(&listed);
        resolved.push(params);
    }
    rps_core::validate::symbol_sets(&resolved).map_err(|problem| ParamsError::Symbols {
        path: shown.clone(),
        with_sets: with_sets.clone(),
        problem,
    })?;
    let mut set = ParamSet {
        path: shown,
        sets: resolved,
        selected: None,
    };
    if let Some(wanted) = symbol.filter(|s| !s.is_empty()) {
        let i = set
            .sets
            .iter()
            .position(|p| p.data.symbol == wanted)
            .ok_or_else(|| ParamsError::UnknownSymbol {
                symbol: wanted.to_owned(),
                path: set.path.clone(),
                listed: if listed.is_empty() {
                    format!(
                        "data.symbol {} only (list several under data.symbols)",
                        set.sets[0].data.symbol
                    )
                } else {
                    format!("data.symbols {}", listed.join(", "))
                },
            })?;
        set.selected = Some(i);
    }
    Ok(set)
}

/// The entry keys that name registry models (merged into `train:`, not `data:`).
const MODEL_KEYS: [&str; 2] = ["model_name", "signal_model_name"];

/// The file's tree once per symbol: `(None, tree)` without `data.symbols`, else each entry
/// merged into a copy. `Err` says what is wrong with `data.symbols`.
fn per_symbol(tree: Value) -> Result<Vec<(Option<String>, Value)>, String> {
    let entries = match tree.get("data").and_then(|d| d.get("symbols")) {
        None | Some(Value::Null) => return Ok(vec![(None, tree)]),
        Some(Value::Mapping(m)) if m.is_empty() => return Ok(vec![(None, tree)]),
        Some(Value::Mapping(m)) => m.clone(),
        Some(_) => {
            return Err("data.symbols must map each symbol to its settings, e.g. \
                 {BTC-USDT: {}, ETH-USD: {interval: 30m, file: {path: eth.csv}}}"
                .to_owned());
        }
    };
    if tree.get("data").and_then(|d| d.get("symbol")).is_some() {
        return Err(
            "data.symbol and data.symbols are both set: list every symbol under data.symbols \
             (--symbol picks one)"
                .to_owned(),
        );
    }
    let mut out = Vec::with_capacity(entries.len());
    for (key, entry) in entries {
        let Value::String(symbol) = key else {
            return Err(format!(
                "data.symbols: the key {key:?} is not a symbol name (a string)"
            ));
        };
        let entry = match entry {
            Value::Null => Mapping::new(),
            Value::Mapping(m) => m,
            _ => {
                return Err(format!(
                    "data.symbols.{symbol} must be a mapping of that symbol's data: settings \
                     ({{}} for none)"
                ));
            }
        };
        let mut one = tree.clone();
        let root = one
            .as_mapping_mut()
            .expect("data.symbols exists, so the root is a mapping");
        for (k, v) in entry {
            let name = k.as_str().unwrap_or_default().to_owned();
            if name == "symbol" || name == "symbols" {
                return Err(format!(
                    "data.symbols.{symbol}.{name} is not allowed: the entry's key is its symbol"
                ));
            }
            let section = if MODEL_KEYS.contains(&name.as_str()) {
                "train"
            } else {
                "data"
            };
            let target = root
                .entry(Value::String(section.to_owned()))
                .or_insert_with(|| Value::Mapping(Mapping::new()));
            if target.is_null() {
                *target = Value::Mapping(Mapping::new());
            }
            let Some(target) = target.as_mapping_mut() else {
                return Err(format!("`{section}` must be a section (a mapping)"));
            };
            match target.get_mut(&k) {
                Some(old) => merge(old, v),
                None => {
                    target.insert(k, v);
                }
            }
        }
        let data = root
            .get_mut("data")
            .and_then(Value::as_mapping_mut)
            .expect("data.symbols exists");
        data.insert(Value::from("symbol"), Value::String(symbol.clone()));
        out.push((Some(symbol), one));
    }
    Ok(out)
}

/// Merge `over` into `base`: mappings key by key, anything else replaced.
fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Mapping(b), Value::Mapping(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(old) => merge(old, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (base, over) => *base = over,
    }
}

/// `{symbol}` in the registry names becomes the symbol.
fn name_models(p: &mut Params) {
    let symbol = p.data.symbol.clone();
    for name in [&mut p.train.model_name, &mut p.train.signal_model_name] {
        if name.contains("{symbol}") {
            *name = name.replace("{symbol}", &symbol);
        }
    }
}

/// A `--set data.KEY=…` that a symbol's entry also sets would be silently overridden by the
/// entry: refuse it, naming the key that wins.
fn shadowed_set(tree: &Value, arg: &str) -> Result<(), ParamsError> {
    let key = arg.split_once('=').map_or(arg, |(k, _)| k).trim();
    let Some(rest) = key.strip_prefix("data.") else {
        return Ok(());
    };
    if rest == "symbols" || rest.starts_with("symbols.") {
        return Ok(());
    }
    let Some(Value::Mapping(entries)) = tree.get("data").and_then(|d| d.get("symbols")) else {
        return Ok(());
    };
    let parts: Vec<&str> = rest.split('.').collect();
    for (symbol, entry) in entries {
        let mut node = entry;
        let mut depth = 0;
        let sets_it = loop {
            if depth == parts.len() {
                break true;
            }
            match node {
                Value::Mapping(m) => match m.get(parts[depth]) {
                    Some(next) => {
                        node = next;
                        depth += 1;
                    }
                    None => break false,
                },
                // The entry sets a value where the override expects a section.
                _ => break depth > 0,
            }
        };
        if sets_it {
            let symbol = symbol.as_str().unwrap_or_default();
            let winner = format!("data.symbols.{symbol}.{}", parts[..depth].join("."));
            return Err(ParamsError::Override {
                arg: arg.to_owned(),
                problem: format!(
                    "{winner} is set too and would win for {symbol}: --set {winner}=… instead"
                ),
            });
        }
    }
    Ok(())
}

/// Put one `a.b.c=value` into the YAML tree, creating the sections on the way.
fn apply_set(tree: &mut Value, arg: &str) -> Result<(), ParamsError> {
    let bad = |problem: &str| ParamsError::Override {
        arg: arg.to_owned(),
        problem: problem.to_owned(),
    };
    let (key, value) = arg
        .split_once('=')
        .ok_or_else(|| bad("expected SECTION.KEY=VALUE, e.g. train.xgboost.eta=0.1"))?;
    let path: Vec<&str> = key.trim().split('.').collect();
    if path.iter().any(|p| p.is_empty()) {
        return Err(bad("the key has an empty part"));
    }
    let value: Value = if value.trim().is_empty() {
        Value::String(String::new())
    } else {
        serde_yaml::from_str(value).map_err(|e| bad(&format!("the value is not YAML: {e}")))?
    };
    let mut node = tree;
    for (i, part) in path.iter().enumerate() {
        if node.is_null() {
            *node = Value::Mapping(Mapping::new());
        }
        let map = node.as_mapping_mut().ok_or_else(|| {
            bad(&format!(
                "`{}` is a value, not a section",
                path[..i].join(".")
            ))
        })?;
        let k = Value::String((*part).to_owned());
        if i + 1 == path.len() {
            map.insert(k, value);
            return Ok(());
        }
        node = map.entry(k).or_insert(Value::Mapping(Mapping::new()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_file_errors_name_the_file_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("params.yaml");
        assert!(
            load_params(&p)
                .unwrap_err()
                .to_string()
                .contains("cannot read parameter file")
        );
        std::fs::write(&p, "train:\n  num_boost_rounds: 5\n").unwrap();
        let err = load_params(&p).unwrap_err().to_string();
        assert!(
            err.contains("num_boost_rounds") && err.contains("params.yaml"),
            "{err}"
        );
        std::fs::write(&p, "").unwrap();
        assert_eq!(load_params(&p).unwrap(), Params::default());
    }

    #[test]
    fn set_overrides_are_applied_and_checked_like_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("params.yaml");
        std::fs::write(&p, "train:\n  xgboost:\n    eta: 0.03\nsplit:\n  gap: 48\n").unwrap();
        let sets = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let got = load_params_with(
            &p,
            &sets(&[
                "train.xgboost.eta=0.1",
                "split.gap=72",
                "data.symbol=ETH-USD",
            ]),
        )
        .unwrap();
        assert_eq!(got.train.xgboost["eta"], serde_json::json!(0.1));
        assert_eq!(got.split.gap, 72);
        assert_eq!(got.data.symbol, "ETH-USD");
        // Typos, wrong types and bad ranges are refused as in the file, naming the key.
        let err = load_params_with(&p, &sets(&["train.num_boost_rounds=5"])).unwrap_err();
        assert!(err.to_string().contains("num_boost_rounds"), "{err}");
        let err = load_params_with(&p, &sets(&["split.gap=many"])).unwrap_err();
        assert!(matches!(err, ParamsError::Parse { .. }), "{err}");
        let err = load_params_with(&p, &sets(&["split.train=1.7"])).unwrap_err();
        assert!(
            matches!(err, ParamsError::Invalid { .. }) && err.to_string().contains("split.train"),
            "{err}"
        );
        let err = load_params_with(&p, &sets(&["split.gap"])).unwrap_err();
        assert!(matches!(err, ParamsError::Override { .. }), "{err}");
        let err = load_params_with(&p, &sets(&["split.gap.x=1"])).unwrap_err();
        assert!(err.to_string().contains("`split.gap` is a value"), "{err}");
    }

    #[test]
    fn an_invalid_file_is_a_config_error_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("params.yaml");
        std::fs::write(&p, "split:\n  train: 1.7\n").unwrap();
        let err = load_params(&p).unwrap_err();
        assert!(
            err.to_string()
                .contains("split.train: must lie in (0, 1), got 1.7"),
            "{err}"
        );
    }

    const TWO: &str = "data:
  source: file
  interval: 1h
  file:
    path: btc.csv
    columns: {timestamp: date, open: open, high: high, low: low, close: close, volume: volume}
  binance: {base_url: 'http://127.0.0.1:1', symbol: BTCUSDT}
  symbols:
    BTC-USDT: {}
    ETH-USD:
      interval: 30m
      file: {path: eth.csv, columns: {timestamp: Date, open: ETH.open}}
      binance: {symbol: ETHUSDT}
      model_name: eth-volatility
      signal_model_name: eth-signal
";

    fn write(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("params.yaml");
        std::fs::write(&p, text).unwrap();
        (dir, p)
    }

    #[test]
    fn each_symbol_is_the_file_with_its_entry_merged_into_data() {
        let (_d, p) = write(TWO);
        let set = load_param_set(&p, &[], None).unwrap();
        assert_eq!(set.symbols(), ["BTC-USDT", "ETH-USD"]);
        let btc = set.get("BTC-USDT").unwrap();
        assert_eq!(btc.data.file.path, "btc.csv");
        assert_eq!(btc.data.interval.to_string(), "1h");
        assert_eq!(btc.train.model_name, "btc-volatility");
        let eth = set.get("ETH-USD").unwrap();
        assert_eq!(eth.data.symbol, "ETH-USD");
        assert_eq!(eth.data.interval.to_string(), "30m");
        assert_eq!(eth.data.file.path, "eth.csv");
        // Mappings merge key by key: the entry's columns replace two, the rest come from data.
        assert_eq!(eth.data.file.columns.timestamp, "Date");
        assert_eq!(eth.data.file.columns.open, "ETH.open");
        assert_eq!(eth.data.file.columns.close, "close");
        assert_eq!(eth.data.binance.symbol, "ETHUSDT");
        assert_eq!(eth.data.binance.base_url, "http://127.0.0.1:1");
        assert_eq!(eth.train.model_name, "eth-volatility");
        assert_eq!(eth.train.signal_model_name, "eth-signal");
        assert_eq!(eth.data.listed, ["BTC-USDT", "ETH-USD"]);
        assert!(eth.data.is_multi_symbol() && eth.data.symbols.is_empty());
        // What a stage gets reads back as that symbol alone.
        let text = serde_yaml::to_string(eth).unwrap();
        assert_eq!(params_from_str(&text).unwrap().data.file.path, "eth.csv");
        // Several symbols and no --symbol: a per-symbol stage cannot guess.
        let err = set.selected().unwrap_err().to_string();
        assert!(
            err.contains("BTC-USDT, ETH-USD") && err.contains("--symbol"),
            "{err}"
        );
        let one = load_param_set(&p, &[], Some("ETH-USD")).unwrap();
        assert_eq!(one.into_selected().unwrap().data.file.path, "eth.csv");
        let err = load_param_set(&p, &[], Some("DOGE")).unwrap_err();
        assert!(
            matches!(err, ParamsError::UnknownSymbol { .. })
                && err.to_string().contains("BTC-USDT, ETH-USD"),
            "{err}"
        );
    }

    #[test]
    fn one_symbol_works_as_before_and_sets_reach_entries() {
        let (_d, p) = write("data:\n  symbol: BTC-USD\n");
        let set = load_param_set(&p, &[], None).unwrap();
        assert_eq!(set.symbols(), ["BTC-USD"]);
        assert_eq!(set.selected().unwrap().data.symbol, "BTC-USD");
        assert!(load_param_set(&p, &[], Some("BTC-USD")).is_ok());
        let err = load_param_set(&p, &[], Some("ETH-USD"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("data.symbol BTC-USD only"), "{err}");
        // A single entry under data.symbols needs no --symbol.
        let (_d, p) = write("data:\n  symbols:\n    SOL-USD: {}\n");
        assert_eq!(load_params(&p).unwrap().data.symbol, "SOL-USD");
        let (_d, p) = write(TWO);
        let sets = ["data.symbols.ETH-USD.file.path=other.csv".to_owned()];
        let set = load_param_set(&p, &sets, None).unwrap();
        assert_eq!(set.get("ETH-USD").unwrap().data.file.path, "other.csv");
        assert_eq!(set.get("BTC-USDT").unwrap().data.file.path, "btc.csv");
        // An override of a key an entry sets too would be silently lost for that symbol.
        let err = load_param_set(&p, &["data.file.path=x.csv".to_owned()], None).unwrap_err();
        assert!(
            err.to_string()
                .contains("data.symbols.ETH-USD.file.path is set too"),
            "{err}"
        );
        let err = load_param_set(&p, &["data.file=null".to_owned()], None).unwrap_err();
        assert!(
            err.to_string().contains("data.symbols.ETH-USD.file"),
            "{err}"
        );
        // Keys no entry sets are fine, and so is replacing the list itself.
        assert!(load_param_set(&p, &["data.file.format=csv".to_owned()], None).is_ok());
        let one = [
            "data.symbols={SOL-USD: {}}".to_owned(),
            "data.file.path=x.csv".to_owned(),
        ];
        let set = load_param_set(&p, &one, None).unwrap();
        assert_eq!(set.selected().unwrap().data.file.path, "x.csv");
    }

    #[test]
    fn symbol_placeholders_name_one_model_per_symbol() {
        let (_d, p) = write(
            "data:\n  symbols: {BTC-USDT: {}, ETH-USD: {}}\ntrain:\n  model_name: '{symbol}-volatility'\n  signal_model_name: '{symbol}-signal'\n",
        );
        let set = load_param_set(&p, &[], None).unwrap();
        assert_eq!(
            set.get("ETH-USD").unwrap().train.model_name,
            "ETH-USD-volatility"
        );
        assert_eq!(
            set.get("BTC-USDT").unwrap().train.signal_model_name,
            "BTC-USDT-signal"
        );
    }

    #[test]
    fn bad_symbol_lists_are_config_errors_naming_the_key() {
        let cases = [
            (
                "data:\n  symbols: {A: {}, B: {}}\n",
                "both register the model \"btc-volatility\"",
            ),
            (
                "data:\n  symbol: A\n  symbols: {A: {}}\n",
                "data.symbol and data.symbols are both set",
            ),
            (
                "data:\n  symbols: [A, B]\n",
                "data.symbols must map each symbol",
            ),
            (
                "data:\n  symbols: {A: 3}\n",
                "data.symbols.A must be a mapping",
            ),
            (
                "data:\n  symbols: {A: {symbol: B}}\n",
                "data.symbols.A.symbol is not allowed",
            ),
            ("data:\n  symbols: {A: {intervall: 1h}}\n", "intervall"),
            (
                "data:\n  symbols: {A: {}, B: {start: yesterday, model_name: b}}\n",
                "data.symbols.B",
            ),
            (
                "data:\n  symbols: {A: {}, 'B/C': {model_name: b}}\n",
                "data.symbol",
            ),
        ];
        for (text, want) in cases {
            let (_d, p) = write(text);
            let err = load_param_set(&p, &[], None).unwrap_err().to_string();
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn pooled_needs_two_symbols_one_model_name_and_the_volatility_task() {
        let (_d, p) = write(
            "data:\n  symbols: {BTC-USDT: {}, ETH-USD: {interval: 30m}}\ntrain:\n  pooling: pooled\n  model_name: crypto-volatility\n",
        );
        let set = load_param_set(&p, &[], None).unwrap();
        for s in set.iter() {
            assert_eq!(s.train.pooling, rps_core::params::Pooling::Pooled);
            assert_eq!(s.train.model_name, "crypto-volatility");
        }
        let err = load_params(&p).unwrap_err().to_string();
        assert!(
            err.contains("--symbol"),
            "a per-symbol stage still needs it: {err}"
        );
        let cases = [
            (
                "data:\n  symbols: {A: {}}\ntrain: {pooling: pooled}\n",
                "only A is listed",
            ),
            (
                "data:\n  symbol: A\ntrain: {pooling: pooled}\n",
                "only A is listed",
            ),
            (
                "data:\n  symbols: {A: {}, B: {}}\ntrain: {pooling: pooled, model_name: '{symbol}-vol'}\n",
                "A resolves train.model_name to \"A-vol\" and B to \"B-vol\"",
            ),
            (
                "data:\n  symbols: {A: {}, B: {signal_model_name: b}}\ntrain: {pooling: pooled}\n",
                "train.signal_model_name",
            ),
            (
                "data:\n  symbols: {A: {}, B: {bar: 4h, interval: 4h}}\ntrain: {pooling: pooled}\n",
                "same data.bar",
            ),
            (
                "data:\n  symbols: {A: {}, pooled: {}}\ntrain: {pooling: pooled}\n",
                "may not be named \"pooled\"",
            ),
            (
                "data:\n  symbols: {A: {}, B: {}}\ntrain: {pooling: pooled, task: signal}\n",
                "train.pooling: pooled trains the volatility task only",
            ),
            (
                "data:\n  symbols: {A: {}, B: {}}\ntrain: {pooling: pool}\n",
                "unknown variant `pool`, expected `per_symbol` or `pooled`",
            ),
        ];
        for (text, want) in cases {
            let (_d, p) = write(text);
            let err = load_param_set(&p, &[], None).unwrap_err();
            assert!(err.to_string().contains(want), "{text}: {err}");
            assert!(
                matches!(
                    err,
                    ParamsError::Symbols { .. }
                        | ParamsError::Invalid { .. }
                        | ParamsError::Parse { .. }
                ),
                "{err:?}"
            );
        }
    }
}

//! The feature schema: what a model expects as input, written by transform next to the
//! dataset and carried with every model version (serving validates requests and measures drift
//! against it).

use crate::features::{FeatureParams, TargetParams};
use crate::stats::ColumnStats;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureSchema {
    /// Schema format version.
    pub version: u32,
    pub symbol: String,
    /// Where the raw bars came from (`file`, `binance`, `coincap`, `synthetic`); empty in schemas
    /// written before it was recorded. Evaluate never compares models across sources or symbols.
    #[serde(default)]
    pub source: String,
    /// Bar interval of a row, e.g. `1h`.
    pub bar: String,
    /// Feature names in model input order.
    pub features: Vec<String>,
    pub feature_params: FeatureParams,
    pub target: TargetParams,
    /// Statistics of each feature on the training split (drift reference).
    pub reference: Vec<ColumnStats>,
    /// Rows per split.
    pub rows: BTreeMap<String, usize>,
    /// Time span of the data (bar open times, ms).
    pub first_ts: i64,
    pub last_ts: i64,
    /// Content hash of the raw snapshot the features were built from.
    pub data_hash: String,
    /// The symbols of a pooled model (`train.pooling: pooled`), in the order of its one-hot
    /// columns `symbol_<SYMBOL>` at the end of `features`; empty (and absent from the file, as
    /// in every schema written before it) for a model of one symbol.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub symbols: Vec<String>,
}

impl FeatureSchema {
    pub const VERSION: u32 = 1;

    /// Whether this is a pooled model's schema (its inputs end with the symbol one-hot).
    pub fn is_pooled(&self) -> bool {
        !self.symbols.is_empty()
    }

    /// The features built from candles (or given by a client): `features` without a pooled
    /// model's one-hot columns, which come from the symbol ([`crate::pooling`]).
    pub fn built_features(&self) -> Vec<String> {
        let hot = crate::pooling::one_hot_names(&self.symbols);
        self.features
            .iter()
            .filter(|f| !hot.contains(f))
            .cloned()
            .collect()
    }

    /// Refuse a symbol a pooled model was not trained on (any symbol is fine for a model of
    /// one symbol: which one it was trained on is `symbol`, and serving binds it by name).
    ///
    /// # Errors
    /// [`crate::pooling::InputError::UnknownSymbol`].
    pub fn check_symbol(&self, symbol: &str) -> Result<(), crate::pooling::InputError> {
        if self.is_pooled() {
            crate::pooling::one_hot(&self.symbols, symbol)?;
        }
        Ok(())
    }

    /// Position of each feature name.
    pub fn index(&self) -> BTreeMap<&str, usize> {
        self.features
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A schema.json as transform and train wrote them before pooling (no `symbols`).
    const BEFORE_POOLING: &str = r#"{"version":1,"symbol":"BTC-USDT","source":"file","bar":"1h",
        "features":["har_1b","har_24b"],
        "feature_params":{"return_windows":[1],"har_windows":[1,24],"long_window":24,
          "seasonal_days":28,"ewma_lambdas":[0.9]},
        "target":{"estimator":"garman_klass","horizon":1,"floor":0.0001},
        "reference":[],"rows":{"train":10},"first_ts":0,"last_ts":3600000,"data_hash":"h"}"#;

    #[test]
    fn a_schema_without_symbols_loads_as_one_symbol() {
        let s: FeatureSchema = serde_json::from_str(BEFORE_POOLING).unwrap();
        assert!(!s.is_pooled());
        assert!(s.symbols.is_empty());
        assert_eq!(s.built_features(), s.features);
        assert!(s.check_symbol("ANY-THING").is_ok());
        // Written back, it has no `symbols` key: byte-compatible with older readers.
        let text = serde_json::to_string(&s).unwrap();
        assert!(!text.contains("symbols"), "{text}");
    }

    #[test]
    fn a_pooled_schema_lists_its_symbols_and_refuses_others() {
        let mut s: FeatureSchema = serde_json::from_str(BEFORE_POOLING).unwrap();
        s.symbols = vec!["BTC-USDT".to_owned(), "ETH-USD".to_owned()];
        s.features.extend(crate::pooling::one_hot_names(&s.symbols));
        let back: FeatureSchema =
            serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
        assert!(back.is_pooled());
        assert_eq!(back.built_features(), ["har_1b", "har_24b"]);
        assert!(back.check_symbol("ETH-USD").is_ok());
        let e = back.check_symbol("SOL-USD").unwrap_err().to_string();
        assert!(
            e.contains("SOL-USD") && e.contains("BTC-USDT, ETH-USD"),
            "{e}"
        );
    }
}

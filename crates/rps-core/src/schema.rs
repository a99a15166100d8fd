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
}

impl FeatureSchema {
    pub const VERSION: u32 = 1;

    /// Position of each feature name.
    pub fn index(&self) -> BTreeMap<&str, usize> {
        self.features
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i))
            .collect()
    }
}

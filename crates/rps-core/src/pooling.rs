//! The symbol as a model input: one model over several symbols (`train.pooling: pooled`,
//! issue #20).
//!
//! A pooled model reads, after the features of [`crate::pipeline`], one 0/1 column per symbol
//! it was trained on, `symbol_<SYMBOL>` ([`one_hot_name`]), 1 in the row's own symbol's column.
//! Its saved schema lists those symbols ([`crate::schema::FeatureSchema::symbols`]), and this
//! module is the one place that turns a symbol into those values: training (`rps train`, the
//! `rps-pooled` experiment), evaluation, serving and the stream consumer all go through
//! [`one_hot`] / [`Inputs`]. A symbol the model was not trained on is refused
//! ([`InputError::UnknownSymbol`]), never predicted with an all-zero one-hot.

/// The prefix of a one-hot column.
pub const PREFIX: &str = "symbol_";

/// The one-hot column of `symbol`: `symbol_<SYMBOL>`.
pub fn one_hot_name(symbol: &str) -> String {
    format!("{PREFIX}{symbol}")
}

/// The one-hot columns of a model over `symbols`, in their order.
pub fn one_hot_names(symbols: &[String]) -> Vec<String> {
    symbols.iter().map(|s| one_hot_name(s)).collect()
}

/// Why a model's inputs cannot be filled for a symbol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error(
        "the pooled model was trained on {} and cannot forecast {symbol:?}: retrain it with the symbol listed (train.pooling: pooled)",
        trained.join(", ")
    )]
    UnknownSymbol {
        symbol: String,
        trained: Vec<String>,
    },
    #[error(
        "the model is pooled over {} and needs the symbol of each row: name it (a symbol per slot or binding)",
        trained.join(", ")
    )]
    NoSymbol { trained: Vec<String> },
    #[error("the model needs feature {0:?}, which its own spec does not build")]
    UnknownFeature(String),
}

/// The one-hot values of `symbol` for a model pooled over `symbols` (in their order).
///
/// # Errors
/// [`InputError::UnknownSymbol`] when `symbol` is not one of them.
pub fn one_hot(symbols: &[String], symbol: &str) -> Result<Vec<f64>, InputError> {
    if !symbols.iter().any(|s| s == symbol) {
        return Err(InputError::UnknownSymbol {
            symbol: symbol.to_owned(),
            trained: symbols.to_vec(),
        });
    }
    Ok(symbols
        .iter()
        .map(|s| if s == symbol { 1.0 } else { 0.0 })
        .collect())
}

/// Where one model input comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Input {
    /// Position in the feature row the spec builds.
    Row(usize),
    /// A constant for every row of the symbol: a one-hot value.
    Const(f64),
}

/// How a model's inputs are filled from a feature row for one symbol: the spec's features by
/// name, the one-hot columns of a pooled model from the symbol.
#[derive(Debug, Clone, PartialEq)]
pub struct Inputs {
    inputs: Vec<Input>,
}

impl Inputs {
    /// The inputs of a model reading `features` (in its order), pooled over `pooled` (empty: a
    /// per-symbol model), from rows whose columns are `row_names`, for `symbol`.
    ///
    /// # Errors
    /// A pooled model without a symbol or with one it was not trained on; a feature that is
    /// neither in the row nor a one-hot column of the model.
    pub fn new(
        features: &[String],
        pooled: &[String],
        row_names: &[String],
        symbol: Option<&str>,
    ) -> Result<Self, InputError> {
        let hot = if pooled.is_empty() {
            Vec::new()
        } else {
            let symbol = symbol.ok_or_else(|| InputError::NoSymbol {
                trained: pooled.to_vec(),
            })?;
            one_hot(pooled, symbol)?
        };
        let inputs = features
            .iter()
            .map(|f| {
                if let Some(j) = row_names.iter().position(|n| n == f) {
                    return Ok(Input::Row(j));
                }
                pooled
                    .iter()
                    .position(|s| f.strip_prefix(PREFIX) == Some(s.as_str()))
                    .map(|k| Input::Const(hot[k]))
                    .ok_or_else(|| InputError::UnknownFeature(f.clone()))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { inputs })
    }

    /// The model's input row for feature `row` (f64 as built, or f32 as a client sent it), as
    /// the booster's f32.
    #[allow(clippy::cast_possible_truncation)]
    pub fn fill<T: Copy + Into<f64>>(&self, row: &[T], out: &mut Vec<f32>) {
        out.extend(self.inputs.iter().map(|i| match *i {
            Input::Row(j) => row[j].into() as f32,
            Input::Const(v) => v as f32,
        }));
    }

    /// [`Inputs::fill`] into a new vector.
    pub fn row<T: Copy + Into<f64>>(&self, row: &[T]) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.inputs.len());
        self.fill(row, &mut out);
        out
    }

    /// Number of model inputs.
    pub fn len(&self) -> usize {
        self.inputs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inputs.is_empty()
    }
}

/// The column-major inputs of a pooled model for one symbol's feature columns: `columns`
/// (`n` rows each), then the symbol's one-hot among `symbols`, as training stacks them.
///
/// # Errors
/// [`InputError::UnknownSymbol`] when `symbol` is not one of `symbols`.
pub fn with_one_hot(
    columns: &[Vec<f64>],
    n: usize,
    symbols: &[String],
    symbol: &str,
) -> Result<Vec<Vec<f64>>, InputError> {
    let hot = one_hot(symbols, symbol)?;
    let mut out = columns.to_vec();
    out.extend(hot.into_iter().map(|v| vec![v; n]));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn one_hot_marks_the_symbol_alone() {
        let s = names(&["BTC-USDT", "ETH-USD", "SOL-USD"]);
        assert_eq!(one_hot(&s, "ETH-USD").unwrap(), vec![0.0, 1.0, 0.0]);
        assert_eq!(one_hot(&s, "BTC-USDT").unwrap(), vec![1.0, 0.0, 0.0]);
        assert_eq!(
            one_hot_names(&s),
            names(&["symbol_BTC-USDT", "symbol_ETH-USD", "symbol_SOL-USD"])
        );
    }

    #[test]
    fn an_unknown_symbol_is_refused_not_zeroed() {
        let s = names(&["BTC-USDT", "ETH-USD"]);
        let e = one_hot(&s, "DOGE-USD").unwrap_err();
        assert_eq!(
            e,
            InputError::UnknownSymbol {
                symbol: "DOGE-USD".to_owned(),
                trained: s.clone()
            }
        );
        assert!(e.to_string().contains("BTC-USDT, ETH-USD"), "{e}");
        let features = names(&["a", "symbol_BTC-USDT", "symbol_ETH-USD"]);
        assert!(matches!(
            Inputs::new(&features, &s, &names(&["a"]), Some("DOGE-USD")),
            Err(InputError::UnknownSymbol { .. })
        ));
        assert!(matches!(
            Inputs::new(&features, &s, &names(&["a"]), None),
            Err(InputError::NoSymbol { .. })
        ));
    }

    #[test]
    fn inputs_take_features_by_name_and_the_one_hot_from_the_symbol() {
        let s = names(&["BTC-USDT", "ETH-USD"]);
        // The model's order differs from the row's.
        let features = names(&["b", "symbol_BTC-USDT", "a", "symbol_ETH-USD"]);
        let row_names = names(&["a", "b", "c"]);
        let eth = Inputs::new(&features, &s, &row_names, Some("ETH-USD")).unwrap();
        assert_eq!(eth.row(&[1.0, 2.0, 3.0]), vec![2.0, 0.0, 1.0, 1.0]);
        let btc = Inputs::new(&features, &s, &row_names, Some("BTC-USDT")).unwrap();
        assert_eq!(btc.row(&[1.0, 2.0, 3.0]), vec![2.0, 1.0, 1.0, 0.0]);
        // A per-symbol model ignores the symbol; an unknown feature is refused.
        let plain = Inputs::new(&names(&["c", "a"]), &[], &row_names, None).unwrap();
        assert_eq!(plain.row(&[1.0, 2.0, 3.0]), vec![3.0, 1.0]);
        assert_eq!(
            Inputs::new(
                &names(&["symbol_BTC-USDT"]),
                &[],
                &row_names,
                Some("BTC-USDT")
            ),
            Err(InputError::UnknownFeature("symbol_BTC-USDT".to_owned()))
        );
    }

    #[test]
    fn with_one_hot_appends_constant_columns() {
        let s = names(&["A", "B"]);
        let cols = with_one_hot(&[vec![1.0, 2.0]], 2, &s, "B").unwrap();
        assert_eq!(cols, vec![vec![1.0, 2.0], vec![0.0, 0.0], vec![1.0, 1.0]]);
    }
}

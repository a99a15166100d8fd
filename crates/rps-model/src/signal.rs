//! The Buy/Hold/Sell model (`train.task: signal`).

use crate::*;
use rps_core::params::{TargetTransform, Task, TrainParams};
use rps_core::signal::{Signal, SignalParams};
use std::collections::BTreeMap;
use std::num::NonZeroUsize;

/// The Buy/Hold/Sell model: XGBoost's `multi:softprob` over 3 classes in the order of
/// [`Signal::index`] (0 sell, 1 hold, 2 buy). `Booster.predict` in Python returns the same
/// `n × 3` probabilities as [`SignalModel::predict_proba`].
#[derive(Debug, Clone)]
pub struct SignalModel {
    booster: BoostedModel,
    pub meta: ModelMeta,
}

/// The booster's class count.
pub const NUM_CLASS: usize = 3;

impl SignalModel {
    /// Train on `train` rows and labels with early stopping on the validation `mlogloss`.
    /// `train.xgboost` is used as given except `objective` (`multi:softprob`), `num_class` (3)
    /// and `eval_metric` (`mlogloss`), which the task fixes.
    pub fn train(
        p: &TrainParams,
        sp: &SignalParams,
        features: &[String],
        train: (&Rows, &[Signal]),
        valid: (&Rows, &[Signal]),
    ) -> Result<(Self, History), ModelError> {
        let (xt, yt) = train;
        let (xv, yv) = valid;
        for (x, y) in [(xt, yt), (xv, yv)] {
            if x.n_rows != y.len() {
                return Err(ModelError::Labels {
                    rows: x.n_rows,
                    labels: y.len(),
                });
            }
        }
        if xt.n_rows == 0 || xv.n_rows == 0 {
            return Err(ModelError::NoData(format!(
                "{} training and {} validation rows with a signal label",
                xt.n_rows, xv.n_rows
            )));
        }
        #[allow(clippy::cast_precision_loss)]
        let codes = |y: &[Signal]| -> Vec<f32> { y.iter().map(|s| s.index() as f32).collect() };
        let mut xgb = p.xgboost.clone();
        xgb.insert("objective".to_owned(), "multi:softprob".into());
        xgb.insert("num_class".to_owned(), serde_json::json!(NUM_CLASS));
        xgb.insert("eval_metric".to_owned(), "mlogloss".into());
        let params = TrainingParams::from_xgboost(xgb.clone()).map_err(ModelError::Params)?;
        let dtrain = xt
            .dmatrix()
            .and_then(|d| d.with_labels(&codes(yt)))
            .map_err(ModelError::Train)?;
        let dvalid = xv
            .dmatrix()
            .and_then(|d| d.with_labels(&codes(yv)))
            .map_err(ModelError::Train)?;
        let mut trainer = Trainer::new(&params, &dtrain, p.num_boost_round.max(1))
            .eval(&dtrain, "train")
            .eval(&dvalid, "validation");
        if let Some(r) = NonZeroUsize::new(p.early_stopping_rounds) {
            trainer = trainer.early_stopping_rounds(r);
        }
        let result = trainer.train().map_err(ModelError::Train)?;
        let metric = result.history.metrics().last().cloned().unwrap_or_default();
        let series = |d: &str| {
            result
                .history
                .series(d, &metric)
                .map(Iterator::collect)
                .unwrap_or_default()
        };
        let history = History {
            train: series("train"),
            validation: series("validation"),
            metric,
        };
        let booster = result.model;
        let meta = ModelMeta {
            task: Task::Signal,
            signal: Some(SignalMeta {
                classes: rps_core::signal::class_names(),
                horizon: sp.horizon,
                threshold: sp.threshold,
            }),
            features: features.to_vec(),
            // Not used by a signal model: no transform, scale, margin or floor.
            transform: TargetTransform::Identity,
            power: None,
            smearing: 1.0,
            margin: None,
            selection: None,
            floor: 0.0,
            quantiles: None,
            // The first class's intercept (margin space); the booster file holds all three.
            base_score: f64::from(booster.base_score()),
            best_iteration: booster.best_iteration(),
            num_trees: booster.num_boost_rounds(),
            engine: ENGINE.to_owned(),
            xgboost_params: xgb,
        };
        let model = Self { booster, meta };
        model.check_width()?;
        Ok((model, history))
    }

    fn check_width(&self) -> Result<(), ModelError> {
        let got = self.booster.prediction_width();
        if got == NUM_CLASS {
            Ok(())
        } else {
            Err(ModelError::Classes { got })
        }
    }

    /// Class probabilities (sell, hold, buy) of each row; each row sums to 1.
    pub fn predict_proba(&self, x: &Rows) -> Result<Vec<[f64; NUM_CLASS]>, ModelError> {
        if x.n_cols != self.meta.features.len() {
            return Err(ModelError::Width {
                got: x.n_cols,
                expected: self.meta.features.len(),
            });
        }
        let d = x.dmatrix().map_err(ModelError::Predict)?;
        let p = self
            .booster
            .predict(&d, Iterations::Best)
            .map_err(ModelError::Predict)?;
        Ok(p.as_slice()
            .chunks_exact(NUM_CLASS)
            .map(|c| [f64::from(c[0]), f64::from(c[1]), f64::from(c[2])])
            .collect())
    }

    /// One row's probabilities, allocation-free in the engine (the serving path).
    pub fn predict_proba_one(&self, row: &[f32]) -> Result<[f64; NUM_CLASS], ModelError> {
        if row.len() != self.meta.features.len() {
            return Err(ModelError::Width {
                got: row.len(),
                expected: self.meta.features.len(),
            });
        }
        let mut out = [0.0f32; NUM_CLASS];
        self.booster
            .predict_row_into(row, Iterations::Best, &mut out)
            .map_err(ModelError::Predict)?;
        Ok(out.map(f64::from))
    }

    /// The most probable class of each row.
    pub fn predict(&self, x: &Rows) -> Result<Vec<Signal>, ModelError> {
        Ok(self
            .predict_proba(x)?
            .iter()
            .map(|p| rps_core::signal::argmax(p))
            .collect())
    }

    /// Gain-based feature importance by feature name (summed over the classes' trees).
    pub fn importance(&self) -> BTreeMap<String, f64> {
        self.booster
            .feature_importance(ImportanceType::TotalGain)
            .into_iter()
            .filter_map(|(i, g)| self.meta.features.get(i).map(|n| (n.clone(), g)))
            .collect()
    }

    /// The booster in XGBoost's JSON format.
    pub fn to_xgboost_json(&self) -> Result<Vec<u8>, ModelError> {
        self.booster
            .encode(ModelFormat::XgboostJson)
            .map_err(ModelError::Format)
    }

    /// The booster in XGBoost's UBJSON format.
    pub fn to_xgboost_ubj(&self) -> Result<Vec<u8>, ModelError> {
        self.booster
            .encode(ModelFormat::XgboostUbjson)
            .map_err(ModelError::Format)
    }

    /// Load from XGBoost-format bytes (JSON or UBJ, detected) and metadata; refuses a
    /// volatility model's metadata and a booster without 3 class outputs.
    pub fn from_parts(booster_bytes: &[u8], meta: ModelMeta) -> Result<Self, ModelError> {
        if meta.task != Task::Signal {
            return Err(ModelError::Task {
                found: meta.task.as_str(),
                expected: Task::Signal.as_str(),
            });
        }
        let model = Self {
            booster: decode(booster_bytes)?,
            meta,
        };
        model.check_width()?;
        Ok(model)
    }

    pub fn meta_json(&self) -> Result<Vec<u8>, ModelError> {
        Ok(serde_json::to_vec_pretty(&self.meta)?)
    }
}

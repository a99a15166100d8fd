//! Champion/challenger: the promotion decision (the acceptance rule is in `acceptance.rs`).

use crate::*;
use rps_core::params::{Params, PrimaryMetric};
use rps_core::schema::FeatureSchema;
use rps_store::frame::Dataset;
use rps_tracking::Registry;
use serde::{Deserialize, Serialize};

/// The champion/challenger decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub promoted: bool,
    pub challenger_version: u32,
    pub champion_version: Option<u32>,
    pub metric: String,
    pub challenger: f64,
    pub champion: Option<f64>,
    pub margin: f64,
    pub reason: String,
}

/// Decide whether `challenger` (lower-is-better loss) replaces `champion`.
pub fn decide(
    challenger_version: u32,
    challenger: f64,
    champion: Option<(u32, f64)>,
    metric: PrimaryMetric,
    margin: f64,
) -> Decision {
    decide_by(
        challenger_version,
        challenger,
        champion,
        &format!("{metric:?}").to_lowercase(),
        false,
        margin,
    )
}

/// Decide whether `challenger` replaces `champion` on the metric `metric_name`, lower-is-better
/// unless `higher_is_better`: promoted for a relative improvement of at least `margin`. The
/// decision records the metric's own values.
pub fn decide_by(
    challenger_version: u32,
    challenger: f64,
    champion: Option<(u32, f64)>,
    metric_name: &str,
    higher_is_better: bool,
    margin: f64,
) -> Decision {
    let base = Decision {
        promoted: false,
        challenger_version,
        champion_version: champion.map(|c| c.0),
        metric: metric_name.to_owned(),
        challenger,
        champion: champion.map(|c| c.1),
        margin,
        reason: String::new(),
    };
    let loss = |v: f64| if higher_is_better { -v } else { v };
    match champion {
        None => Decision {
            promoted: true,
            reason: "no champion yet: the first model becomes champion".to_owned(),
            ..base
        },
        Some((v, _)) if v == challenger_version => Decision {
            promoted: false,
            reason: format!("v{v} is already the champion"),
            ..base
        },
        Some((v, champ)) => {
            let (champ, challenger) = (loss(champ), loss(challenger));
            let improvement = (champ - challenger) / champ.abs().max(f64::MIN_POSITIVE);
            if improvement >= margin && challenger < champ {
                Decision {
                    promoted: true,
                    reason: format!(
                        "{metric_name} improves on champion v{v} by {:.2} % (margin {:.2} %)",
                        improvement * 100.0,
                        margin * 100.0
                    ),
                    ..base
                }
            } else {
                Decision {
                    promoted: false,
                    reason: format!(
                        "{metric_name} changes by {:.2} % against champion v{v}; the margin is {:.2} %",
                        improvement * 100.0,
                        margin * 100.0
                    ),
                    ..base
                }
            }
        }
    }
}

/// Inside a DVC experiment (`dvc exp run` sets `DVC_EXP_NAME`) the decision is taken and
/// reported, but never acted on: an experiment is not committed and may be thrown away, so it
/// must not become the production champion. The report says what it would have done.
pub(crate) fn in_experiment(mut d: Decision) -> Decision {
    if let Some(name) = rps_cli::dvc_experiment() {
        let would = if d.promoted {
            "would be promoted"
        } else {
            "would not be promoted"
        };
        d.reason = format!(
            "DVC experiment {name}: {would} ({}), but an experiment never moves the registry's aliases — keep it with `dvc exp apply {name}`, a commit and `dvc repro`",
            d.reason
        );
        d.promoted = false;
    }
    d
}

/// The current champion, as far as it can be compared with the challenger.
pub(crate) enum Champion {
    /// No champion yet (or one that cannot score these features): the challenger is judged alone.
    None,
    /// The champion's version and loss on the challenger's test rows.
    Scored(u32, f64),
    /// A champion trained on another dataset (symbol or source), and how they differ.
    Incomparable(u32, String),
}

/// How a champion trained on `champion`'s dataset differs from the challenger's (`challenger`):
/// another symbol, or another source (schemas written before the source was recorded compare
/// on the symbol alone). `None` when they are the same dataset.
pub fn incomparable(champion: &FeatureSchema, challenger: &FeatureSchema) -> Option<String> {
    let what = |s: &FeatureSchema| {
        if s.source.is_empty() {
            s.symbol.clone()
        } else {
            format!("{} from {}", s.symbol, s.source)
        }
    };
    let other_source = !champion.source.is_empty()
        && !challenger.source.is_empty()
        && champion.source != challenger.source;
    (champion.symbol != challenger.symbol || other_source).then(|| {
        format!(
            "was trained on {}, this model on {}",
            what(champion),
            what(challenger)
        )
    })
}

/// The current champion's loss on the same test rows, if there is a champion trained on the
/// same dataset that can score these features.
pub(crate) fn champion_loss(
    registry: &dyn Registry,
    name: &str,
    params: &Params,
    ds: &Dataset,
    schema: &FeatureSchema,
    metric: PrimaryMetric,
) -> Result<Champion, EvaluateError> {
    let Some(v) = registry.alias(name, "champion")? else {
        return Ok(Champion::None);
    };
    let loaded = registry.load(name, v)?;
    if let Some(why) = incomparable(&loaded.files.schema, schema) {
        return Ok(Champion::Incomparable(v, why));
    }
    let champ = loaded.model.into_volatility()?;
    match evaluate(params, ds, &champ) {
        Ok(e) => Ok(e
            .score("model")
            .map_or(Champion::None, |s| Champion::Scored(v, loss(s, metric)))),
        Err(EvaluateError::FeatureMismatch { .. }) => {
            tracing::warn!(
                "champion v{v} was trained on other features and cannot score this dataset; the challenger is judged alone"
            );
            Ok(Champion::None)
        }
        Err(e) => Err(e),
    }
}

//! `metrics.json`: the headline numbers, small enough to read in a terminal and to compare with
//! `dvc metrics diff` and `dvc exp show` — the model's QLIKE, R²(log), RMSE, MAE and row count,
//! each baseline's QLIKE and R²(log), the Diebold-Mariano p-value against HAR-RV, the promotion
//! decision and the walk-forward verdict (passed, and the criteria that failed). Everything else (every score of every forecaster, the
//! test statistics, each walk-forward fold) is in `metrics_detail.json`.

use serde_json::{Map, Value};

/// What the model's entry keeps; every other forecaster keeps [`BASELINE_KEYS`].
const MODEL_KEYS: &[&str] = &["qlike", "r2_log", "rmse", "mae", "n"];
const BASELINE_KEYS: &[&str] = &["qlike", "r2_log"];
const PROMOTION_KEYS: &[&str] = &[
    "promoted",
    "metric",
    "challenger",
    "champion",
    "challenger_version",
    "champion_version",
];

fn pick(v: &Value, keys: &[&str]) -> Value {
    Value::Object(
        keys.iter()
            .filter_map(|k| v.get(*k).map(|x| ((*k).to_owned(), x.clone())))
            .collect(),
    )
}

/// The headline of the full metrics object (`metrics_detail.json`).
pub fn headline(full: &Map<String, Value>) -> Value {
    let mut out = Map::new();
    for (name, v) in full {
        if v.get("qlike").is_some_and(Value::is_number) {
            let keys = if name == "model" {
                MODEL_KEYS
            } else {
                BASELINE_KEYS
            };
            out.insert(name.clone(), pick(v, keys));
        }
    }
    if let Some(p) = full
        .get("diebold_mariano_vs_har_rv")
        .and_then(|d| d.get("p_value"))
    {
        out.insert("dm_p_value_vs_har_rv".to_owned(), p.clone());
    }
    if let Some(p) = full.get("promotion") {
        out.insert("promotion".to_owned(), pick(p, PROMOTION_KEYS));
    }
    if let Some(w) = full.get("walk_forward") {
        let pooled = |f: &str| w["pooled"][f]["qlike"].clone();
        out.insert(
            "walk_forward".to_owned(),
            serde_json::json!({
                "model_qlike": pooled("model"),
                "har_rv_qlike": pooled("har_rv"),
                "ewma_qlike": pooled("ewma"),
                "model_median_r2_log": w["pooled"]["model_median"]["r2_log"],
                "passed": w["verdict"]["passed"],
                "failed": w["verdict"]["checks"].as_array().map(|c| {
                    c.iter()
                        .filter(|x| x["passed"] == false)
                        .map(|x| x["criterion"].clone())
                        .collect::<Vec<_>>()
                }),
            }),
        );
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_headline_keeps_the_compared_numbers_and_drops_the_folds() {
        let full = serde_json::json!({
            "model": {"qlike": 0.94, "r2_log": 0.54, "rmse": 0.0059, "mae": 0.0037, "r2": 0.33, "n": 1241},
            "har_rv": {"qlike": 1.09, "r2_log": 0.53, "rmse": 0.0061, "mae": 0.0039, "r2": 0.30, "n": 1241},
            "persistence": {"qlike": 2.63, "r2_log": 0.40, "rmse": 0.0073, "mae": 0.0044, "r2": -0.01, "n": 1241},
            "diebold_mariano_vs_har_rv": {"statistic": -2.3, "p_value": 0.02, "mean_diff": -0.15},
            "promotion": {"promoted": true, "metric": "qlike", "challenger": 0.94, "champion": null,
                          "challenger_version": 1, "champion_version": null, "margin": 0.0,
                          "reason": "no champion yet: the first model becomes champion"},
            "walk_forward": {
                "folds": [{"best_iteration": 161}],
                "pooled": {"model": {"qlike": 1.18}, "har_rv": {"qlike": 1.45}, "ewma": {"qlike": 1.32}},
                "verdict": {"passed": false, "qlike_gain": 0.1, "checks": [
                    {"criterion": "mean_qlike", "passed": true},
                    {"criterion": "coverage90", "passed": false}
                ]}
            }
        });
        let h = headline(full.as_object().unwrap());
        insta::assert_json_snapshot!(h);
        let text = serde_json::to_string_pretty(&h).unwrap();
        assert!(!text.contains("folds") && !text.contains("best_iteration"));
    }
}

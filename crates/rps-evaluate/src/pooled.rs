//! `train.pooling: pooled`: one evaluate run for the one candidate of every symbol.
//!
//! Each symbol's test split is scored as the per-symbol stage scores it ([`evaluate`]: the
//! model and the baselines on that symbol's rows, the model reading the symbol's one-hot), and
//! so is the champion when it is a pooled model over the same symbols. The promotion is one
//! decision for the shared version:
//!
//! - **together**: the primary metric over every symbol's test rows at once (the rows
//!   concatenated) must improve on the champion's by at least `evaluate.promotion_margin`, as
//!   in [`decide`];
//! - **each symbol**: on no symbol may the challenger be worse than the champion by more than
//!   the same margin (relative, on the primary metric).
//!
//! Both must hold; the first model becomes champion as usual. A champion over other symbols
//! (or a per-symbol model under the same name) is not comparable and is kept.
//!
//! With `evaluate.walk_forward_folds` > 0 the pooled walk-forward runs ([`pooled_walk_forward`]:
//! a pooled model retrained per fold on every symbol's rows) and the acceptance rule judges it
//! on all symbols together and on each symbol. The rule gates the decision as in the
//! per-symbol stage ([`gate_scopes`], one rule): reported always, and with
//! `evaluate.acceptance.enforce: true` a failure on any of those scopes keeps the challenger out.

use crate::*;
use rps_core::metrics;
use rps_core::params::PrimaryMetric;

/// One symbol's scores.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SymbolEvaluation {
    pub symbol: String,
    pub rows: usize,
    /// The challenger's primary-metric loss (lower is better; −R² for r2_log).
    pub challenger: f64,
    pub champion: Option<f64>,
    /// Relative change against the champion (positive: better), when there is one.
    pub improvement: Option<f64>,
    /// QLIKE of the model and each baseline on this symbol's test rows.
    pub qlike: BTreeMap<String, f64>,
    /// Whether this symbol blocks the promotion, and why (or why not).
    pub blocks: bool,
    pub reason: String,
    /// The acceptance rule on this symbol's walk-forward rows (`None`: no walk-forward ran).
    pub acceptance: Option<Outcome>,
}

/// A per-symbol dataset with the pooled model's one-hot columns appended.
pub(crate) fn with_one_hot(
    mut ds: Dataset,
    symbols: &[String],
    symbol: &str,
) -> Result<Dataset, EvaluateError> {
    let n = ds.frame.len();
    ds.frame.columns = rps_core::pooling::with_one_hot(&ds.frame.columns, n, symbols, symbol)
        .map_err(|e| EvaluateError::Pooled(e.to_string()))?;
    ds.frame
        .names
        .extend(rps_core::pooling::one_hot_names(symbols));
    Ok(ds)
}

/// The pooled decision: `together` is [`decide`] on the concatenated rows; a symbol worse than
/// the champion by more than `margin` turns a promotion into a refusal naming it.
pub fn decide_pooled(
    version: u32,
    together: (f64, Option<(u32, f64)>),
    per_symbol: &mut [SymbolEvaluation],
    metric: PrimaryMetric,
    margin: f64,
) -> Decision {
    let mut d = decide(version, together.0, together.1, metric, margin);
    for s in per_symbol.iter_mut() {
        let Some(champ) = s.champion else {
            s.reason = "no comparable champion".to_owned();
            continue;
        };
        let improvement = (champ - s.challenger) / champ.abs().max(f64::MIN_POSITIVE);
        s.improvement = Some(improvement);
        s.blocks = improvement < -margin;
        s.reason = format!(
            "{} changes by {:+.2} % against the champion (a symbol blocks below −{:.2} %)",
            d.metric,
            improvement * 100.0,
            margin * 100.0
        );
    }
    let blocking: Vec<String> = per_symbol
        .iter()
        .filter(|s| s.blocks)
        .map(|s| {
            format!(
                "{} ({:+.2} %)",
                s.symbol,
                s.improvement.unwrap_or(0.0) * 100.0
            )
        })
        .collect();
    d.reason = format!("all symbols together: {}", d.reason);
    if d.promoted && !blocking.is_empty() {
        d.promoted = false;
        d.reason = format!(
            "{}, but worse than the champion beyond the margin on {}: kept for every symbol",
            d.reason,
            blocking.join(", ")
        );
    }
    d
}

/// Run the stage for a pooled candidate.
pub fn run_pooled(args: &Args, set: &rps_cli::ParamSet) -> Result<(), EvaluateError> {
    if let Some(s) = args.common.symbol.as_deref().filter(|s| !s.is_empty()) {
        return Err(EvaluateError::Pooled(format!(
            "train.pooling: pooled evaluates the one model of every symbol: run rps evaluate without --symbol (got {s:?}) and without RPS_SYMBOL"
        )));
    }
    let params = set.shared().clone();
    let symbols: Vec<String> = set.symbols().iter().map(|s| (*s).to_owned()).collect();
    let home = Home::pooled(&args.common.home);
    let report_dir = args.report_dir.clone().unwrap_or_else(|| home.reports());
    let template = args
        .features
        .clone()
        .unwrap_or_else(|| home.features("{symbol}"));
    if !template.contains("{symbol}") {
        return Err(EvaluateError::Pooled(format!(
            "train.pooling: pooled reads every symbol's features: --features must contain {{symbol}}, got {template:?}"
        )));
    }
    let model_dir = rps_store::open(&args.model.clone().unwrap_or_else(|| home.candidate()))?;
    let tracker = home.tracker()?;
    let registry = home.registry()?;
    let (files, info) = read_candidate(model_dir.as_ref(), registry.as_ref())?;
    if files.schema.symbols != symbols {
        return Err(EvaluateError::Pooled(format!(
            "the candidate {} v{} is pooled over [{}] but params.yaml lists [{}]: rerun rps train",
            info.name,
            info.version,
            files.schema.symbols.join(", "),
            symbols.join(", ")
        )));
    }
    let model = files.model()?.into_volatility()?;
    let metric = params.evaluate.primary_metric;
    let margin = params.evaluate.promotion_margin;
    // The champion, when it is a pooled model over the same symbols.
    let mut incomparable_champion = None;
    let champion = match registry.alias(&info.name, "champion")? {
        Some(v) => {
            let loaded = registry.load(&info.name, v)?;
            match decision::incomparable(&loaded.files.schema, &files.schema) {
                Some(why) => {
                    incomparable_champion = Some((v, why));
                    None
                }
                None => Some((v, loaded.model.into_volatility()?)),
            }
        }
        None => None,
    };
    let mut per_symbol = Vec::with_capacity(symbols.len());
    let (mut realized, mut chal, mut champ) = (Vec::new(), Vec::new(), Vec::new());
    let mut champion_scores_all = champion.is_some();
    let mut datasets = Vec::with_capacity(symbols.len());
    let mut bar = String::new();
    for symbol in &symbols {
        let store = rps_store::open(&template.replace("{symbol}", symbol))?;
        let (ds, schema) = rps_store::frame::read(store.as_ref())?;
        bar = schema.bar;
        let ds = with_one_hot(ds, &symbols, symbol)?;
        let e = evaluate(&params, &ds, &model)?;
        let c = match &champion {
            Some((_, m)) => match evaluate(&params, &ds, m) {
                Ok(c) => Some(c),
                Err(EvaluateError::FeatureMismatch { .. }) => None,
                Err(other) => return Err(other),
            },
            None => None,
        };
        champion_scores_all &= c.is_some();
        let forecast = |e: &Evaluation| {
            e.forecasts
                .iter()
                .find(|(n, _)| n == "model")
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        realized.extend(&e.realized);
        chal.extend(forecast(&e));
        if let Some(c) = &c {
            champ.extend(forecast(c));
        }
        let score =
            |e: &Evaluation| loss(e.score("model").unwrap_or_else(|| unreachable!()), metric);
        per_symbol.push(SymbolEvaluation {
            symbol: symbol.clone(),
            rows: e.realized.len(),
            challenger: score(&e),
            champion: c.as_ref().map(score),
            improvement: None,
            qlike: e.scores.iter().map(|(n, s)| (n.clone(), s.qlike)).collect(),
            blocks: false,
            reason: String::new(),
            acceptance: None,
        });
        datasets.push((symbol.clone(), ds));
    }
    // The walk-forward and the acceptance rule: on all symbols together and on each symbol.
    let rule = &params.evaluate.acceptance;
    let wf = if params.evaluate.walk_forward_folds > 0 {
        let bar: rps_core::Interval = bar.parse().map_err(|_| EvaluateError::Bar(bar.clone()))?;
        Some(pooled_walk_forward(&params, &datasets, bar.ms())?)
    } else {
        None
    };
    drop(datasets);
    let verdicts = wf.as_ref().map(|w| w.verdicts(rule)).unwrap_or_default();
    for s in &mut per_symbol {
        s.acceptance = verdicts
            .iter()
            .find(|(n, _)| n == &s.symbol)
            .map(|(_, v)| v.outcome());
    }
    let scoped: Vec<Scoped<'_>> = verdicts
        .iter()
        .map(|(n, v)| (Some(n.as_str()), v))
        .collect();
    let together = loss(&metrics::score(&realized, &chal), metric);
    let champion_together = match &champion {
        Some((v, _)) if champion_scores_all => {
            Some((*v, loss(&metrics::score(&realized, &champ), metric)))
        }
        _ => None,
    };
    let decision = match &incomparable_champion {
        Some((v, why)) => Decision {
            promoted: false,
            challenger_version: info.version,
            champion_version: Some(*v),
            metric: format!("{metric:?}").to_lowercase(),
            challenger: together,
            champion: None,
            margin,
            reason: format!(
                "champion v{v} {why}: the two are not comparable, so the champion is kept (a pooled model over other symbols, or a per-symbol model under this name: give this one another train.model_name)"
            ),
        },
        None => decide_pooled(
            info.version,
            (together, champion_together),
            &mut per_symbol,
            metric,
            margin,
        ),
    };
    let decision = decision::in_experiment(gate_scopes(
        decision,
        wf.as_ref().map(|_| scoped.as_slice()),
        rule.enforce,
    ));
    let mut md = markdown_pooled(&info, &decision, &per_symbol);
    if let Some(w) = &wf {
        md.push('\n');
        md.push_str(&pooled_walk_forward_markdown(w, &verdicts, &params));
    }
    let walk_forward = match &wf {
        Some(w) => walk_forward_body(w, &verdicts)?,
        None => serde_json::Value::Null,
    };
    let body = serde_json::json!({
        "pooling": "pooled",
        "symbols": symbols,
        "promotion": decision,
        "model": {"loss_together": together},
        "by_symbol": per_symbol,
        "walk_forward": walk_forward,
    });
    let mut tags = BTreeMap::from([
        ("git_commit".to_owned(), rps_cli::git_commit()),
        ("stage".to_owned(), "evaluate".to_owned()),
        ("data_hash".to_owned(), files.schema.data_hash.clone()),
        ("model_name".to_owned(), info.name.clone()),
        ("model_version".to_owned(), info.version.to_string()),
        ("pooling".to_owned(), "pooled".to_owned()),
    ]);
    tags.insert("symbols".to_owned(), symbols.join(","));
    let where_ = rps_tracking::with_run(tracker.as_ref(), "evaluate", &tags, |run| {
        let out = rps_store::open(&report_dir)?;
        rps_store::commit::sweep_stale_temp(out.as_ref());
        let json = serde_json::to_vec_pretty(&body)?;
        out.put("metrics.json", &json)?;
        out.put("evaluation.md", md.as_bytes())?;
        let mut values = vec![
            ("model_loss_together".to_owned(), together),
            (
                "promoted".to_owned(),
                f64::from(u8::from(decision.promoted)),
            ),
        ];
        for s in &per_symbol {
            for (n, q) in &s.qlike {
                values.push((format!("{n}_qlike_{}", s.symbol), *q));
            }
        }
        if let Some(w) = &wf {
            // Together under the per-symbol stage's names (`wf_model_qlike`, `wf_accept_…`,
            // `wf_beats_baselines`, and a point per fold); each symbol's with `_<SYMBOL>`.
            let verdict = |name: &str| verdicts.iter().find(|(n, _)| n == name).map(|(_, v)| v);
            let (together, points) = walk_forward_metrics(&w.together, verdict(TOGETHER));
            values.extend(together);
            run.log_metrics(&points)?;
            for (symbol, sw) in &w.by_symbol {
                let (v, _) = walk_forward_metrics(sw, verdict(symbol));
                values.extend(v.into_iter().map(|(k, x)| (format!("{k}_{symbol}"), x)));
            }
        }
        run.log_owned_values(&values)?;
        run.log_params(&logged_params(&params, &decision))?;
        run.log_artifact("metrics.json", &json)?;
        run.log_artifact("evaluation.md", md.as_bytes())?;
        record_live_set(registry.as_ref(), &info, decision.promoted, &params)?;
        Ok::<_, EvaluateError>(out.uri(""))
    })?;
    conclude(
        args,
        &format!("pooled challenger over {}:", symbols.join(", ")),
        decision,
        &md,
        &where_,
    )
}

pub(crate) fn markdown_pooled(
    info: &VersionInfo,
    d: &Decision,
    per_symbol: &[SymbolEvaluation],
) -> String {
    use std::fmt::Write as _;
    let mut md = format!(
        "# {} v{} (pooled over {} symbols)\n\n| symbol | rows | {} | champion | change | model QLIKE | har_rv QLIKE | ewma QLIKE | blocks | walk-forward acceptance |\n|---|---:|---:|---:|---:|---:|---:|---:|---|---|\n",
        info.name,
        info.version,
        per_symbol.len(),
        d.metric
    );
    let num = |v: Option<f64>| v.map_or_else(|| "—".to_owned(), |v| format!("{v:.4}"));
    for s in per_symbol {
        let _ = writeln!(
            md,
            "| {} | {} | {:.4} | {} | {} | {} | {} | {} | {} | {} |",
            s.symbol,
            s.rows,
            s.challenger,
            num(s.champion),
            s.improvement
                .map_or_else(|| "—".to_owned(), |v| format!("{:+.2} %", v * 100.0)),
            num(s.qlike.get("model").copied()),
            num(s.qlike.get("har_rv").copied()),
            num(s.qlike.get("ewma").copied()),
            if s.blocks { "**yes**" } else { "no" },
            match &s.acceptance {
                None => "not run".to_owned(),
                Some(a) if a.passed => "passes".to_owned(),
                Some(a) => format!(
                    "**fails**: {}",
                    a.failed
                        .iter()
                        .map(|c| c.key())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }
        );
    }
    let _ = writeln!(
        md,
        "\n**Decision:** {} — {}",
        if d.promoted { "PROMOTED" } else { "KEPT" },
        d.reason
    );
    md
}

/// `metrics.json`'s `walk_forward` in pooled mode: whether every verdict passed, then the
/// walk-forward of all symbols together and of each symbol (folds, pooled scores, verdict), in
/// the per-symbol stage's shape.
fn walk_forward_body(
    w: &PooledWalkForward,
    verdicts: &[(String, Verdict)],
) -> Result<serde_json::Value, EvaluateError> {
    let verdict = |name: &str| verdicts.iter().find(|(n, _)| n == name).map(|(_, v)| v);
    let mut by_symbol = serde_json::Map::new();
    for (symbol, sw) in &w.by_symbol {
        by_symbol.insert(symbol.clone(), walk_forward_json(sw, verdict(symbol))?);
    }
    Ok(serde_json::json!({
        "folds": w.together.folds.len(),
        "passed": !verdicts.is_empty() && verdicts.iter().all(|(_, v)| v.passed),
        "together": walk_forward_json(&w.together, verdict(TOGETHER))?,
        "by_symbol": by_symbol,
    }))
}

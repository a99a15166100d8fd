//! `rps forecast`: the next bar's volatility from the newest candles of the home's raw dataset
//! (what `rps extract` writes), by a registered model: the forecast `POST /forecast` gives, for
//! cron jobs and notebooks that have no server at hand.
//!
//! The model comes from the registry as serve and stream load it (`Home::registry`, by alias or
//! version); its own saved spec builds the features ([`rps_core::pipeline`] through
//! [`rps_core::forecast`]), so the number equals serve's for the same candles. A history that
//! stopped (the newest bar closed more than `--max-age` ago) or has a hole in the window the
//! features read is refused with exit 4, naming the bar — never a silent forecast.

use clap::Parser;
use rps_cli::{CommonArgs, Home, StageError, exit};
use rps_core::forecast::{self, ForecastError, Made, PointForecast, Value};
use rps_store::raw::RawDataset;
use std::io::IsTerminal;

/// Forecast the next bar's volatility from the newest candles of the raw dataset.
///
/// Prints the target hour (UTC), the hourly and annualised volatility, the model and the bar it
/// forecast from: a table, or one JSON object with --json (the shape of POST /forecast).
#[derive(Debug, Parser)]
#[command(name = "rps-forecast", version, after_help = exit::HELP)]
pub struct Args {
    #[command(flatten)]
    pub common: CommonArgs,
    /// The alias of the model to use.
    #[arg(long, default_value = "champion", conflicts_with = "model_version")]
    pub model_alias: String,
    /// A model version number instead of an alias.
    #[arg(long)]
    pub model_version: Option<u32>,
    /// Registered model name (default: params.yaml `train.model_name`).
    #[arg(long)]
    pub model_name: Option<String>,
    /// The raw dataset (default: <home>/data/raw/<the model's symbol>).
    #[arg(long)]
    pub input: Option<String>,
    /// How long ago the newest candle may have closed (e.g. 90m, 2h); older is refused (exit
    /// 4). Default: one bar of the model.
    #[arg(long, value_parser = parse_duration_ms)]
    pub max_age: Option<i64>,
    /// Print one JSON object (the shape of POST /forecast) instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `90m`, `2h`, `30s`, `1d` → milliseconds.
fn parse_duration_ms(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: i64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: expected e.g. 90m, 2h, 3600s"))?;
    let unit_ms = match unit {
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        u => return Err(format!("invalid duration unit {u:?}: use s, m, h or d")),
    };
    n.checked_mul(unit_ms)
        .ok_or_else(|| format!("duration {s:?} is too long"))
}

#[derive(Debug, thiserror::Error)]
pub enum ForecastStageError {
    #[error(transparent)]
    Params(#[from] rps_cli::ParamsError),
    #[error(transparent)]
    Tracking(#[from] rps_tracking::TrackingError),
    #[error(transparent)]
    Store(#[from] rps_store::StoreError),
    #[error(transparent)]
    Raw(#[from] rps_store::raw::RawError),
    #[error("no forecast from {uri}: {source}")]
    History {
        uri: String,
        #[source]
        source: ForecastError,
    },
    #[error("{name} version {version} cannot forecast from candles: {reason}")]
    Unsupported {
        name: String,
        version: u32,
        reason: String,
    },
    #[error("{name} version {version} failed to predict: {reason}")]
    Predict {
        name: String,
        version: u32,
        reason: String,
    },
    #[error("could not write the forecast: {0}")]
    Output(String),
}

impl StageError for ForecastStageError {
    fn exit_code(&self) -> u8 {
        use rps_store::StoreError as S;
        use rps_store::raw::RawError as R;
        use rps_tracking::TrackingError as T;
        match self {
            Self::Params(_) => exit::CONFIG,
            Self::Store(S::Unsupported { .. })
            | Self::Raw(R::Store(S::Unsupported { .. }))
            | Self::Tracking(T::Store(S::Unsupported { .. })) => exit::CONFIG,
            // No model under that alias or number, no raw dataset, a stale or gapped history.
            Self::Tracking(T::NoAlias { .. } | T::NoVersion { .. })
            | Self::Raw(R::Store(S::NotFound { .. }))
            | Self::History { .. } => exit::INPUT,
            Self::Raw(e) if e.is_bad_data() => exit::INPUT,
            Self::Tracking(e) if e.is_input() => exit::INPUT,
            Self::Tracking(e) if e.is_remote() => exit::REMOTE,
            Self::Unsupported { .. } | Self::Predict { .. } => exit::MODEL,
            Self::Tracking(_) | Self::Store(_) | Self::Raw(_) => exit::STORAGE,
            Self::Output(_) => exit::INTERNAL,
        }
    }
}

/// The forecast the arguments ask for, at `now_ms` (pure apart from reading the registry and
/// the raw dataset).
pub fn forecast_at(
    args: &Args,
    now_ms: i64,
) -> Result<(PointForecast, String), ForecastStageError> {
    let params = args.common.load_params()?;
    let home = Home::for_params(&args.common.home, &params);
    let registry = home.registry()?;
    let name = args
        .model_name
        .clone()
        .unwrap_or_else(|| params.train.model_name.clone());
    let reference = args
        .model_version
        .map_or_else(|| args.model_alias.clone(), |v| v.to_string());
    let loaded = registry.resolve(&name, &reference)?;
    let (name, version) = (loaded.info.name.clone(), loaded.info.version);
    let schema = &loaded.files.schema;
    let spec = forecast::spec(schema).map_err(|e| ForecastStageError::Unsupported {
        name: name.clone(),
        version,
        reason: e.to_string(),
    })?;
    let uri = args
        .input
        .clone()
        .unwrap_or_else(|| home.raw(&schema.symbol));
    let raw = RawDataset::new(rps_store::open(&uri)?);
    // Two bars more than the window: an unfinished bar or one hole still shows.
    let span = (forecast::history_bars(&spec) as i64 + 2) * spec.bar.ms();
    let (manifest, bars) = raw.read_tail(span)?;
    let max_age = args.max_age.unwrap_or(spec.bar.ms());
    let history = |source| ForecastStageError::History {
        uri: uri.clone(),
        source,
    };
    let stored = forecast::stored(&spec, &bars, manifest.interval, now_ms, max_age).map_err(
        |e| match e {
            ForecastError::Unsupported(reason) => ForecastStageError::Unsupported {
                name: name.clone(),
                version,
                reason,
            },
            other => history(other),
        },
    )?;
    let (from, x) = forecast::model_input(
        &spec,
        &schema.features,
        &schema.symbols,
        Some(&params.data.symbol),
        &stored.window,
    )
    .map_err(history)?;
    let prediction = loaded
        .model
        .predict_one(&x)
        .map_err(|e| ForecastStageError::Predict {
            name: name.clone(),
            version,
            reason: e.to_string(),
        })?;
    let made = Made {
        model: &name,
        version,
        symbol: &manifest.symbol,
        from,
        candles_used: stored.window.len(),
        history: "raw_dataset",
        age_ms: Some(stored.age_ms),
    };
    Ok((
        PointForecast::new(&spec, &made, &prediction.into()),
        reference,
    ))
}

/// Run the stage: forecast now and print it.
pub fn run(args: &Args) -> Result<(), ForecastStageError> {
    let (f, reference) = forecast_at(args, chrono::Utc::now().timestamp_millis())?;
    tracing::info!(
        model = %f.model,
        version = f.version,
        from_bar = %f.from_bar,
        "forecast for {}",
        f.target_bar
    );
    let text = if args.json {
        serde_json::to_string(&f).map_err(|e| ForecastStageError::Output(e.to_string()))?
    } else {
        table(&f, &reference)
    };
    print(&text)
}

#[allow(clippy::print_stdout)]
fn print(text: &str) -> Result<(), ForecastStageError> {
    use std::io::Write;
    // The forecast is the stage's result: stdout; logs go to stderr.
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}").map_err(|e| ForecastStageError::Output(e.to_string()))?;
    if out.is_terminal() {
        out.flush()
            .map_err(|e| ForecastStageError::Output(e.to_string()))?;
    }
    Ok(())
}

/// The forecast as an aligned two-column table.
pub fn table(f: &PointForecast, reference: &str) -> String {
    let mut rows: Vec<(&str, String)> = vec![
        ("model", format!("{} v{} ({reference})", f.model, f.version)),
        ("symbol", format!("{} ({} bars)", f.symbol, f.bar)),
        (
            "from bar",
            format!(
                "{} (closed {} ago)",
                f.from_bar,
                f.age_secs.map_or_else(|| "?".to_owned(), human_secs)
            ),
        ),
        ("target bar", format!("{} (UTC)", f.target_bar)),
    ];
    match &f.value {
        Value::Volatility {
            volatility,
            volatility_annualised,
            ..
        } => {
            rows.push((
                "volatility",
                format!(
                    "{:.4} % per {} bar (σ of its log return: {volatility:.6})",
                    volatility * 100.0,
                    f.bar
                ),
            ));
            rows.push((
                "annualised",
                format!("{:.2} %", volatility_annualised * 100.0),
            ));
        }
        Value::Signal {
            signal,
            probabilities,
        } => {
            rows.push(("signal", (*signal).to_owned()));
            rows.push((
                "probabilities",
                format!(
                    "sell {:.3}, hold {:.3}, buy {:.3}",
                    probabilities.sell, probabilities.hold, probabilities.buy
                ),
            ));
        }
    }
    rows.iter()
        .map(|(k, v)| format!("{k:<13} {v}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn human_secs(s: i64) -> String {
    match s {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s => format!("{:.1} h", s as f64 / 3600.0),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rps_core::forecast::Prediction;
    use rps_core::pipeline::FeatureSpec;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration_ms("90m"), Ok(5_400_000));
        assert_eq!(parse_duration_ms("2h"), Ok(7_200_000));
        assert_eq!(parse_duration_ms("30"), Ok(30_000));
        assert!(parse_duration_ms("2 weeks").is_err());
    }

    #[test]
    fn the_table_names_the_hour_and_both_units() {
        let spec = FeatureSpec {
            bar: rps_core::Interval::H1,
            features: rps_core::features::FeatureParams::default(),
            target: rps_core::features::TargetParams::default(),
        };
        let made = Made {
            model: "btc-volatility",
            version: 3,
            symbol: "BTC-USD",
            from: 1_764_921_600_000,
            candles_used: 673,
            history: "raw_dataset",
            age_ms: Some(125_000),
        };
        let f = PointForecast::new(
            &spec,
            &made,
            &Prediction::Volatility(rps_core::distribution::VolatilityForecast::point(0.006)),
        );
        insta::assert_snapshot!(table(&f, "champion"));
        insta::assert_json_snapshot!(f);
    }
}

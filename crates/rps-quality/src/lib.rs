//! `rps-quality`: the data-quality gate between extract and transform.
//!
//! Checks schema and types, missing values, infinite values, absurd magnitudes, duplicate
//! timestamps, gaps in the bar grid, OHLC sanity, outlier returns, spikes against the
//! neighbouring bars, frozen feeds and (optionally) freshness against the thresholds in
//! `quality:` of params.yaml. Always writes `quality.json` and `quality.html`; exits 5 with a
//! short summary naming each failed check when the gate fails, so a pipeline stops before
//! training.

use clap::Parser;
use rps_cli::{CommonArgs, Home, StageError, exit};
use rps_core::quality::{self, QualityReport};
use rps_store::raw::RawDataset;
use std::collections::BTreeMap;

/// Check the raw dataset against the quality thresholds in params.yaml (`quality:`).
///
/// Writes <report-dir>/quality.json and <report-dir>/quality.html (a per-column profile) whether
/// the gate passes or fails.
#[derive(Debug, Parser)]
#[command(name = "rps-quality", version, after_help = exit::HELP)]
pub struct Args {
    #[command(flatten)]
    pub common: CommonArgs,
    /// The raw dataset (default: <home>/data/raw/<symbol>).
    #[arg(long)]
    pub input: Option<String>,
    /// Folder for quality.json and quality.html (default: <home>/reports, or <home>/reports/<symbol>
    /// when params.yaml lists several symbols; DVC and CI pass their own).
    #[arg(long)]
    pub report_dir: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum QualityError {
    #[error(transparent)]
    Params(#[from] rps_cli::ParamsError),
    #[error(transparent)]
    Raw(#[from] rps_store::raw::RawError),
    #[error(transparent)]
    Store(#[from] rps_store::StoreError),
    #[error(transparent)]
    Tracking(#[from] rps_tracking::TrackingError),
    #[error("could not encode the report: {0}")]
    Json(#[from] serde_json::Error),
    #[error("quality gate FAILED ({}): {}", .failed.len(), .failed.join("; "))]
    Gate { failed: Vec<String> },
}

impl StageError for QualityError {
    fn exit_code(&self) -> u8 {
        use rps_store::StoreError as S;
        use rps_store::raw::RawError as R;
        match self {
            Self::Params(_) => exit::CONFIG,
            Self::Gate { .. } => exit::QUALITY_GATE,
            // A location the configuration names that no store can serve (`--home ftp://…`).
            Self::Store(S::Unsupported { .. })
            | Self::Raw(R::Store(S::Unsupported { .. }))
            | Self::Tracking(rps_tracking::TrackingError::Store(S::Unsupported { .. })) => {
                exit::CONFIG
            }
            Self::Raw(R::Store(S::NotFound { .. })) => exit::INPUT,
            // Unreadable or truncated partitions, a corrupt manifest, a checksum mismatch.
            Self::Raw(e) if e.is_bad_data() => exit::INPUT,
            Self::Tracking(e) if e.is_remote() => exit::REMOTE,
            Self::Raw(_) | Self::Store(_) | Self::Tracking(_) | Self::Json(_) => exit::STORAGE,
        }
    }
}

/// Run the stage.
pub fn run(args: &Args) -> Result<(), QualityError> {
    let params = args.common.load_params()?;
    let home = Home::for_params(&args.common.home, &params);
    let report_dir = args.report_dir.clone().unwrap_or_else(|| home.reports());
    let input = args
        .input
        .clone()
        .unwrap_or_else(|| home.raw(&params.data.symbol));
    let tracker = home.tracker()?;
    let input_store = rps_store::open(&input)?;
    let data_tags = rps_cli::data_tags(input_store.as_ref());
    let raw = RawDataset::new(input_store);
    let (manifest, bars, problems) = raw.read_all()?;
    let mut tags = BTreeMap::from([
        ("git_commit".to_owned(), rps_cli::git_commit()),
        ("stage".to_owned(), "quality".to_owned()),
        ("data_hash".to_owned(), manifest.content_hash()),
    ]);
    tags.extend(data_tags);
    rps_tracking::with_run(tracker.as_ref(), "quality", &tags, |run| {
        let now = chrono::Utc::now().timestamp_millis();
        let report: QualityReport =
            quality::run(&bars, manifest.interval, &problems, &params.quality, now);
        let out = rps_store::open(&report_dir)?;
        let json = serde_json::to_vec_pretty(&report)?;
        let closes: Vec<(i64, f64)> = bars.iter().map(|b| (b.ts, b.close)).collect();
        let html = rps_report::quality_html(
            &report,
            &format!("Data quality: {} {}", manifest.symbol, manifest.interval),
            &closes,
        );
        out.put("quality.json", &json)?;
        out.put("quality.html", html.as_bytes())?;
        run.log_params(&[
            ("dataset".to_owned(), raw.uri()),
            (
                "max_null_fraction".to_owned(),
                params.quality.max_null_fraction.to_string(),
            ),
            (
                "max_gap_fraction".to_owned(),
                params.quality.max_gap_fraction.to_string(),
            ),
            (
                "outlier_sigmas".to_owned(),
                params.quality.outlier_sigmas.to_string(),
            ),
            (
                "spike_sigmas".to_owned(),
                params.quality.spike_sigmas.to_string(),
            ),
            (
                "max_frozen_bars".to_owned(),
                params.quality.max_frozen_bars.to_string(),
            ),
        ])?;
        let mut values: Vec<(String, f64)> = vec![
            ("rows".to_owned(), report.rows as f64),
            ("passed".to_owned(), f64::from(u8::from(report.passed))),
        ];
        values.extend(
            report
                .checks
                .iter()
                .map(|c| (format!("check_{}", c.name), c.value)),
        );
        run.log_owned_values(&values)?;
        run.log_artifact("quality.json", &json)?;
        run.log_artifact("quality.html", html.as_bytes())?;
        for c in &report.checks {
            if c.passed && c.name == "off_grid" && !c.rows.is_empty() {
                // Snapped off-grid bars: accepted, but worth a look.
                tracing::warn!("check {:<12} pass  {}", c.name, c.detail);
            } else if c.passed {
                tracing::info!("check {:<12} pass  {}", c.name, c.detail);
            } else {
                tracing::warn!(
                    "check {:<12} FAIL  {} (value {:.6}, limit {:.6})",
                    c.name,
                    c.detail,
                    c.value,
                    c.threshold
                );
            }
        }
        tracing::info!(
            "report written to {} and {}",
            out.uri("quality.json"),
            out.uri("quality.html")
        );
        if report.passed {
            Ok(())
        } else {
            Err(QualityError::Gate {
                failed: report
                    .failures()
                    .map(|c| format!("{}: {}", c.name, c.detail))
                    .collect(),
            })
        }
    })
}

//! Reports for people: the HTML data-quality profile ([`quality_html`]), the Markdown
//! model-versus-baselines table ([`metrics_table`]), the PNG plot of predicted against realized
//! volatility ([`forecast_png`]) and the plots of a forecast distribution ([`band_png`]: an
//! interval band per month; [`reliability_png`], [`coverage_png`], [`importance_png`]). Pure
//! functions from values to strings or bytes; writing them is the stage's business.

mod plots;
mod quality;

pub use plots::*;
pub use quality::quality_html;
use rps_core::metrics::Scores;
use std::fmt::Write as _;

pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub(crate) fn fmt_ts(ms: Option<i64>) -> String {
    ms.and_then(chrono::DateTime::from_timestamp_millis)
        .map_or_else(
            || "-".to_owned(),
            |d| d.format("%Y-%m-%d %H:%M UTC").to_string(),
        )
}

pub(crate) fn num(v: f64) -> String {
    if v.is_nan() {
        "–".to_owned()
    } else if v != 0.0 && (v.abs() >= 1e6 || v.abs() < 1e-3) {
        format!("{v:.4e}")
    } else {
        format!("{v:.4}")
    }
}

/// One row of the comparison table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub name: String,
    pub scores: Scores,
}

/// A Markdown table of models and baselines, best QLIKE first marked in bold.
pub fn metrics_table(rows: &[Row]) -> String {
    let best = rows
        .iter()
        .map(|r| r.scores.qlike)
        .fold(f64::INFINITY, f64::min);
    let mut s = String::from(
        "| forecaster | QLIKE | MSE σ² | RMSE | MAE | R² | R² (log) | MZ R² (log) | rows |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let name = if (r.scores.qlike - best).abs() < f64::EPSILON {
            format!("**{}**", r.name)
        } else {
            r.name.clone()
        };
        let _ = writeln!(
            s,
            "| {name} | {:.4} | {:.3e} | {:.6} | {:.6} | {:.4} | {:.4} | {:.4} | {} |",
            r.scores.qlike,
            r.scores.mse_var,
            r.scores.rmse,
            r.scores.mae,
            r.scores.r2,
            r.scores.r2_log,
            r.scores.mz_r2_log,
            r.scores.n
        );
    }
    s
}

/// One forecaster in one walk-forward fold.
#[derive(Debug, Clone, PartialEq)]
pub struct FoldRow {
    /// 1-based fold number.
    pub fold: usize,
    /// The fold's test span, e.g. `2018-07-01 00:00 – 2018-08-01 23:00`.
    pub span: String,
    pub train_rows: usize,
    pub name: String,
    pub scores: Scores,
    /// Diebold–Mariano statistic of this forecaster against HAR-RV in the fold (model only).
    pub dm: Option<f64>,
}

/// A Markdown table of every forecaster in every walk-forward fold; in each fold the lowest
/// QLIKE is marked in bold.
pub fn fold_table(rows: &[FoldRow]) -> String {
    let mut s = String::from(
        "| fold | test span (UTC) | train rows | forecaster | QLIKE | RMSE | MAE | R² (log) | DM vs HAR-RV | rows |\n|---:|---|---:|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let best = rows
            .iter()
            .filter(|x| x.fold == r.fold)
            .map(|x| x.scores.qlike)
            .fold(f64::INFINITY, f64::min);
        let name = if (r.scores.qlike - best).abs() < f64::EPSILON {
            format!("**{}**", r.name)
        } else {
            r.name.clone()
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {name} | {:.4} | {:.6} | {:.6} | {:.4} | {} | {} |",
            r.fold,
            r.span,
            r.train_rows,
            r.scores.qlike,
            r.scores.rmse,
            r.scores.mae,
            r.scores.r2_log,
            r.dm.map_or_else(String::new, |d| format!("{d:.2}")),
            r.scores.n
        );
    }
    s
}

/// The one font every plot draws with (registered as `sans-serif`).
static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

#[derive(Debug, thiserror::Error)]
#[error("could not draw the plot: {0}")]
pub struct PlotError(String);

/// A PNG (width × height) of realized volatility against each named forecast over time.
pub fn forecast_png(
    ts: &[i64],
    realized: &[f64],
    series: &[(&str, &[f64])],
    title: &str,
    width: u32,
    height: u32,
) -> Result<Vec<u8>, PlotError> {
    series_png(
        ts,
        ("realized", realized),
        series,
        title,
        "hourly volatility",
        width,
        height,
    )
}

/// A PNG (width × height) of non-negative series over time: a reference series in grey and the
/// named `series` in colour, the y axis from 0 and labelled `y_desc`.
pub fn series_png(
    ts: &[i64],
    reference: (&str, &[f64]),
    series: &[(&str, &[f64])],
    title: &str,
    y_desc: &str,
    width: u32,
    height: u32,
) -> Result<Vec<u8>, PlotError> {
    use plotters::prelude::*;
    let (reference_name, realized) = reference;
    let err = |e: &dyn std::fmt::Display| PlotError(e.to_string());
    // Registering twice is harmless; the font is needed before any text is drawn.
    let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    let mut rgb = vec![0u8; (width * height * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let (t0, t1) = (
            ts.first().copied().unwrap_or(0),
            ts.last()
                .copied()
                .unwrap_or(1)
                .max(ts.first().copied().unwrap_or(0) + 1),
        );
        let all = realized
            .iter()
            .chain(series.iter().flat_map(|(_, s)| s.iter()))
            .copied()
            .filter(|v| v.is_finite());
        let ymax = all.fold(0.0_f64, f64::max) * 1.05;
        let to_days = |t: i64| (t - t0) as f64 / 86_400_000.0;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..to_days(t1), 0.0..ymax.max(1e-6))
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc(format!("days since {}", fmt_ts(Some(t0))))
            .y_desc(y_desc)
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(|e| err(&e))?;
        chart
            .draw_series(LineSeries::new(
                ts.iter().zip(realized).map(|(t, v)| (to_days(*t), *v)),
                RGBColor(170, 170, 170),
            ))
            .map_err(|e| err(&e))?
            .label(reference_name)
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], RGBColor(170, 170, 170)));
        let colors = [
            RGBColor(214, 39, 40),
            RGBColor(31, 119, 180),
            RGBColor(44, 160, 44),
            RGBColor(255, 127, 14),
        ];
        for (i, (name, s)) in series.iter().enumerate() {
            let c = colors[i % colors.len()];
            chart
                .draw_series(LineSeries::new(
                    ts.iter().zip(s.iter()).map(|(t, v)| (to_days(*t), *v)),
                    c.stroke_width(2),
                ))
                .map_err(|e| err(&e))?
                .label(*name)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], c.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .draw()
            .map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
    }
    encode_png(&rgb, width, height).map_err(|e| err(&e))
}

fn encode_png(rgb: &[u8], width: u32, height: u32) -> Result<Vec<u8>, png::EncodingError> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, width, height);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut w = enc.write_header()?;
    w.write_image_data(rgb)?;
    w.finish()?;
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn scores(q: f64) -> Scores {
        Scores {
            rmse: 0.002,
            mae: 0.001,
            r2: 0.3,
            r2_log: 0.45,
            qlike: q,
            mse_var: 1e-9,
            mz_r2_log: 0.5,
            n: 100,
        }
    }

    #[test]
    fn table_snapshot() {
        let rows = vec![
            Row {
                name: "model".into(),
                scores: scores(0.21),
            },
            Row {
                name: "har_rv".into(),
                scores: scores(0.25),
            },
        ];
        insta::assert_snapshot!(metrics_table(&rows));
    }

    #[test]
    fn fold_table_snapshot() {
        let row = |fold: usize, name: &str, q: f64, dm: Option<f64>| FoldRow {
            fold,
            span: format!("2018-0{fold}-01 00:00 – 2018-0{fold}-28 23:00"),
            train_rows: 1000 * fold,
            name: name.into(),
            scores: scores(q),
            dm,
        };
        let rows = vec![
            row(1, "model", 0.21, Some(-2.5)),
            row(1, "har_rv", 0.25, None),
            row(2, "model", 0.31, Some(0.4)),
            row(2, "har_rv", 0.30, None),
        ];
        let t = fold_table(&rows);
        assert_eq!(t.matches("**").count(), 4, "one best per fold");
        insta::assert_snapshot!(t);
    }

    #[test]
    fn png_is_a_png() {
        let ts: Vec<i64> = (0..100).map(|i| i * 3_600_000).collect();
        let y: Vec<f64> = (0..100)
            .map(|i| 0.01 + 0.005 * (f64::from(i) / 7.0).sin())
            .collect();
        let p: Vec<f64> = y.iter().map(|v| v * 1.1).collect();
        let png = forecast_png(&ts, &y, &[("model", &p)], "test", 800, 400).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert!(png.len() > 5000);
    }
}

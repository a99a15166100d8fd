//! Plots of a forecast distribution and of how well it was calibrated (issue #16): an interval
//! band against the realized values over time, one panel per calendar month ([`band_png`],
//! [`month_ranges`]); a reliability diagram ([`reliability_png`]); interval coverage by group
//! against the nominal level ([`coverage_png`]); and a horizontal bar chart of feature
//! importance ([`importance_png`]).
//!
//! Drawn like [`crate::series_png`]: plotters' bitmap backend into an RGB buffer, then PNG. Bad
//! input never panics: sizes that cannot be drawn, and series whose lengths do not match their
//! time stamps, are a [`PlotError`]; non-finite values are skipped, and a chart with nothing left
//! to draw says so ("no data").

use crate::{FONT, PlotError, encode_png};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::ops::Range;

/// Colours of successive forecasters (the model first, then the baselines).
const PALETTE: [RGBColor; 5] = [
    RGBColor(214, 39, 40),
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
];
const BAND: RGBColor = RGBColor(189, 215, 238);
const REALIZED: RGBColor = RGBColor(70, 70, 70);
const GRID: RGBColor = RGBColor(150, 150, 150);
/// The largest image drawn, in pixels (a 24-panel 1400-wide image is ~12 M).
const MAX_PIXELS: u64 = 40_000_000;
const DAY_MS: f64 = 86_400_000.0;

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

fn err(e: &dyn std::fmt::Display) -> PlotError {
    PlotError(e.to_string())
}

/// Draw on a white `width` × `height` canvas and encode it as PNG.
fn canvas(
    width: u32,
    height: u32,
    draw: impl FnOnce(&Area<'_>) -> Result<(), PlotError>,
) -> Result<Vec<u8>, PlotError> {
    if width < 100 || height < 100 || u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(PlotError(format!(
            "cannot draw a {width} × {height} image (at least 100 × 100, at most {MAX_PIXELS} pixels)"
        )));
    }
    // Registering twice is harmless; the font is needed before any text is drawn.
    let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    let mut rgb = vec![0u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        draw(&root)?;
        root.present().map_err(|e| err(&e))?;
    }
    encode_png(&rgb, width, height).map_err(|e| err(&e))
}

/// A short text centred on `area` (e.g. "no data").
fn note(area: &Area<'_>, text: &str) -> Result<(), PlotError> {
    let (w, h) = area.dim_in_pixel();
    let style = TextStyle::from(("sans-serif", 18).into_font())
        .color(&GRID)
        .pos(Pos::new(HPos::Center, VPos::Center));
    area.draw(&Text::new(
        text.to_owned(),
        (
            i32::try_from(w / 2).unwrap_or(0),
            i32::try_from(h / 2).unwrap_or(0),
        ),
        style,
    ))
    .map_err(|e| err(&e))
}

fn date(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map_or_else(String::new, |d| d.format("%Y-%m-%d").to_string())
}

/// The calendar months (UTC) of the time stamps `ts` (ascending, epoch milliseconds), in order:
/// each month's first instant and the range of indices of `ts` inside it.
pub fn month_ranges(ts: &[i64]) -> Vec<(i64, Range<usize>)> {
    use chrono::Datelike;
    let month_start = |t: i64| -> Option<i64> {
        let d = chrono::DateTime::from_timestamp_millis(t)?;
        Some(
            chrono::NaiveDate::from_ymd_opt(d.year(), d.month(), 1)?
                .and_hms_opt(0, 0, 0)?
                .and_utc()
                .timestamp_millis(),
        )
    };
    let mut out: Vec<(i64, Range<usize>)> = Vec::new();
    for (i, &t) in ts.iter().enumerate() {
        let Some(m) = month_start(t) else { continue };
        match out.last_mut() {
            Some((last, r)) if *last == m => r.end = i + 1,
            _ => out.push((m, i..i + 1)),
        }
    }
    out
}

/// The first instant of the month after the one starting at `month` (epoch ms).
pub fn next_month(month: i64) -> i64 {
    use chrono::{Datelike, Months};
    chrono::DateTime::from_timestamp_millis(month)
        .and_then(|d| d.checked_add_months(Months::new(1)))
        .and_then(|d| chrono::NaiveDate::from_ymd_opt(d.year(), d.month(), 1)?.and_hms_opt(0, 0, 0))
        .map_or(month + 31 * 86_400_000, |d| d.and_utc().timestamp_millis())
}

/// Runs of consecutive indices at which `ok` holds and no time step exceeds `max_gap` ms.
fn runs(ts: &[i64], ok: impl Fn(usize) -> bool, max_gap: i64) -> Vec<Range<usize>> {
    let mut out: Vec<Range<usize>> = Vec::new();
    let mut cur: Option<Range<usize>> = None;
    for i in 0..ts.len() {
        if !ok(i) {
            out.extend(cur.take());
            continue;
        }
        cur = match cur {
            Some(r) if ts[i] - ts[r.end - 1] <= max_gap => Some(r.start..i + 1),
            Some(r) => {
                out.push(r);
                Some(i..i + 1)
            }
            None => Some(i..i + 1),
        };
    }
    out.extend(cur);
    out
}

/// One panel of [`band_png`]: realized values over time, a shaded interval and point forecasts.
#[derive(Debug, Clone)]
pub struct BandPanel<'a> {
    /// Drawn above the panel, e.g. `2021-03: 80 % interval coverage 81.2 %`.
    pub title: String,
    /// Epoch milliseconds, ascending.
    pub ts: &'a [i64],
    /// Drawn as dots; values above the axis as ▲ at its top.
    pub realized: &'a [f64],
    /// Lower and upper edges of the shaded interval, or `None` for no band.
    pub band: Option<(&'a [f64], &'a [f64])>,
    /// Point forecasts, drawn as lines in the palette's colours.
    pub lines: Vec<(&'a str, &'a [f64])>,
    /// The x axis's span (epoch ms), e.g. the whole calendar month; `None`: the span of `ts`.
    pub span: Option<(i64, i64)>,
}

impl BandPanel<'_> {
    fn check(&self) -> Result<(), PlotError> {
        let n = self.ts.len();
        let mut lens = vec![("realized", self.realized.len())];
        if let Some((lo, hi)) = self.band {
            lens.extend([("band lower edge", lo.len()), ("band upper edge", hi.len())]);
        }
        lens.extend(self.lines.iter().map(|(name, v)| (*name, v.len())));
        match lens.iter().find(|(_, l)| *l != n) {
            Some((name, l)) => Err(PlotError(format!(
                "panel {:?}: {name} has {l} values for {n} time stamps",
                self.title
            ))),
            None => Ok(()),
        }
    }
}

/// A PNG of `panels` stacked vertically, each `width` × `panel_height`: the band shaded (labelled
/// `band_label` in the legend), each line, the realized values as dots, dates on the x axis and
/// volatility in percent on the y axis. The y axis of each panel runs to the highest band edge
/// or line, or the realized values' 99th percentile if higher, so that a single spike does not
/// flatten the month; realized values above it are drawn as ▲ at the top.
pub fn band_png(
    panels: &[BandPanel<'_>],
    band_label: &str,
    width: u32,
    panel_height: u32,
) -> Result<Vec<u8>, PlotError> {
    if panels.is_empty() {
        return Err(PlotError("no panels to draw".to_owned()));
    }
    for p in panels {
        p.check()?;
    }
    let height = u32::try_from(panels.len())
        .ok()
        .and_then(|n| n.checked_mul(panel_height))
        .ok_or_else(|| PlotError(format!("{} panels are too many", panels.len())))?;
    canvas(width, height, |root| {
        for (p, area) in panels.iter().zip(root.split_evenly((panels.len(), 1))) {
            band_panel(&area, p, band_label)?;
        }
        Ok(())
    })
}

fn band_panel(area: &Area<'_>, p: &BandPanel<'_>, band_label: &str) -> Result<(), PlotError> {
    let (x0, x1) = p.span.unwrap_or((
        p.ts.first().copied().unwrap_or(0),
        p.ts.last().copied().unwrap_or(0),
    ));
    let xmax = ((x1 - x0) as f64 / DAY_MS).max(1.0 / 24.0);
    let to_days = |t: i64| (t - x0) as f64 / DAY_MS;
    let fin = |v: &f64| v.is_finite();
    let mut realized: Vec<f64> = p.realized.iter().copied().filter(fin).collect();
    realized.sort_by(f64::total_cmp);
    let r99 = if realized.is_empty() {
        0.0
    } else {
        realized[((realized.len() - 1) as f64 * 0.99).round() as usize]
    };
    let top = p
        .band
        .iter()
        .flat_map(|(_, hi)| hi.iter())
        .chain(p.lines.iter().flat_map(|(_, v)| v.iter()))
        .copied()
        .filter(fin)
        .fold(r99, f64::max);
    let ymax = if top > 0.0 { top } else { 1.0 };
    // Headroom above the data for the legend.
    let yaxis = ymax * 1.3;
    let clamp = |v: f64| v.clamp(0.0, ymax);
    let mut chart = ChartBuilder::on(area)
        .caption(&p.title, ("sans-serif", 16))
        .margin(8)
        // Room for the last date label, centred on the right edge.
        .margin_right(40)
        .x_label_area_size(28)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..xmax, 0.0..yaxis)
        .map_err(|e| err(&e))?;
    let fmt_x = |d: &f64| date(x0 + (d * DAY_MS).round() as i64);
    let fmt_y = |v: &f64| format!("{:.2}", v * 100.0);
    chart
        .configure_mesh()
        .x_labels(12)
        .y_labels(6)
        .x_label_formatter(&fmt_x)
        .y_label_formatter(&fmt_y)
        .y_desc("hourly σ (%)")
        .light_line_style(WHITE)
        .bold_line_style(RGBColor(225, 225, 225))
        .label_style(("sans-serif", 12))
        .draw()
        .map_err(|e| err(&e))?;
    if p.ts.is_empty() {
        return note(area, "no data");
    }
    // Steps longer than three bars (missing hours) break the band and the lines.
    let step =
        p.ts.windows(2)
            .map(|w| w[1] - w[0])
            .filter(|d| *d > 0)
            .min()
            .unwrap_or(3_600_000);
    let gap = 3 * step;
    if let Some((lo, hi)) = p.band {
        let segments = runs(p.ts, |i| lo[i].is_finite() && hi[i].is_finite(), gap);
        for (k, r) in segments.iter().enumerate() {
            let pts: Vec<(f64, f64)> = r
                .clone()
                .map(|i| (to_days(p.ts[i]), clamp(hi[i])))
                .chain(r.clone().rev().map(|i| (to_days(p.ts[i]), clamp(lo[i]))))
                .collect();
            let s = chart
                .draw_series(std::iter::once(Polygon::new(pts, BAND.filled())))
                .map_err(|e| err(&e))?;
            if k == 0 {
                s.label(band_label)
                    .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 20, y + 5)], BAND.filled()));
            }
        }
    }
    let s = chart
        .draw_series(
            p.ts.iter()
                .zip(p.realized)
                .filter(|(_, v)| v.is_finite())
                .map(|(t, v)| {
                    let (x, y) = (to_days(*t), clamp(*v));
                    if *v > ymax {
                        TriangleMarker::new((x, y), 4, REALIZED.filled()).into_dyn()
                    } else {
                        Circle::new((x, y), 2, REALIZED.filled()).into_dyn()
                    }
                }),
        )
        .map_err(|e| err(&e))?;
    s.label("realized (▲ above the axis)")
        .legend(|(x, y)| Circle::new((x + 10, y), 3, REALIZED.filled()));
    for (j, (name, v)) in p.lines.iter().enumerate() {
        let c = PALETTE[j % PALETTE.len()];
        let segments = runs(p.ts, |i| v[i].is_finite(), gap);
        for (k, r) in segments.iter().enumerate() {
            let s = chart
                .draw_series(LineSeries::new(
                    r.clone().map(|i| (to_days(p.ts[i]), clamp(v[i]))),
                    c.stroke_width(1),
                ))
                .map_err(|e| err(&e))?;
            if k == 0 {
                s.label(*name).legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 20, y)], c.stroke_width(1))
                });
            }
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(GRID)
        .label_font(("sans-serif", 12))
        .draw()
        .map_err(|e| err(&e))
}

/// A reliability diagram (`width` × `height`): for each named forecaster its points (nominal
/// quantile level, observed share of outcomes at or below that quantile), joined by a line,
/// against the diagonal of perfect calibration; below it, the same points as the deviation
/// from the diagonal in percentage points, where misses of a point or two are visible.
/// Non-finite points are skipped; with none left, the diagonal alone and "no data".
pub fn reliability_png(
    series: &[(&str, &[(f64, f64)])],
    title: &str,
    width: u32,
    height: u32,
) -> Result<Vec<u8>, PlotError> {
    let clean: Vec<(&str, Vec<(f64, f64)>)> = series
        .iter()
        .map(|(name, pts)| {
            (
                *name,
                pts.iter()
                    .filter(|(x, y)| x.is_finite() && y.is_finite())
                    .map(|(x, y)| (x.clamp(0.0, 1.0), y.clamp(0.0, 1.0)))
                    .collect(),
            )
        })
        .collect();
    canvas(width, height, |root| {
        let (upper, lower) = root.split_vertically(height * 64 / 100);
        let mut chart = ChartBuilder::on(&upper)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..1.0, 0.0..1.0)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_labels(11)
            .y_labels(11)
            .x_desc("nominal quantile level")
            .y_desc("share of realized ≤ quantile")
            .light_line_style(WHITE)
            .bold_line_style(RGBColor(230, 230, 230))
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(|e| err(&e))?;
        chart
            .draw_series(std::iter::once(PathElement::new(
                [(0.0, 0.0), (1.0, 1.0)],
                GRID.stroke_width(1),
            )))
            .map_err(|e| err(&e))?
            .label("perfect calibration")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], GRID.stroke_width(1)));
        for (j, (name, pts)) in clean.iter().enumerate() {
            let c = PALETTE[j % PALETTE.len()];
            chart
                .draw_series(LineSeries::new(pts.iter().copied(), c.stroke_width(2)))
                .map_err(|e| err(&e))?
                .label(*name)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], c.stroke_width(2)));
            chart
                .draw_series(pts.iter().map(|p| Circle::new(*p, 4, c.filled())))
                .map_err(|e| err(&e))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(GRID)
            .label_font(("sans-serif", 14))
            .draw()
            .map_err(|e| err(&e))?;
        // The deviations, in percentage points, on a symmetric axis of at least ±2.
        let dev = clean
            .iter()
            .flat_map(|(_, p)| p.iter().map(|(x, y)| ((y - x) * 100.0).abs()))
            .fold(2.0, f64::max)
            * 1.15;
        let mut chart = ChartBuilder::on(&lower)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..1.0, -dev..dev)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_labels(11)
            .y_labels(7)
            .x_desc("nominal quantile level")
            .y_desc("observed − nominal (points)")
            .light_line_style(WHITE)
            .bold_line_style(RGBColor(230, 230, 230))
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(|e| err(&e))?;
        chart
            .draw_series(std::iter::once(PathElement::new(
                [(0.0, 0.0), (1.0, 0.0)],
                GRID.stroke_width(1),
            )))
            .map_err(|e| err(&e))?;
        for (j, (_, pts)) in clean.iter().enumerate() {
            let c = PALETTE[j % PALETTE.len()];
            let d: Vec<(f64, f64)> = pts.iter().map(|(x, y)| (*x, (y - x) * 100.0)).collect();
            chart
                .draw_series(LineSeries::new(d.iter().copied(), c.stroke_width(2)))
                .map_err(|e| err(&e))?;
            chart
                .draw_series(d.iter().map(|p| Circle::new(*p, 4, c.filled())))
                .map_err(|e| err(&e))?;
        }
        if clean.iter().all(|(_, p)| p.is_empty()) {
            note(root, "no data")?;
        }
        Ok(())
    })
}

/// Grouped bars (`width` × `height`) of interval coverage: one group per name in `groups`, one
/// bar per forecaster in `series` (`series[j].1[g]` is forecaster j's coverage in group g, a
/// share in [0, 1]), with the nominal coverage as a line and `nominal ± tolerance` shaded.
/// Non-finite values are drawn as "n/a" without a bar.
pub fn coverage_png(
    groups: &[&str],
    series: &[(&str, &[f64])],
    nominal: f64,
    tolerance: f64,
    title: &str,
    width: u32,
    height: u32,
) -> Result<Vec<u8>, PlotError> {
    if let Some((name, v)) = series.iter().find(|(_, v)| v.len() != groups.len()) {
        return Err(PlotError(format!(
            "{name} has {} values for {} groups",
            v.len(),
            groups.len()
        )));
    }
    canvas(width, height, |root| {
        let ng = groups.len().max(1) as f64;
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..ng, 0.0..1.2)
            .map_err(|e| err(&e))?;
        let fmt_y = |v: &f64| {
            if *v <= 1.0 + 1e-9 {
                format!("{:.0} %", v * 100.0)
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .y_labels(13)
            .y_label_formatter(&fmt_y)
            .y_desc("coverage of the interval")
            .light_line_style(WHITE)
            .bold_line_style(RGBColor(230, 230, 230))
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(|e| err(&e))?;
        let (lo, hi) = (
            (nominal - tolerance).clamp(0.0, 1.2),
            (nominal + tolerance).clamp(0.0, 1.2),
        );
        if nominal.is_finite() {
            if tolerance.is_finite() && tolerance > 0.0 {
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(0.0, lo), (ng, hi)],
                        RGBColor(200, 230, 200).filled(),
                    )))
                    .map_err(|e| err(&e))?
                    .label(format!(
                        "nominal ± {:.0} points",
                        (tolerance * 100.0).round()
                    ))
                    .legend(|(x, y)| {
                        Rectangle::new(
                            [(x, y - 5), (x + 20, y + 5)],
                            RGBColor(200, 230, 200).filled(),
                        )
                    });
            }
            chart
                .draw_series(std::iter::once(PathElement::new(
                    [(0.0, nominal), (ng, nominal)],
                    BLACK.stroke_width(2),
                )))
                .map_err(|e| err(&e))?
                .label(format!("nominal {:.0} %", nominal * 100.0))
                .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLACK.stroke_width(2)));
        }
        let m = series.len().max(1) as f64;
        let w = 0.8 / m;
        let value_style = TextStyle::from(("sans-serif", 12).into_font())
            .pos(Pos::new(HPos::Center, VPos::Bottom));
        let inside_style = TextStyle::from(("sans-serif", 12).into_font())
            .color(&WHITE)
            .pos(Pos::new(HPos::Center, VPos::Top));
        for (j, (name, v)) in series.iter().enumerate() {
            let c = PALETTE[j % PALETTE.len()];
            let bars = v
                .iter()
                .enumerate()
                .filter(|(_, y)| y.is_finite())
                .map(|(g, y)| {
                    let x = g as f64 + 0.1 + j as f64 * w;
                    Rectangle::new(
                        [(x + 0.08 * w, 0.0), (x + 0.92 * w, y.clamp(0.0, 1.2))],
                        c.filled(),
                    )
                });
            chart
                .draw_series(bars)
                .map_err(|e| err(&e))?
                .label(*name)
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 20, y + 5)], c.filled()));
            for (g, y) in v.iter().enumerate() {
                let x = g as f64 + 0.1 + (j as f64 + 0.5) * w;
                // Inside the top of a tall bar (clear of the nominal line), above a short one.
                let (text, at, inside) = if y.is_finite() {
                    (format!("{:.1}", y * 100.0), y.clamp(0.0, 1.2), *y > 0.15)
                } else {
                    ("n/a".to_owned(), 0.0, false)
                };
                let (px, py) = chart.backend_coord(&(x, at));
                let (style, py) = if inside {
                    (inside_style.clone(), py + 4)
                } else {
                    (value_style.clone(), py - 3)
                };
                root.draw(&Text::new(text, (px, py), style))
                    .map_err(|e| err(&e))?;
            }
        }
        let label_style =
            TextStyle::from(("sans-serif", 15).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
        for (g, name) in groups.iter().enumerate() {
            let (px, py) = chart.backend_coord(&(g as f64 + 0.5, 0.0));
            root.draw(&Text::new(
                (*name).to_owned(),
                (px, py + 8),
                label_style.clone(),
            ))
            .map_err(|e| err(&e))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(GRID)
            .label_font(("sans-serif", 13))
            .draw()
            .map_err(|e| err(&e))?;
        if groups.is_empty() || series.is_empty() {
            note(root, "no data")?;
        }
        Ok(())
    })
}

/// Each item's share of the total of `items`' finite, non-negative values, largest first
/// (ties by name); the others are left out.
pub fn shares(items: &[(&str, f64)]) -> Vec<(String, f64, f64)> {
    let mut v: Vec<(String, f64)> = items
        .iter()
        .filter(|(_, g)| g.is_finite() && *g >= 0.0)
        .map(|(n, g)| ((*n).to_owned(), *g))
        .collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let total: f64 = v.iter().map(|(_, g)| g).sum();
    v.into_iter()
        .map(|(n, g)| (n, g, if total > 0.0 { g / total } else { 0.0 }))
        .collect()
}

/// Horizontal bars (`width` × `height`) of the `top` largest of `items` (name, importance) as a
/// share of the total of all of them ([`shares`]), the largest at the top.
pub fn importance_png(
    items: &[(&str, f64)],
    top: usize,
    title: &str,
    x_desc: &str,
    width: u32,
    height: u32,
) -> Result<Vec<u8>, PlotError> {
    let rows: Vec<(String, f64, f64)> = shares(items).into_iter().take(top).collect();
    canvas(width, height, |root| {
        let n = rows.len().max(1) as f64;
        let xmax = rows.iter().map(|r| r.2).fold(0.0, f64::max).max(0.01) * 1.15;
        let longest = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(0);
        let label_px = u32::try_from(longest * 8 + 16)
            .unwrap_or(300)
            .clamp(60, 320);
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(label_px)
            .build_cartesian_2d(0.0..xmax, 0.0..n)
            .map_err(|e| err(&e))?;
        let fmt_x = |v: &f64| format!("{:.0} %", v * 100.0);
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(0)
            .x_labels(8)
            .x_label_formatter(&fmt_x)
            .x_desc(x_desc)
            .light_line_style(WHITE)
            .bold_line_style(RGBColor(230, 230, 230))
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(|e| err(&e))?;
        let c = PALETTE[1];
        chart
            .draw_series(rows.iter().enumerate().map(|(i, r)| {
                let y = n - i as f64;
                Rectangle::new([(0.0, y - 0.85), (r.2, y - 0.15)], c.filled())
            }))
            .map_err(|e| err(&e))?;
        let name_style = TextStyle::from(("sans-serif", 13).into_font())
            .pos(Pos::new(HPos::Right, VPos::Center));
        let value_style =
            TextStyle::from(("sans-serif", 12).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
        for (i, r) in rows.iter().enumerate() {
            let y = n - i as f64 - 0.5;
            let (px, py) = chart.backend_coord(&(0.0, y));
            root.draw(&Text::new(r.0.clone(), (px - 6, py), name_style.clone()))
                .map_err(|e| err(&e))?;
            let (vx, vy) = chart.backend_coord(&(r.2, y));
            root.draw(&Text::new(
                format!("{:.1} %", r.2 * 100.0),
                (vx + 4, vy),
                value_style.clone(),
            ))
            .map_err(|e| err(&e))?;
        }
        if rows.is_empty() {
            note(root, "no data")?;
        }
        Ok(())
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The PNG's width and height, from its header.
    fn size(png: &[u8]) -> (u32, u32) {
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let dec = png::Decoder::new(png);
        let reader = dec.read_info().unwrap();
        let info = reader.info();
        (info.width, info.height)
    }

    const H: i64 = 3_600_000;
    /// 2021-02-20 00:00 UTC.
    const T0: i64 = 1_613_779_200_000;

    fn hours(n: usize) -> Vec<i64> {
        (0..n as i64).map(|i| T0 + i * H).collect()
    }

    #[test]
    fn months_split_at_calendar_boundaries() {
        let ts = hours(24 * 40); // 2021-02-20 .. 2021-03-31
        let m = month_ranges(&ts);
        assert_eq!(m.len(), 2);
        assert_eq!(date(m[0].0), "2021-02-01");
        assert_eq!(date(m[1].0), "2021-03-01");
        assert_eq!(m[0].1, 0..24 * 9);
        assert_eq!(m[1].1, 24 * 9..24 * 40);
        assert_eq!(date(next_month(m[1].0)), "2021-04-01");
        assert_eq!(date(next_month(m[0].0)), "2021-03-01");
        assert!(month_ranges(&[]).is_empty());
    }

    #[test]
    fn runs_break_at_gaps_and_bad_values() {
        let ts = [0, 1, 2, 10, 11, 12];
        let ok = [true, true, false, true, true, true];
        assert_eq!(runs(&ts, |i| ok[i], 3), vec![0..2, 3..6]);
        assert_eq!(runs(&ts, |_| true, 3), vec![0..3, 3..6]);
        assert!(runs(&ts, |_| false, 3).is_empty());
    }

    #[test]
    fn band_png_has_the_expected_size() {
        let ts = hours(24 * 40);
        let y: Vec<f64> = (0..ts.len())
            .map(|i| 0.005 + 0.003 * (i as f64 / 9.0).sin().abs())
            .collect();
        let mean: Vec<f64> = y.iter().map(|v| v * 1.05).collect();
        let lo: Vec<f64> = y.iter().map(|v| v * 0.6).collect();
        let mut hi: Vec<f64> = y.iter().map(|v| v * 1.6).collect();
        hi[30] = f64::NAN;
        let mut realized = y.clone();
        realized[5] = f64::NAN;
        realized[6] = 1.0; // a spike far above the axis
        let panels: Vec<BandPanel<'_>> = month_ranges(&ts)
            .into_iter()
            .map(|(m, r)| BandPanel {
                title: date(m),
                ts: &ts[r.clone()],
                realized: &realized[r.clone()],
                band: Some((&lo[r.clone()], &hi[r.clone()])),
                lines: vec![("mean", &mean[r])],
                span: Some((m, next_month(m))),
            })
            .collect();
        let png = band_png(&panels, "80 % interval", 1200, 300).unwrap();
        assert_eq!(size(&png), (1200, 600));
        assert!(png.len() > 10_000);
    }

    #[test]
    fn band_png_refuses_bad_input_and_draws_empty_panels() {
        assert!(band_png(&[], "b", 800, 300).is_err());
        let ts = hours(10);
        let short = [0.01; 9];
        let bad = BandPanel {
            title: "x".into(),
            ts: &ts,
            realized: &short,
            band: None,
            lines: vec![],
            span: None,
        };
        assert!(band_png(&[bad], "b", 800, 300).is_err());
        let nan = [f64::NAN; 10];
        let empty = BandPanel {
            title: "empty".into(),
            ts: &[],
            realized: &[],
            band: Some((&[], &[])),
            lines: vec![("mean", &[])],
            span: None,
        };
        let all_nan = BandPanel {
            title: "nan".into(),
            ts: &ts,
            realized: &nan,
            band: Some((&nan, &nan)),
            lines: vec![("mean", &nan)],
            span: None,
        };
        let png = band_png(&[empty, all_nan], "b", 800, 300).unwrap();
        assert_eq!(size(&png), (800, 600));
        let tiny = BandPanel {
            title: "t".into(),
            ts: &ts,
            realized: &nan,
            band: None,
            lines: vec![],
            span: None,
        };
        assert!(band_png(&[tiny], "b", 10, 10).is_err());
    }

    #[test]
    fn reliability_png_draws_and_survives_nan() {
        let model = [(0.05, 0.06), (0.5, 0.48), (0.95, 0.93)];
        let har = [(0.05, f64::NAN), (0.5, 0.55), (0.95, 0.97)];
        let png = reliability_png(&[("model", &model), ("har_rv", &har)], "t", 700, 800).unwrap();
        assert_eq!(size(&png), (700, 800));
        let empty = reliability_png(&[], "t", 700, 600).unwrap();
        assert_eq!(size(&empty), (700, 600));
        let nan = [(f64::NAN, f64::NAN)];
        assert!(reliability_png(&[("model", &nan)], "t", 700, 600).is_ok());
    }

    #[test]
    fn coverage_png_draws_and_checks_lengths() {
        let groups = ["calm", "normal", "turbulent"];
        let png = coverage_png(
            &groups,
            &[
                ("model", &[0.83, 0.81, 0.76]),
                ("ewma", &[0.9, f64::NAN, 0.7]),
            ],
            0.8,
            0.05,
            "t",
            900,
            500,
        )
        .unwrap();
        assert_eq!(size(&png), (900, 500));
        assert!(coverage_png(&groups, &[("model", &[0.8])], 0.8, 0.05, "t", 900, 500).is_err());
        let empty = coverage_png(&[], &[], f64::NAN, f64::NAN, "t", 900, 500).unwrap();
        assert_eq!(size(&empty), (900, 500));
    }

    #[test]
    fn importance_keeps_the_top_and_their_shares() {
        let items = [
            ("a", 1.0),
            ("b", 3.0),
            ("c", f64::NAN),
            ("d", 0.0),
            ("e", -1.0),
        ];
        let s = shares(&items);
        assert_eq!(
            s,
            vec![
                ("b".to_owned(), 3.0, 0.75),
                ("a".to_owned(), 1.0, 0.25),
                ("d".to_owned(), 0.0, 0.0)
            ]
        );
        let png = importance_png(&items, 2, "t", "share of gain", 900, 500).unwrap();
        assert_eq!(size(&png), (900, 500));
        let empty = importance_png(&[], 20, "t", "share of gain", 900, 500).unwrap();
        assert_eq!(size(&empty), (900, 500));
        assert!(shares(&[("z", 0.0)]).iter().all(|r| r.2 == 0.0));
    }
}

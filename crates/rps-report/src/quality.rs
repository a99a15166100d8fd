//! The data-quality page (`quality.html`): the verdict, the checks with the bars behind every
//! failed or warned one, the close price over time with those bars marked, and per-column
//! statistics with labelled histograms — what pandas-profiling gives Python stacks, in one
//! self-contained file (inline SVG, no script, no network).

use crate::{esc, fmt_ts, num};
use rps_core::quality::QualityReport;
use std::fmt::Write as _;

/// Most points of the price line (the series is thinned to this many, min and max of each
/// stretch kept, so spikes stay visible).
const PRICE_POINTS: usize = 1200;
/// The price chart: width, height and the margin for the axis labels (px).
const W: f64 = 900.0;
const H: f64 = 240.0;
const PAD: f64 = 48.0;
/// Room for the price labels left of the chart.
const LEFT: f64 = 96.0;

/// The page for `r`; `closes` is the close price of every bar (time in ms, price), drawn over
/// time with the bars the checks name marked in red.
pub fn quality_html(r: &QualityReport, title: &str, closes: &[(i64, f64)]) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title><style>\
body{{font-family:sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse;margin:1em 0}}\
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}th{{background:#f4f4f4}}td.l{{text-align:left}}\
.pass{{color:#1a7f37;font-weight:bold}}.fail{{color:#cf222e;font-weight:bold}}.warn{{color:#9a6700;font-weight:bold}}\
.col{{display:inline-block;margin:1em;vertical-align:top}}svg text{{font-size:11px;fill:#555}}\
details{{margin:.5em 0}}code{{font-size:90%}}\
</style></head><body><h1>{t}</h1>",
        t = esc(title)
    );
    let verdict = if r.passed {
        "<span class=\"pass\">PASSED</span>"
    } else {
        "<span class=\"fail\">FAILED</span>"
    };
    let _ = write!(
        h,
        "<p>Gate: {verdict} · {} rows · {} bars · from {} to {}</p><h2>Checks</h2><table><tr><th>check</th><th>result</th><th>value</th><th>limit</th><th>detail</th></tr>",
        r.rows,
        esc(&r.interval),
        fmt_ts(r.first_ts),
        fmt_ts(r.last_ts)
    );
    for c in &r.checks {
        // A passed check that still names bars (gaps within the budget, …) is a warning.
        let (cls, word) = match (c.passed, c.rows.is_empty()) {
            (false, _) => ("fail", "FAIL"),
            (true, false) => ("warn", "warn"),
            (true, true) => ("pass", "pass"),
        };
        let _ = write!(
            h,
            "<tr><td class=\"l\">{}</td><td class=\"{cls}\">{word}</td><td>{}</td><td>{}</td><td class=\"l\">{}</td></tr>",
            esc(&c.name),
            num(c.value),
            num(c.threshold),
            esc(&c.detail)
        );
    }
    h.push_str("</table>");
    rows_behind_checks(&mut h, r);
    price_chart(&mut h, r, closes);
    h.push_str("<h2>Columns</h2>");
    for c in &r.columns {
        let _ = write!(h, "<div class=\"col\"><h3>{}</h3><table>", esc(&c.name));
        let q = |i: usize| c.quantiles.get(i).copied().unwrap_or(f64::NAN);
        for (k, v) in [
            ("count", c.count as f64),
            ("missing", c.missing as f64),
            ("mean", c.mean),
            ("std", c.std),
            ("min", c.min),
            ("p5", q(1)),
            ("median", q(3)),
            ("p95", q(5)),
            ("max", c.max),
        ] {
            let _ = write!(h, "<tr><th>{k}</th><td>{}</td></tr>", num(v));
        }
        h.push_str("</table>");
        histogram(&mut h, &c.name, &c.histogram, c.min, c.max);
        h.push_str("</div>");
    }
    h.push_str("</body></html>\n");
    h
}

/// Under the table, for every check that names bars: the bars (UTC), in a fold-out list.
fn rows_behind_checks(h: &mut String, r: &QualityReport) {
    let named: Vec<_> = r.checks.iter().filter(|c| !c.rows.is_empty()).collect();
    if named.is_empty() {
        return;
    }
    h.push_str("<h2>Bars behind the checks</h2>");
    for c in named {
        let _ = write!(
            h,
            "<details{}><summary><b>{}</b>: {} bar{} listed{}</summary><ul>",
            if c.passed { "" } else { " open" },
            esc(&c.name),
            c.rows.len(),
            if c.rows.len() == 1 { "" } else { "s" },
            if c.rows.len() >= rps_core::quality::MAX_ROWS_LISTED {
                " (the first ones)"
            } else {
                ""
            }
        );
        for row in &c.rows {
            let _ = write!(h, "<li><code>{}</code></li>", esc(row));
        }
        h.push_str("</ul></details>");
    }
}

/// Keep at most `max` points: each stretch contributes its lowest and highest point.
fn thin(points: &[(i64, f64)], max: usize) -> Vec<(i64, f64)> {
    let finite: Vec<(i64, f64)> = points
        .iter()
        .copied()
        .filter(|(_, v)| v.is_finite())
        .collect();
    if finite.len() <= max {
        return finite;
    }
    let per = finite.len().div_ceil(max / 2);
    let mut out = Vec::with_capacity(max + 2);
    for chunk in finite.chunks(per) {
        let lo = chunk.iter().min_by(|a, b| a.1.total_cmp(&b.1));
        let hi = chunk.iter().max_by(|a, b| a.1.total_cmp(&b.1));
        if let (Some(&lo), Some(&hi)) = (lo, hi) {
            if lo.0 <= hi.0 {
                out.extend([lo, hi]);
            } else {
                out.extend([hi, lo]);
            }
        }
    }
    out.dedup();
    out
}

/// The close over time, axes labelled, the bars the checks name as red dots.
fn price_chart(h: &mut String, r: &QualityReport, closes: &[(i64, f64)]) {
    let pts = thin(closes, PRICE_POINTS);
    let (Some(first), Some(last)) = (pts.first(), pts.last()) else {
        return;
    };
    let (t0, t1) = (first.0 as f64, (last.0 as f64).max(first.0 as f64 + 1.0));
    let lo = pts.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let hi = pts.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    let hi = if hi > lo { hi } else { lo + 1.0 };
    let x = |t: f64| LEFT + (t - t0) / (t1 - t0) * (W - LEFT - PAD);
    let y = |v: f64| H - PAD + -(v - lo) / (hi - lo) * (H - 2.0 * PAD);
    let _ = write!(
        h,
        "<h2>Close price</h2><svg width=\"{W}\" height=\"{H}\" role=\"img\" aria-label=\"close price over time\">\
<line x1=\"{LEFT}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"#999\"/><line x1=\"{LEFT}\" y1=\"{PAD}\" x2=\"{LEFT}\" y2=\"{b}\" stroke=\"#999\"/>\
<text x=\"{LEFT}\" y=\"{lb}\">{from}</text><text x=\"{r}\" y=\"{lb}\" text-anchor=\"end\">{to}</text>\
<text x=\"{yl}\" y=\"{PAD}\" text-anchor=\"end\">{hi}</text><text x=\"{yl}\" y=\"{b}\" text-anchor=\"end\">{lo}</text><polyline fill=\"none\" stroke=\"#4a78b5\" stroke-width=\"1\" points=\"",
        b = H - PAD,
        r = W - PAD,
        lb = H - PAD + 16.0,
        yl = LEFT - 4.0,
        from = fmt_ts(Some(first.0)),
        to = fmt_ts(Some(last.0)),
        hi = price(hi),
        lo = price(lo),
    );
    for (t, v) in &pts {
        let _ = write!(h, "{:.1},{:.1} ", x(*t as f64), y(*v));
    }
    h.push_str("\"/>");
    // The named bars, at their close (or on the axis when the close is not finite).
    let by_ts: std::collections::HashMap<i64, f64> = closes.iter().copied().collect();
    let mut marked = 0usize;
    for c in r.checks.iter().filter(|c| !c.rows.is_empty()) {
        for row in &c.rows {
            let Some(t) = chrono::DateTime::parse_from_rfc3339(row)
                .ok()
                .map(|d| d.timestamp_millis())
            else {
                continue;
            };
            let v = by_ts.get(&t).copied().filter(|v| v.is_finite());
            let cy = v.map_or(H - PAD, |v| y(v.clamp(lo, hi)));
            let _ = write!(
                h,
                "<circle cx=\"{:.1}\" cy=\"{cy:.1}\" r=\"3\" fill=\"#cf222e\"><title>{}: {}</title></circle>",
                x((t as f64).clamp(t0, t1)),
                esc(&c.name),
                esc(row)
            );
            marked += 1;
        }
    }
    h.push_str("</svg>");
    if marked > 0 {
        let _ = write!(
            h,
            "<p>Red: the {marked} bar{} the checks name.</p>",
            if marked == 1 { "" } else { "s" }
        );
    }
}

/// A price label: two decimals (four below 1).
fn price(v: f64) -> String {
    if v.abs() < 1.0 {
        format!("{v:.4}")
    } else {
        format!("{v:.2}")
    }
}

/// An equal-width histogram over [min, max] with its axes: the range below, the tallest bin's
/// count on the left.
fn histogram(h: &mut String, name: &str, bins: &[usize], min: f64, max: f64) {
    let tallest = bins.iter().copied().max().unwrap_or(0).max(1);
    let (bw, ph, left) = (8usize, 80usize, 40usize);
    let width = left + bw * bins.len() + 8;
    let _ = write!(
        h,
        "<svg width=\"{width}\" height=\"{}\" role=\"img\" aria-label=\"histogram of {n}\">\
<line x1=\"{left}\" y1=\"{ph}\" x2=\"{}\" y2=\"{ph}\" stroke=\"#999\"/>\
<text x=\"{}\" y=\"10\" text-anchor=\"end\">{tallest}</text><text x=\"{}\" y=\"{ph}\" text-anchor=\"end\">0</text>\
<text x=\"{left}\" y=\"{}\">{}</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
        ph + 18,
        left + bw * bins.len(),
        left - 4,
        left - 4,
        ph + 14,
        num(min),
        left + bw * bins.len(),
        ph + 14,
        num(max),
        n = esc(name),
    );
    for (i, &n) in bins.iter().enumerate() {
        let bh = n * (ph - 2) / tallest;
        let _ = write!(
            h,
            "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{bh}\" fill=\"#4a78b5\"><title>{n}</title></rect>",
            left + i * bw,
            ph - bh,
            bw - 1
        );
    }
    h.push_str("</svg>");
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn bars(closes: &[f64]) -> Vec<rps_core::Candle> {
        closes
            .iter()
            .enumerate()
            .map(|(i, &c)| rps_core::Candle {
                ts: i as i64 * 3_600_000,
                open: c,
                high: c * 1.01,
                low: c * 0.99,
                close: c,
                volume: 1.0,
                ..Default::default()
            })
            .collect()
    }

    fn closes(b: &[rps_core::Candle]) -> Vec<(i64, f64)> {
        b.iter().map(|c| (c.ts, c.close)).collect()
    }

    #[test]
    fn the_page_names_failures_and_escapes() {
        let b = bars(&[1.5; 10]);
        let r = rps_core::quality::run(
            &b,
            rps_core::Interval::H1,
            &["missing column `<x>`".into()],
            &rps_core::quality::QualityParams::default(),
            0,
        );
        let html = quality_html(&r, "BTC & co", &closes(&b));
        assert!(html.contains("BTC &amp; co"));
        assert!(html.contains("FAILED"));
        assert!(html.contains("missing column `&lt;x&gt;`"));
        // The price chart and one histogram per column.
        assert_eq!(html.matches("<svg").count(), 1 + r.columns.len());
        assert!(html.contains("aria-label=\"close price over time\""));
    }

    #[test]
    fn the_bars_behind_a_failed_check_are_listed_and_marked() {
        let mut c: Vec<f64> = (0..400).map(|i| 100.0 + (i as f64 * 0.1).sin()).collect();
        c[200] = 1000.0; // a ×10 spike
        let b = bars(&c);
        let r = rps_core::quality::run(
            &b,
            rps_core::Interval::H1,
            &[],
            &rps_core::quality::QualityParams::default(),
            0,
        );
        let failed: Vec<_> = r.failures().filter(|c| !c.rows.is_empty()).collect();
        assert!(
            !failed.is_empty(),
            "the spike fails a check: {:?}",
            r.checks
        );
        let html = quality_html(&r, "spike", &closes(&b));
        assert!(html.contains("Bars behind the checks"));
        let spike = rps_core::quality::rfc3339(200 * 3_600_000);
        assert!(
            html.contains(&format!("<li><code>{spike}</code></li>")),
            "{spike}"
        );
        assert!(
            html.contains("fill=\"#cf222e\""),
            "the bar is marked on the chart"
        );
        // Axes: the histogram's range and the chart's dates.
        assert!(html.contains("1970-01-01 00:00 UTC"));
    }

    #[test]
    fn a_long_series_is_thinned_keeping_its_extremes() {
        let pts: Vec<(i64, f64)> = (0..100_000)
            .map(|i| (i, if i == 54_321 { 9e9 } else { 1.0 }))
            .collect();
        let t = thin(&pts, PRICE_POINTS);
        assert!(t.len() <= PRICE_POINTS + 2, "{}", t.len());
        assert!(t.contains(&(54_321, 9e9)), "the spike survives");
        assert!(t.windows(2).all(|w| w[0].0 <= w[1].0), "in time order");
    }
}

//! Prometheus text exposition (format 0.0.4), written by hand: a handful of counters and
//! histograms on atomics. The request counter is keyed by the route *template* (`/predict`, not
//! the raw URL; `unmatched` for unknown paths), so label cardinality stays bounded.

use crate::conns::Closed;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// Buckets of `prediction_latency_seconds`: 50 µs … 1 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// Buckets of `model_prediction_value` (hourly volatility, a fraction: 0.01 = 1 %).
pub const VALUE_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1,
];

/// Buckets of `model_interval_width` (the 80 % interval's upper − lower, in the forecast's
/// units: hourly σ as a fraction). Typical hourly σ is 0.2–1 % and an 80 % band spans roughly
/// its own size, so the buckets are finer than [`VALUE_BUCKETS`] at the low end.
pub const WIDTH_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05,
];

/// An `f64` in an atomic.
#[derive(Debug, Default)]
pub struct AtomicF64(AtomicU64);

impl AtomicF64 {
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
    pub fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Relaxed);
    }
    pub fn add(&self, v: f64) {
        let mut cur = self.0.load(Ordering::Relaxed);
        loop {
            let new = (f64::from_bits(cur) + v).to_bits();
            match self
                .0
                .compare_exchange_weak(cur, new, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(seen) => cur = seen,
            }
        }
    }
}

/// A cumulative histogram with fixed buckets.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    sum: AtomicF64,
    count: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: (0..bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicF64::default(),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, v: f64) {
        if !v.is_finite() {
            return;
        }
        let i = self.bounds.partition_point(|&b| b < v);
        if let Some(c) = self.counts.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        self.sum.add(v);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn write(&self, out: &mut String, name: &str, help: &str) {
        write_histogram_header(out, name, help);
        self.write_series(out, name, "");
    }

    /// One series of a histogram family whose header [`write_histogram_header`] wrote: `labels`
    /// is empty or `key="value",…` (escaped), placed before `le`.
    pub fn write_series(&self, out: &mut String, name: &str, labels: &str) {
        let (before_le, only) = if labels.is_empty() {
            (String::new(), String::new())
        } else {
            (format!("{labels},"), format!("{{{labels}}}"))
        };
        let mut cumulative = 0;
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            cumulative += c.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{before_le}le=\"{b}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{before_le}le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum{only} {}", fmt_f64(self.sum.get()));
        let _ = writeln!(out, "{name}_count{only} {count}");
    }
}

/// `# HELP` and `# TYPE` of a histogram family (once, before its series).
pub fn write_histogram_header(out: &mut String, name: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
}

/// Process-wide metrics that do not depend on the served model.
#[derive(Debug)]
pub struct Metrics {
    requests: RwLock<HashMap<(String, String, u16), AtomicU64>>,
    pub latency: Histogram,
    pub values: Histogram,
    pub predictions: AtomicU64,
    /// Signal rows predicted per class, in `Signal::index` order (sell, hold, buy).
    pub signals: [AtomicU64; 3],
    pub reloads_ok: AtomicU64,
    pub reloads_rejected: AtomicU64,
    pub reloads_failed: AtomicU64,
    pub last_reload: AtomicF64,
    pub start_time: f64,
    /// Client connections open now.
    pub connections_open: AtomicU64,
    /// Connections the server closed itself, by [`Closed::index`].
    pub connections_closed: [AtomicU64; 4],
    /// Failed `accept` calls (out of descriptors, …).
    pub accept_errors: AtomicU64,
}

impl Metrics {
    pub fn new(start_time: f64) -> Self {
        Self {
            requests: RwLock::new(HashMap::new()),
            latency: Histogram::new(LATENCY_BUCKETS),
            values: Histogram::new(VALUE_BUCKETS),
            predictions: AtomicU64::new(0),
            signals: [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)],
            reloads_ok: AtomicU64::new(0),
            reloads_rejected: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
            last_reload: AtomicF64::default(),
            start_time,
            connections_open: AtomicU64::new(0),
            connections_closed: Default::default(),
            accept_errors: AtomicU64::new(0),
        }
    }

    /// Count a connection the server closed itself.
    pub fn conn_closed(&self, why: Closed) {
        if let Some(c) = self.connections_closed.get(why.index()) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Count one finished request.
    pub fn count_request(&self, method: &str, path: &str, status: u16) {
        {
            let map = self
                .requests
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(c) = map
                .iter()
                .find(|((m, p, s), _)| *s == status && m == method && p == path)
                .map(|(_, c)| c)
            {
                c.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        let mut map = self
            .requests
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entry((method.to_owned(), path.to_owned(), status))
            .or_insert_with(|| AtomicU64::new(0))
            .fetch_add(1, Ordering::Relaxed);
    }

    /// The process-level part of the exposition.
    pub fn write(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP http_requests_total HTTP requests answered, by method, route template and status."
        );
        let _ = writeln!(out, "# TYPE http_requests_total counter");
        {
            let map = self
                .requests
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut rows: Vec<_> = map
                .iter()
                .map(|(k, c)| (k.clone(), c.load(Ordering::Relaxed)))
                .collect();
            rows.sort();
            for ((m, p, s), c) in rows {
                let _ = writeln!(
                    out,
                    "http_requests_total{{method=\"{}\",path=\"{}\",status=\"{s}\"}} {c}",
                    escape(&m),
                    escape(&p)
                );
            }
        }
        self.latency.write(
            out,
            "prediction_latency_seconds",
            "Time to validate and predict one /predict request, in seconds.",
        );
        self.values.write(
            out,
            "model_prediction_value",
            "Predicted one-hour volatility (fraction) of each row a volatility model predicted.",
        );
        let _ = writeln!(
            out,
            "# HELP model_predictions_total Rows predicted.\n# TYPE model_predictions_total counter"
        );
        let _ = writeln!(
            out,
            "model_predictions_total {}",
            self.predictions.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP model_signal_predictions_total Rows a signal model classified, by class.\n# TYPE model_signal_predictions_total counter"
        );
        for (class, c) in ["sell", "hold", "buy"].iter().zip(&self.signals) {
            let _ = writeln!(
                out,
                "model_signal_predictions_total{{signal=\"{class}\"}} {}",
                c.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP model_reloads_total Model (re)loads by result.\n# TYPE model_reloads_total counter"
        );
        for (result, c) in [
            ("success", &self.reloads_ok),
            ("rejected", &self.reloads_rejected),
            ("error", &self.reloads_failed),
        ] {
            let _ = writeln!(
                out,
                "model_reloads_total{{result=\"{result}\"}} {}",
                c.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP model_last_reload_timestamp_seconds Unix time the served model was last loaded."
        );
        let _ = writeln!(out, "# TYPE model_last_reload_timestamp_seconds gauge");
        let _ = writeln!(
            out,
            "model_last_reload_timestamp_seconds {}",
            fmt_f64(self.last_reload.get())
        );
        let _ = writeln!(
            out,
            "# HELP process_start_time_seconds Start time of the process since unix epoch in seconds."
        );
        let _ = writeln!(out, "# TYPE process_start_time_seconds gauge");
        let _ = writeln!(
            out,
            "process_start_time_seconds {}",
            fmt_f64(self.start_time)
        );
        let _ = writeln!(
            out,
            "# HELP http_connections_open Client connections open.\n# TYPE http_connections_open gauge\nhttp_connections_open {}",
            self.connections_open.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP http_connections_closed_total Connections the server closed itself: header_timeout, idle_timeout, shed (the oldest waiting one, at the connection limit) and refused (at the limit, every connection busy).\n# TYPE http_connections_closed_total counter"
        );
        for why in Closed::ALL {
            let _ = writeln!(
                out,
                "http_connections_closed_total{{reason=\"{}\"}} {}",
                why.as_str(),
                self.connections_closed[why.index()].load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP http_accept_errors_total Failed accepts (out of file descriptors, ...).\n# TYPE http_accept_errors_total counter\nhttp_accept_errors_total {}",
            self.accept_errors.load(Ordering::Relaxed)
        );
        write_process_metrics(out);
    }
}

/// The standard process metrics (CPU, memory, file descriptors) from `/proc/self`, named as the
/// Prometheus client libraries name them; nothing on systems without procfs.
fn write_process_metrics(out: &mut String) {
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // Fields after the command name in parentheses; utime and stime are fields 14 and 15,
        // in clock ticks (USER_HZ, 100 on Linux).
        if let Some((_, rest)) = stat.rsplit_once(')') {
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks = |field: usize| f.get(field - 3).and_then(|v| v.parse::<f64>().ok());
            if let (Some(user), Some(system)) = (ticks(14), ticks(15)) {
                let _ = writeln!(
                    out,
                    "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total {}",
                    fmt_f64((user + system) / 100.0)
                );
            }
        }
    }
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        let kib = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        };
        for (key, name, help) in [
            (
                "VmRSS:",
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
            ),
            (
                "VmSize:",
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
            ),
        ] {
            if let Some(v) = kib(key) {
                let _ = writeln!(
                    out,
                    "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {}",
                    fmt_f64(v * 1024.0)
                );
            }
        }
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        let _ = writeln!(
            out,
            "# HELP process_open_fds Number of open file descriptors.\n# TYPE process_open_fds gauge\nprocess_open_fds {}",
            fds.count()
        );
    }
}

/// The online accuracy block: the `monitor:` thresholds (always) and the cached `rps_score_*`
/// series of the last successful refresh (module [`crate::scores`]). `max_age` is
/// `rps_accuracy_max_score_age_seconds`; `now` (unix seconds) gives the newest bar's age.
pub fn write_scores(
    out: &mut String,
    monitor: &rps_core::params::MonitorParams,
    cache: &crate::scores::ScoreCache,
    max_age: f64,
    now: f64,
) {
    for (name, help, v) in [
        (
            "rps_accuracy_qlike_margin",
            "monitor.qlike_margin: a live version is worse than HAR-RV when rps_score_qlike_ratio_vs_har exceeds 1 + this.",
            monitor.qlike_margin,
        ),
        (
            "rps_accuracy_coverage_low",
            "monitor.coverage_low: the lowest acceptable 7-day coverage of the 80 % interval.",
            monitor.coverage_low,
        ),
        (
            "rps_accuracy_coverage_high",
            "monitor.coverage_high: the highest acceptable 7-day coverage of the 80 % interval.",
            monitor.coverage_high,
        ),
        (
            "rps_accuracy_max_score_age_seconds",
            "(monitor.stale_bars + 1) bars: the oldest rps_score_newest_bar_age_seconds still fresh.",
            max_age,
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {}",
            fmt_f64(v)
        );
    }
    let _ = writeln!(
        out,
        "# HELP rps_score_refresh_errors_total Failed reads of the scores table (the last values are kept).\n\
         # TYPE rps_score_refresh_errors_total counter\nrps_score_refresh_errors_total {}",
        cache.errors.load(Ordering::Relaxed)
    );
    let snap = cache.snapshot();
    let series = |s: &crate::scores::SymbolScores, x: &crate::scores::Series| {
        format!(
            "symbol=\"{}\",model=\"{}\",version=\"{}\",alias=\"{}\"",
            escape(&s.symbol),
            escape(&x.model),
            escape(&x.version),
            escape(&x.alias)
        )
    };
    type Pick = fn(&crate::scores::Window) -> Option<f64>;
    let families: [(&str, &str, &str, Pick); 3] = [
        (
            "rps_score_qlike_mean",
            "Mean QLIKE of the scored forecasts over the window ending at the symbol's newest scored bar.",
            "gauge",
            |w| w.qlike,
        ),
        (
            "rps_score_log_error_mean",
            "Mean squared log error (ln sigma - ln h)^2 over the window ending at the symbol's newest scored bar.",
            "gauge",
            |w| w.log_error,
        ),
        (
            "rps_score_count",
            "Scored forecasts in the window ending at the symbol's newest scored bar.",
            "gauge",
            |w| Some(count_f64(w.count)),
        ),
    ];
    for (name, help, ty, pick) in families {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {ty}");
        for s in &snap.symbols {
            for x in &s.series {
                for (window, w) in [("24h", &x.day), ("7d", &x.week)] {
                    if let Some(v) = pick(w) {
                        let _ = writeln!(
                            out,
                            "{name}{{{},window=\"{window}\"}} {}",
                            series(s, x),
                            fmt_f64(v)
                        );
                    }
                }
            }
        }
    }
    let _ = writeln!(
        out,
        "# HELP rps_score_coverage_80 Share of the scored forecasts with an 80 % interval whose realized value fell inside it, over 7 days.\n\
         # TYPE rps_score_coverage_80 gauge"
    );
    for s in &snap.symbols {
        for x in &s.series {
            if let Some((c, _)) = x.coverage_80 {
                let _ = writeln!(
                    out,
                    "rps_score_coverage_80{{{},window=\"7d\"}} {}",
                    series(s, x),
                    fmt_f64(c)
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "# HELP rps_score_qlike_ratio_vs_har A live version's 7-day mean QLIKE over HAR-RV's (baseline har_rv: the smeared level forecast of the version's base margin; har_rv_log for versions saved without its smearing) on the same bars; only with monitor.min_scores bars.\n\
         # TYPE rps_score_qlike_ratio_vs_har gauge"
    );
    for s in &snap.symbols {
        for r in &s.ratios {
            let _ = writeln!(
                out,
                "rps_score_qlike_ratio_vs_har{{symbol=\"{}\",alias=\"{}\",version=\"{}\",baseline=\"{}\",window=\"7d\"}} {}",
                escape(&s.symbol),
                escape(&r.alias),
                escape(&r.version),
                r.baseline,
                fmt_f64(r.ratio)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP rps_score_newest_bar_timestamp_seconds Unix time the newest scored bar of the symbol closed.\n\
         # TYPE rps_score_newest_bar_timestamp_seconds gauge"
    );
    for s in &snap.symbols {
        let _ = writeln!(
            out,
            "rps_score_newest_bar_timestamp_seconds{{symbol=\"{}\"}} {}",
            escape(&s.symbol),
            fmt_f64(s.newest_close)
        );
    }
    let _ = writeln!(
        out,
        "# HELP rps_score_newest_bar_age_seconds Seconds since the newest scored bar of the symbol closed (at scrape time).\n\
         # TYPE rps_score_newest_bar_age_seconds gauge"
    );
    for s in &snap.symbols {
        let _ = writeln!(
            out,
            "rps_score_newest_bar_age_seconds{{symbol=\"{}\"}} {}",
            escape(&s.symbol),
            fmt_f64(now - s.newest_close)
        );
    }
}

#[allow(clippy::cast_precision_loss)]
fn count_f64(n: i64) -> f64 {
    n as f64
}

/// A sample value as Prometheus reads it.
pub fn fmt_f64(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".to_owned()
        } else {
            "-Inf".to_owned()
        }
    } else {
        format!("{v}")
    }
}

/// Escape a label value.
pub fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let h = Histogram::new(&[0.1, 1.0]);
        for v in [0.05, 0.5, 0.5, 5.0, f64::NAN] {
            h.observe(v);
        }
        let mut s = String::new();
        h.write(&mut s, "x", "help");
        assert!(s.contains("x_bucket{le=\"0.1\"} 1\n"), "{s}");
        assert!(s.contains("x_bucket{le=\"1\"} 3\n"), "{s}");
        assert!(s.contains("x_bucket{le=\"+Inf\"} 4\n"), "{s}");
        assert!(s.contains("x_count 4\n"), "{s}");
        assert!(s.contains("x_sum 6.05\n"), "{s}");
    }

    #[test]
    fn a_labelled_series_puts_its_labels_before_le() {
        let h = Histogram::new(&[0.1]);
        h.observe(0.05);
        let mut s = String::new();
        h.write_series(&mut s, "x", "version=\"3\"");
        assert_eq!(
            s,
            "x_bucket{version=\"3\",le=\"0.1\"} 1\nx_bucket{version=\"3\",le=\"+Inf\"} 1\n\
             x_sum{version=\"3\"} 0.05\nx_count{version=\"3\"} 1\n"
        );
    }
}

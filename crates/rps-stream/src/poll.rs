//! `rps stream produce --follow`: poll the market API every bar and publish each closed bar.
//!
//! Every poll:
//! 1. reads where the topic stands: the newest bar of the symbol on its partition (the records
//!    just below the high watermark), so a restart neither republishes nor skips a bar. With no
//!    bar of the symbol on the topic yet, it starts at `--since` or `--backfill` bars back;
//! 2. fetches every **closed** bar from there up to the newest closed bar from the source
//!    `rps extract` uses (`data.source`, `data.binance:` / `data.coincap:`); the bar still
//!    forming is never published. A bar counts as closed `--settle-secs` after its close time;
//! 3. publishes them in order, `--batch` records per produce request;
//! 4. sleeps until the next bar has closed and settled.
//!
//! A failed poll (API or Kafka) is logged and tried again after `--retry-secs` (or at the next
//! bar, if sooner); `--max-failures` failed polls in a row end the run. Errors that waiting cannot
//! fix (a refused request such as an unknown symbol, a bad configuration, an IP ban) end it at
//! once. SIGTERM / Ctrl-C stop it between polls (or between produce requests of a poll).

use crate::{ProduceArgs, Settings, StreamError, kafka};
use chrono::{DateTime, Utc};
use clap::Args as ClapArgs;
use rps_core::candle::{Candle, Interval};
use rps_core::params::SourceKind;
use rps_market::{ConfiguredSource, MarketError};
use rskafka::client::partition::{Compression, OffsetAt, PartitionClient};
use std::sync::Arc;
use std::time::Duration;

/// The flags of `produce --follow`.
#[derive(Debug, Clone, Default, ClapArgs)]
pub struct FollowArgs {
    /// Poll the market API every bar instead of replaying a file: publish each closed bar of
    /// data.interval from the source `rps extract` uses (data.source, data.binance / data.coincap;
    /// COINCAP_API_KEY), resuming after the newest bar of the symbol already on the topic.
    #[arg(long, conflicts_with_all = ["input", "speed", "limit", "skip"])]
    pub follow: bool,
    /// The API to poll, overriding data.source (which may be `file` for training).
    #[arg(long, requires = "follow", value_parser = ["binance", "coincap"])]
    pub source: Option<String>,
    /// With no bar of the symbol on the topic yet: start at this bar (RFC 3339, such as
    /// 2024-01-01T00:00:00Z). Ignored once the topic holds the symbol.
    #[arg(long, requires = "follow", conflicts_with = "backfill")]
    pub since: Option<String>,
    /// With no bar of the symbol on the topic yet: start this many closed bars back, so the
    /// consumer has the history its features need (default: stream.history_bars).
    #[arg(long, requires = "follow")]
    pub backfill: Option<usize>,
    /// A bar counts as closed this many seconds after its close time (the exchange's clock may
    /// be behind ours; the last trades may land late).
    #[arg(long, requires = "follow", default_value_t = 10)]
    pub settle_secs: u64,
    /// After a failed poll, try again after this many seconds (or at the next bar if sooner).
    #[arg(long, requires = "follow", default_value_t = 60)]
    pub retry_secs: u64,
    /// Exit (code 6, or the code of the last error) after this many failed polls in a row;
    /// 0 never gives up.
    #[arg(long, requires = "follow", default_value_t = 5)]
    pub max_failures: u32,
    /// Stop after this many polls (for cron jobs and tests); default: run until SIGTERM/Ctrl-C.
    #[arg(long, requires = "follow", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_polls: Option<u64>,
}

/// The open time of the first bar that is not closed (and settled) at `now_ms`: every bar
/// opening before it has closed at least `settle_ms` ago.
pub fn closed_end(now_ms: i64, interval: Interval, settle_ms: i64) -> i64 {
    interval.floor(now_ms - settle_ms)
}

/// When the next bar after `now_ms` has closed and settled: the next poll.
pub fn next_poll_at(now_ms: i64, interval: Interval, settle_ms: i64) -> i64 {
    closed_end(now_ms, interval, settle_ms) + interval.ms() + settle_ms
}

/// When to try again after a failed poll at `now_ms`: after `retry_ms`, or at the next bar if
/// that is sooner.
pub fn retry_at(now_ms: i64, interval: Interval, settle_ms: i64, retry_ms: i64) -> i64 {
    next_poll_at(now_ms, interval, settle_ms).min(now_ms + retry_ms.max(0))
}

/// The first bar published when the topic holds no bar of the symbol: `since`, else `backfill`
/// bars before `end` (the first unclosed bar).
pub fn initial_start(since: Option<i64>, backfill: usize, end: i64, interval: Interval) -> i64 {
    since.unwrap_or_else(|| {
        let n = i64::try_from(backfill).unwrap_or(i64::MAX);
        // No market has bars before 1970: a huge backfill means "everything".
        end.saturating_sub(n.saturating_mul(interval.ms())).max(0)
    })
}

/// The first bar this poll asks for: after the newest bar on the topic, else where the run
/// started (fixed at its first poll).
pub fn resume_from(last_on_topic: Option<i64>, interval: Interval, started_at: i64) -> i64 {
    last_on_topic.map_or(started_at, |t| t + interval.ms())
}

/// The bars to publish: those in `[start, end)`, in time order, without duplicates (the
/// sources promise this; checked again because publishing the open bar cannot be undone).
pub fn closed_bars(mut bars: Vec<Candle>, start: i64, end: i64) -> Vec<Candle> {
    bars.retain(|c| c.ts >= start && c.ts < end);
    rps_core::candle::sort_dedup(&mut bars);
    bars
}

/// Whether waiting for the next poll cannot help: end the run now.
fn is_fatal(e: &StreamError) -> bool {
    match e {
        StreamError::Market(m) => matches!(
            m,
            MarketError::InvalidRequest { .. }
                | MarketError::Setup { .. }
                | MarketError::Unauthorized { .. }
                // Binance's 418 is an IP ban: knocking again extends it.
                | MarketError::Banned { .. }
        ),
        StreamError::Kafka { .. } | StreamError::Postgres { .. } | StreamError::Gap { .. } => false,
        _ => true,
    }
}

fn fmt_ts(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms).map_or_else(
        || ms.to_string(),
        |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    )
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// The open time of the newest bar of `symbol` on the partition, reading back from the high
/// watermark (a window that grows until a bar of the symbol is found or the partition's start
/// is reached). A bar of another interval for the symbol is a configuration error.
pub async fn last_bar_on_topic(
    pc: &PartitionClient,
    symbol: &str,
    interval: &str,
) -> Result<Option<i64>, StreamError> {
    let high = pc
        .get_offset(OffsetAt::Latest)
        .await
        .map_err(kafka::kafka_err("read the high watermark"))?;
    let low = pc
        .get_offset(OffsetAt::Earliest)
        .await
        .map_err(kafka::kafka_err("read the earliest offset"))?;
    let mut window: i64 = 16;
    loop {
        if high <= low {
            return Ok(None);
        }
        let from = high.saturating_sub(window).max(low);
        let mut newest: Option<i64> = None;
        let mut next = from;
        while next < high {
            let (records, _) = pc
                .fetch_records(next, 1..4_000_000, 500)
                .await
                .map_err(kafka::kafka_err("fetch the newest records"))?;
            // tansu answers a fetch from the middle of a batch with the next batch: what it
            // skipped is older than what it returns, so the newest bar is still found.
            let Some(top) = records.iter().map(|r| r.offset).max() else {
                break;
            };
            for r in records.iter().filter(|r| r.offset >= next) {
                let Some(msg) = kafka::CandleMessage::decode(&r.record) else {
                    continue;
                };
                if msg.symbol != symbol {
                    continue;
                }
                if msg.interval != interval {
                    return Err(StreamError::Config(format!(
                        "the topic holds {} bars of {symbol} (offset {}), but data.interval is {interval}: use another topic or data.interval: {}",
                        msg.interval, r.offset, msg.interval
                    )));
                }
                newest = newest.max(Some(msg.ts));
            }
            if top < next {
                break;
            }
            next = top + 1;
        }
        if newest.is_some() || from == low {
            return Ok(newest);
        }
        window = window.saturating_mul(8);
    }
}

/// What the polling loop needs, once.
struct Poller<'a> {
    pc: PartitionClient,
    source: Arc<ConfiguredSource>,
    symbol: String,
    interval: Interval,
    interval_name: String,
    batch: usize,
    topic: &'a str,
    since: Option<i64>,
    backfill: usize,
    /// Where the run starts when the topic holds no bar of the symbol (fixed at the first poll
    /// that needs it, so that `--backfill 0` publishes the bars that close from then on).
    started_at: Option<i64>,
}

impl Poller<'_> {
    /// One poll: returns the number of bars published.
    async fn poll(
        &mut self,
        end: i64,
        stop: &tokio::sync::watch::Receiver<bool>,
    ) -> Result<usize, StreamError> {
        let last = last_bar_on_topic(&self.pc, &self.symbol, &self.interval_name).await?;
        let started_at = *self
            .started_at
            .get_or_insert_with(|| initial_start(self.since, self.backfill, end, self.interval));
        let start = resume_from(last, self.interval, started_at);
        if start >= end {
            tracing::info!(
                "up to date: the newest closed bar ({}) is on the topic",
                fmt_ts(end - self.interval.ms())
            );
            return Ok(0);
        }
        tracing::info!(
            "fetching {} bars {} .. {} (exclusive) from {}{}",
            self.symbol,
            fmt_ts(start),
            fmt_ts(end),
            self.source.client.name(),
            last.map_or_else(
                || " (no bar of the symbol on the topic yet)".to_owned(),
                |t| format!(" (newest on the topic: {})", fmt_ts(t))
            )
        );
        let req = self.source.request(self.interval, start, end);
        let source = Arc::clone(&self.source);
        // The clients block (and sleep through their own retries): off the async threads.
        let bars = tokio::task::spawn_blocking(move || source.client.fetch(&req, &mut |_| {}))
            .await
            .map_err(|e| StreamError::Join(e.to_string()))??;
        let bars = closed_bars(bars, start, end);
        match bars.first() {
            None => {
                tracing::info!("the source has no closed bar after the topic's newest yet");
                return Ok(0);
            }
            Some(first) if last.is_some() && first.ts != start => tracing::warn!(
                "the source has no bars from {} to {}: the topic has a gap there",
                fmt_ts(start),
                fmt_ts(first.ts)
            ),
            Some(_) => {}
        }
        let mut sent = 0;
        for block in bars.chunks(self.batch.max(1)) {
            if *stop.borrow() {
                break;
            }
            let records = block
                .iter()
                .map(|c| kafka::candle_record(&self.symbol, &self.interval_name, c))
                .collect::<Result<Vec<_>, _>>()?;
            self.pc
                .produce(records, Compression::NoCompression)
                .await
                .map_err(kafka::kafka_err("produce"))?;
            sent += block.len();
        }
        if let (Some(first), Some(last)) = (bars.first(), bars[..sent].last()) {
            tracing::info!(
                "published {sent} bars of {} ({} .. {}) to {}/{}",
                self.symbol,
                fmt_ts(first.ts),
                fmt_ts(last.ts),
                self.topic,
                self.pc.partition()
            );
        }
        Ok(sent)
    }
}

fn parse_since(s: &str) -> Result<i64, StreamError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|e| {
            StreamError::Config(format!(
                "--since {s:?} is not an RFC 3339 time such as 2024-01-01T00:00:00Z: {e}"
            ))
        })
}

/// Run `produce --follow` until SIGTERM/Ctrl-C, `--max-polls`, or too many failures.
pub(crate) async fn follow(s: &Settings, a: &ProduceArgs) -> Result<(), StreamError> {
    let f = &a.follow;
    let d = &s.params.data;
    let kind = match f.source.as_deref() {
        Some("binance") => SourceKind::Binance,
        Some("coincap") => SourceKind::Coincap,
        Some(other) => {
            return Err(StreamError::Config(format!(
                "--source must be binance or coincap, not {other:?}"
            )));
        }
        None => d.source,
    };
    // The market clients are blocking (reqwest's blocking client owns a runtime of its own):
    // build them, and drop the last handle, where blocking is allowed, never on an async worker.
    let source = tokio::task::block_in_place(|| {
        rps_market::from_params(kind, d, std::env::var("COINCAP_API_KEY").ok())
    })?
    .ok_or_else(|| {
            StreamError::Config(format!(
                "--follow polls a market API but data.source is {}: set data.source to binance or coincap, or pass --source",
                format!("{kind:?}").to_lowercase()
            ))
        })?;
    let source = Arc::new(source);
    let result = follow_from(s, a, Arc::clone(&source)).await;
    tokio::task::block_in_place(move || drop(source));
    result
}

async fn follow_from(
    s: &Settings,
    a: &ProduceArgs,
    source: Arc<ConfiguredSource>,
) -> Result<(), StreamError> {
    let f = &a.follow;
    let d = &s.params.data;
    let since = f.since.as_deref().map(parse_since).transpose()?;
    let interval = d.interval;
    let settle_ms = i64::try_from(f.settle_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    let retry_ms = i64::try_from(f.retry_secs.max(1).saturating_mul(1000)).unwrap_or(i64::MAX);
    let symbol = d.symbol.clone();

    let client = kafka::connect(&s.brokers, s.kafka_timeout).await?;
    let parts =
        kafka::topic_partitions(&client, &s.topic, s.params.stream.partitions, true).await?;
    let n_parts = i32::try_from(parts.len()).unwrap_or(1);
    let target = kafka::partition_for(symbol.as_bytes(), n_parts);
    let mut poller = Poller {
        pc: kafka::partition(&client, &s.topic, target).await?,
        interval_name: interval.to_string(),
        source,
        symbol,
        interval,
        batch: a.batch,
        topic: &s.topic,
        since,
        backfill: f.backfill.unwrap_or(s.params.stream.history_bars),
        started_at: None,
    };
    tracing::info!(
        "following {} {} bars ({} {}) into {}/{target}",
        poller.symbol,
        poller.interval_name,
        poller.source.client.name(),
        poller.source.symbol,
        s.topic
    );
    let mut stop = crate::consume::shutdown_flag();
    let (mut polls, mut failures, mut published) = (0_u64, 0_u32, 0_usize);
    loop {
        if *stop.borrow() {
            break;
        }
        polls += 1;
        let end = closed_end(now_ms(), interval, settle_ms);
        let last_poll = f.max_polls.is_some_and(|m| polls >= m);
        match poller.poll(end, &stop).await {
            Ok(n) => {
                failures = 0;
                published += n;
            }
            Err(e) if is_fatal(&e) || last_poll => return Err(e),
            Err(e) => {
                failures += 1;
                if f.max_failures > 0 && failures >= f.max_failures {
                    return Err(StreamError::PollsFailed {
                        failures,
                        last: Box::new(e),
                    });
                }
                let chain =
                    std::iter::successors(Some(&e as &(dyn std::error::Error + 'static)), |e| {
                        e.source()
                    })
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(": ");
                tracing::warn!("poll failed ({failures} in a row): {chain}");
            }
        }
        if last_poll {
            break;
        }
        let now = now_ms();
        let wake = if failures > 0 {
            retry_at(now, interval, settle_ms, retry_ms)
        } else {
            next_poll_at(now, interval, settle_ms)
        };
        tracing::info!("next poll at {}", fmt_ts(wake));
        let nap = Duration::from_millis(u64::try_from(wake - now).unwrap_or(0));
        tokio::select! {
            () = tokio::time::sleep(nap) => {}
            r = stop.wait_for(|stopping| *stopping) => {
                if r.is_err() {
                    tokio::time::sleep(nap).await;
                }
            }
        }
    }
    tracing::info!("stopped after {polls} polls; {published} bars published");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;
    // 2024-01-01T00:00:00Z
    const T0: i64 = 1_704_067_200_000;

    fn bar(ts: i64) -> Candle {
        Candle {
            ts,
            open: 1.0,
            high: 1.0,
            low: 1.0,
            close: 1.0,
            volume: 1.0,
            ..Default::default()
        }
    }

    #[test]
    fn a_bar_is_closed_settle_after_its_close() {
        let h1 = Interval::H1;
        // 12:30: the 11:00 bar is the newest closed one; 12:00 is still forming.
        assert_eq!(closed_end(T0 + 12 * H + H / 2, h1, 10_000), T0 + 12 * H);
        // 12:00:05 with a 10 s settle: 11:00 has closed but not settled yet.
        assert_eq!(closed_end(T0 + 12 * H + 5_000, h1, 10_000), T0 + 11 * H);
        // Exactly at close + settle it counts.
        assert_eq!(closed_end(T0 + 12 * H + 10_000, h1, 10_000), T0 + 12 * H);
        assert_eq!(closed_end(T0 + 12 * H, h1, 0), T0 + 12 * H);
        // Other intervals: 5 minutes, a day.
        let m5 = Interval::from_ms(300_000).unwrap_or(h1);
        assert_eq!(closed_end(T0 + 7 * 60_000, m5, 0), T0 + 5 * 60_000);
        let d1: Interval = "1d".parse().unwrap_or(h1);
        assert_eq!(closed_end(T0 + 30 * H, d1, 60_000), T0 + 24 * H);
    }

    #[test]
    fn the_next_poll_is_at_the_next_close_plus_settle() {
        let h1 = Interval::H1;
        assert_eq!(
            next_poll_at(T0 + 12 * H + H / 2, h1, 10_000),
            T0 + 13 * H + 10_000
        );
        // Between the close and the settle: this bar's settle, not the next one's.
        assert_eq!(
            next_poll_at(T0 + 12 * H + 3_000, h1, 10_000),
            T0 + 12 * H + 10_000
        );
        // Right at the settle point, the following bar.
        assert_eq!(
            next_poll_at(T0 + 12 * H + 10_000, h1, 10_000),
            T0 + 13 * H + 10_000
        );
        let m30 = Interval::M30;
        assert_eq!(next_poll_at(T0 + 31 * 60_000, m30, 0), T0 + H);
        // Retries come sooner, but never later than the next bar.
        assert_eq!(retry_at(T0 + H / 2, h1, 0, 60_000), T0 + H / 2 + 60_000);
        assert_eq!(retry_at(T0 + H - 1_000, h1, 0, 60_000), T0 + H);
    }

    #[test]
    fn resume_after_the_topic_else_since_or_backfill() {
        let h1 = Interval::H1;
        let end = T0 + 100 * H;
        assert_eq!(initial_start(None, 48, end, h1), T0 + 52 * H);
        assert_eq!(initial_start(None, 0, end, h1), end);
        assert_eq!(initial_start(Some(T0), 48, end, h1), T0);
        assert_eq!(initial_start(None, usize::MAX, end, h1), 0);
        // The topic wins over where the run started.
        assert_eq!(resume_from(Some(T0 + 99 * H), h1, T0), end);
        assert_eq!(resume_from(None, h1, T0 + 7 * H), T0 + 7 * H);
    }

    #[test]
    fn only_closed_bars_in_range_are_published_in_order() {
        let bars = vec![
            bar(T0 + 3 * H),
            bar(T0 + H),
            bar(T0), // before start
            bar(T0 + 2 * H),
            bar(T0 + H),     // duplicate
            bar(T0 + 4 * H), // the open bar
        ];
        let got: Vec<i64> = closed_bars(bars, T0 + H, T0 + 4 * H)
            .iter()
            .map(|c| c.ts)
            .collect();
        assert_eq!(got, vec![T0 + H, T0 + 2 * H, T0 + 3 * H]);
    }

    #[test]
    fn follow_flags_parse_and_exclude_the_replay_flags() {
        use clap::{CommandFactory, Parser};
        crate::Args::command().debug_assert();
        let parse = |args: &[&str]| {
            crate::Args::try_parse_from([&["rps-stream", "produce"], args].concat()).map(
                |a| match a.command {
                    crate::Command::Produce(p) => p.follow,
                    _ => FollowArgs::default(),
                },
            )
        };
        let f = parse(&["--follow", "--max-polls", "3", "--backfill", "10"]).unwrap_or_default();
        assert!(f.follow);
        assert_eq!((f.max_polls, f.backfill), (Some(3), Some(10)));
        assert_eq!((f.settle_secs, f.retry_secs, f.max_failures), (10, 60, 5));
        assert!(parse(&["--follow", "--input", "x.csv"]).is_err());
        assert!(parse(&["--follow", "--speed", "5"]).is_err());
        assert!(
            parse(&[
                "--follow",
                "--since",
                "2024-01-01T00:00:00Z",
                "--backfill",
                "1"
            ])
            .is_err()
        );
        assert!(parse(&["--max-polls", "1"]).is_err(), "needs --follow");
        assert!(parse(&["--follow", "--max-polls", "0"]).is_err());
        assert!(parse(&["--follow", "--source", "file"]).is_err());
        assert!(!parse(&["--speed", "5"]).unwrap_or_default().follow);
    }

    #[test]
    fn refused_requests_and_bans_end_the_run_network_errors_do_not() {
        let transport = StreamError::Market(MarketError::Transport {
            api: "Binance",
            timeout: true,
            detail: "x".to_owned(),
        });
        assert!(!is_fatal(&transport));
        let refused = StreamError::Market(MarketError::InvalidRequest {
            api: "Binance",
            status: Some(400),
            message: "Invalid symbol.".to_owned(),
        });
        assert!(is_fatal(&refused));
        let banned = StreamError::Market(MarketError::Banned {
            api: "Binance",
            retry_after: None,
            max_wait: Duration::from_secs(300),
        });
        assert!(is_fatal(&banned));
        assert!(is_fatal(&StreamError::Config("x".to_owned())));
    }
}

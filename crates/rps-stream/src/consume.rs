//! `rps stream consume`: read the topic from the offsets stored in PostgreSQL, predict every new
//! bar with the live models, write candles, predictions and the next offsets in one transaction.
//!
//! Outages: a lost Kafka broker or PostgreSQL server (connection refused or closed, an admin
//! shutdown, the server starting up) ends the current *session*. The consumer waits (1 s, 2 s,
//! 4 s … at most 30 s), connects again and resumes from the offsets PostgreSQL committed, with the
//! feature history re-read from the stored candles, so a batch whose COMMIT was cut off is either
//! there (and not redone) or not (and redone): no bar lost or doubled. After `--reconnect-secs`
//! without one committed batch it gives up (exit 6). Other errors end the run at once.

use crate::live::LiveModel;
use crate::online::{self, OnlineFeatures};
use crate::{ConsumeArgs, Settings, StreamError, db, kafka, live, load_live, runtime, score};
use rskafka::client::partition::{OffsetAt, PartitionClient};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Totals of a consume run.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    messages: u64,
    bad: u64,
    replayed: u64,
    predictions: u64,
    scores: u64,
    batches: u64,
    reconnects: u64,
    /// Where the wall time went (the consumer's side): waiting for Kafka records, building
    /// features and baselines, predicting, and waiting for the previous batch's commit.
    wait_kafka: Duration,
    features: Duration,
    predict: Duration,
    wait_db: Duration,
}

/// What every session of one consume run shares.
struct Ctx<'a> {
    s: &'a Settings,
    a: &'a ConsumeArgs,
    consumer: String,
    aliases: Vec<String>,
    batch_size: usize,
}

/// Whether `e` is an outage worth reconnecting through: every Kafka client error (the client
/// already retried within `--kafka-timeout`) and PostgreSQL errors that are not the server
/// refusing a statement (no SQLSTATE: IO, closed connection; class 08 connection exceptions;
/// 57P01-57P03 shutdown or start-up; 40001/40P01 serialization failure and deadlock).
fn is_outage(e: &StreamError) -> bool {
    match e {
        StreamError::Kafka { .. } => true,
        StreamError::Postgres { source, .. } => source.as_db_error().is_none_or(|db| {
            let code = db.code().code();
            code.starts_with("08")
                || matches!(code, "57P01" | "57P02" | "57P03" | "40001" | "40P01")
        }),
        _ => false,
    }
}

/// The wait before reconnect attempt `n` (0-based): 1 s, 2 s, 4 s … capped at 30 s.
fn reconnect_delay(n: u32) -> Duration {
    Duration::from_secs(1_u64 << n.min(5)).min(Duration::from_secs(30))
}

pub(crate) fn consume(s: &Settings, a: &ConsumeArgs) -> Result<(), StreamError> {
    let sp = &s.params.stream;
    let c = Ctx {
        s,
        a,
        consumer: a.consumer.clone().unwrap_or_else(|| sp.consumer.clone()),
        aliases: a.aliases.clone().unwrap_or_else(|| sp.aliases.clone()),
        batch_size: a.batch_size.unwrap_or(sp.batch_size).max(1),
    };
    // The registry may be a blocking HTTP client: load outside the async runtime.
    let mut live = load_live(s, &c.aliases)?;
    tracing::info!("live models: {}", live::describe(&live));
    let rt = runtime()?;
    rt.block_on(async {
        let mut stop = shutdown_flag();
        // The first write fails loudly (a read-only path would make every probe fail); later
        // ones only warn, and the probe sees the file age.
        let mut heartbeat = a.heartbeat_file.as_deref().map(Heartbeat::start).transpose()?;
        let mut counts = Counts::default();
        let started = Instant::now();
        let budget = Duration::from_secs(a.reconnect_secs);
        // When the current outage began (the first failure since the last committed batch).
        let mut outage: Option<(Instant, u32)> = None;
        loop {
            let before = counts.batches;
            let err = match session(&c, &mut live, &stop, &mut heartbeat, &mut counts).await {
                Ok(()) => break,
                Err(e) if is_outage(&e) => e,
                Err(e) => return Err(e),
            };
            if counts.batches > before {
                outage = None;
            }
            let (since, attempt) = *outage.get_or_insert((Instant::now(), 0));
            if since.elapsed() >= budget {
                return Err(StreamError::Outage {
                    secs: a.reconnect_secs,
                    last: Box::new(err),
                });
            }
            let wait = reconnect_delay(attempt);
            outage = Some((since, attempt + 1));
            counts.reconnects += 1;
            tracing::warn!(
                error = %rps_cli::error_chain(&err),
                "lost Kafka or PostgreSQL; reconnecting in {} s and resuming from the committed offsets",
                wait.as_secs()
            );
            if let Some(h) = heartbeat.as_mut() {
                h.beat();
            }
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = stop.changed() => {}
            }
            if *stop.borrow() {
                break;
            }
        }
        let secs = started.elapsed().as_secs_f64();
        tracing::info!(
            "consumed {} messages ({} bad, {} replayed bars) in {} transactions; {} prediction rows and {} score rows written; {} reconnects; {secs:.1} s, {:.0} messages/s",
            counts.messages,
            counts.bad,
            counts.replayed,
            counts.batches,
            counts.predictions,
            counts.scores,
            counts.reconnects,
            counts.messages as f64 / secs.max(1e-9)
        );
        tracing::info!(
            "time: {:.1} s waiting for Kafka, {:.1} s features and scores, {:.1} s predicting, {:.1} s waiting for PostgreSQL commits",
            counts.wait_kafka.as_secs_f64(),
            counts.features.as_secs_f64(),
            counts.predict.as_secs_f64(),
            counts.wait_db.as_secs_f64()
        );
        Ok(())
    })
}

/// One connection's worth of consuming: connect, resume from the stored offsets with the feature
/// history re-read from PostgreSQL, and read until stopped, idle or an error.
async fn session(
    c: &Ctx<'_>,
    live: &mut Vec<LiveModel>,
    stop: &tokio::sync::watch::Receiver<bool>,
    heartbeat: &mut Option<Heartbeat>,
    counts: &mut Counts,
) -> Result<(), StreamError> {
    let mut db = c.s.db().await?;
    db.commit_delay = Duration::from_millis(c.a.commit_delay_ms);
    let client = kafka::connect(&c.s.brokers, c.s.kafka_timeout).await?;
    let parts =
        kafka::topic_partitions(&client, &c.s.topic, c.s.params.stream.partitions, true).await?;
    let mut readers: Vec<(Reader, i32, i64)> = Vec::new();
    for p in parts {
        let pc = kafka::partition(&client, &c.s.topic, p).await?;
        let next = match db.next_offset(&c.consumer, &c.s.topic, p).await? {
            Some(o) => o,
            None => pc
                .get_offset(OffsetAt::Earliest)
                .await
                .map_err(kafka::kafka_err("read the earliest offset"))?,
        };
        tracing::info!(
            consumer = c.consumer,
            topic = c.s.topic,
            partition = p,
            next,
            "resuming"
        );
        readers.push((
            Reader {
                client: std::sync::Arc::new(pc),
                ahead: None,
            },
            p,
            next,
        ));
    }
    // One builder per (symbol, feature spec): each live model gets the features it was trained
    // with (its schema), and models trained alike share a row.
    // symbol → spec key → builder and its score tracker (looked up by &str: no allocation per
    // message).
    let mut builders: HashMap<String, HashMap<String, PerSpec>> = HashMap::new();
    let mut specs = live::specs(live);
    let mut last_message = Instant::now();
    let mut last_refresh = Instant::now();
    let mut writer = Writer {
        db: Some(db),
        inflight: None,
    };
    let result = async {
        'outer: loop {
            if *stop.borrow() {
                break;
            }
            if last_refresh.elapsed() >= Duration::from_secs(c.a.refresh_secs.max(1)) {
                last_refresh = Instant::now();
                *live = refresh_live(c.s, &c.aliases, std::mem::take(live)).await?;
                specs = live::specs(live);
                // A builder whose spec left the live set stops seeing bars; were the spec to come
                // back, its history would have a hole. Drop it: a returning spec is re-seeded.
                for per in builders.values_mut() {
                    per.retain(|key, _| specs.iter().any(|(k, _)| k == key));
                }
            }
            if let Some(h) = heartbeat.as_mut() {
                h.beat();
            }
            let mut got_any = false;
            for (pc, p, next) in &mut readers {
                let t0 = Instant::now();
                let mut records = pc.fetch(*next).await?;
                counts.wait_kafka += t0.elapsed();
                records.retain(|r| r.offset >= *next);
                records.sort_by_key(|r| r.offset);
                // Nothing may be skipped: a gap would silently lose bars (the topic is not
                // compacted and not transactional, so offsets are dense).
                if let Some(first) = records.first()
                    && first.offset != *next
                {
                    return Err(StreamError::Gap {
                        topic: c.s.topic.clone(),
                        partition: *p,
                        expected: *next,
                        got: first.offset,
                    });
                }
                if let Some(max) = c.a.max_messages {
                    let left =
                        usize::try_from(max.saturating_sub(counts.messages)).unwrap_or(usize::MAX);
                    records.truncate(left);
                }
                for chunk in records.chunks(c.batch_size) {
                    let mut batch = db::Batch {
                        candles: Vec::with_capacity(chunk.len()),
                        ..db::Batch::default()
                    };
                    let t0 = Instant::now();
                    // Pass 1, message by message: features, truths and the baselines' scores
                    // (none of which needs a forecast); the rows to predict are kept.
                    let mut bars: Vec<Bar> = Vec::with_capacity(chunk.len());
                    for r in chunk {
                        counts.messages += 1;
                        let Some(msg) = kafka::CandleMessage::decode(&r.record) else {
                            counts.bad += 1;
                            tracing::warn!(
                                partition = *p,
                                offset = r.offset,
                                "not a candle message: skipped"
                            );
                            continue;
                        };
                        let candle = msg.candle();
                        let history = c.s.params.stream.history_bars;
                        let mut bar = Bar {
                            candle: batch.candles.len(),
                            rows: Vec::with_capacity(specs.len()),
                            truths: Vec::new(),
                        };
                        let mut replayed = false;
                        if !builders.contains_key(msg.symbol.as_str()) {
                            builders.insert(msg.symbol.clone(), HashMap::new());
                        }
                        let Some(per) = builders.get_mut(msg.symbol.as_str()) else {
                            continue;
                        };
                        let ewma_key = score::ewma_key(live, &msg.symbol);
                        for (spec_index, (key, spec)) in specs.iter().enumerate() {
                            // Only the specs of the models that predict this symbol's bars.
                            if !live
                                .iter()
                                .any(|m| m.spec_key == *key && m.serves(&msg.symbol))
                            {
                                continue;
                            }
                            // A model trained with the order-flow features needs them on every bar:
                            // refuse the first one without, rather than predict from missing values.
                            spec.check_candles(std::slice::from_ref(&candle))
                                .map_err(|e| crate::missing_column(&msg.symbol, &e))?;
                            if !per.contains_key(key.as_str()) {
                                let mut b = OnlineFeatures::with_spec(spec, history)?;
                                let mut t =
                                    score::Tracker::new(spec, c.s.params.evaluate.ewma_lambda);
                                let limit = i64::try_from(history).unwrap_or(i64::MAX);
                                // The stored history must include every batch handed to the writer.
                                let db = writer.idle(counts).await?;
                                let stored = db.candles(&msg.symbol, None, Some(limit)).await?;
                                // The newest `horizon` stored bars are pushed, not seeded: the
                                // tracker keeps their rows for the baselines of the bars to come.
                                let cut = stored.len().saturating_sub(t.horizon());
                                for bar in &stored[..cut] {
                                    t.push(bar, None);
                                }
                                b.seed(stored[..cut].iter().copied());
                                for bar in &stored[cut..] {
                                    let row = b.push(*bar);
                                    t.push(bar, row.as_ref().map(|r| r.values.as_slice()));
                                }
                                per.insert(
                                    key.clone(),
                                    PerSpec {
                                        builder: b,
                                        tracker: t,
                                        recent: VecDeque::new(),
                                    },
                                );
                            }
                            let Some(st) = per.get_mut(key.as_str()) else {
                                continue;
                            };
                            match st.builder.push(candle) {
                                Some(row) => {
                                    // The forecasts this bar completed the target of.
                                    st.tracker.push(&candle, Some(&row.values));
                                    if let Some(truth) = st.tracker.truth() {
                                        let before = batch.targets.len();
                                        score::collect(
                                            live,
                                            key,
                                            ewma_key,
                                            &msg.symbol,
                                            &truth,
                                            &mut batch.targets,
                                            &mut batch.scores,
                                        )?;
                                        if batch.targets.len() > before {
                                            bar.truths.push((spec_index, before));
                                        }
                                    }
                                    bar.rows.push((spec_index, row));
                                }
                                None => replayed = true,
                            }
                        }
                        if replayed {
                            counts.replayed += 1;
                        }
                        // New: every spec's builder took it as newer than all it holds (the stored
                        // history included), so no stored row has its key.
                        batch.candles.push((msg.symbol, candle, !replayed));
                        bars.push(bar);
                    }
                    let t1 = Instant::now();
                    // Pass 2: each live model predicts all its rows of the batch at once.
                    let mut forecasts: Vec<std::vec::IntoIter<db::Prediction>> =
                        Vec::with_capacity(live.len());
                    for m in live.iter() {
                        let Some(spec_index) = specs.iter().position(|(k, _)| *k == m.spec_key)
                        else {
                            forecasts.push(Vec::new().into_iter());
                            continue;
                        };
                        let mut rows = Vec::with_capacity(bars.len());
                        for bar in &bars {
                            if !m.serves(&batch.candles[bar.candle].0) {
                                continue;
                            }
                            if let Some((_, row)) = bar.rows.iter().find(|(i, _)| *i == spec_index)
                            {
                                rows.push((
                                    batch.candles[bar.candle].0.as_str(),
                                    db::to_time(row.ts)?,
                                    row.values.as_slice(),
                                ));
                            }
                        }
                        forecasts.push(m.predictions(&rows)?.into_iter());
                    }
                    let t2 = Instant::now();
                    counts.predict += t2 - t1;
                    // Pass 3, in message order again: the forecasts made in this session score
                    // the targets from memory (older ones are read back in the batch's
                    // transaction), and each bar's forecasts are kept for the bars to come.
                    let mut from_memory = vec![false; batch.targets.len()];
                    for bar in &bars {
                        let symbol = batch.candles[bar.candle].0.as_str();
                        let Some(per) = builders.get_mut(symbol) else {
                            continue;
                        };
                        for &(spec_index, target) in &bar.truths {
                            if let Some(st) = per.get_mut(specs[spec_index].0.as_str())
                                && let Some(scored) =
                                    remembered(&st.recent, &batch.targets[target])?
                            {
                                from_memory[target] = true;
                                batch.scores.extend(scored);
                            }
                        }
                        for (m, forecasts) in live.iter().zip(forecasts.iter_mut()) {
                            if !m.serves(symbol) {
                                continue;
                            }
                            let Some((_, row)) =
                                bar.rows.iter().find(|(i, _)| specs[*i].0 == m.spec_key)
                            else {
                                continue;
                            };
                            let Some(p) = forecasts.next() else {
                                return Err(StreamError::Join(
                                    "a batch prediction is missing".to_owned(),
                                ));
                            };
                            if let Some(st) = per.get_mut(m.spec_key.as_str()) {
                                st.remember(row.ts, &p);
                            }
                            batch.predictions.push(p);
                        }
                    }
                    let mut kept = from_memory.iter();
                    batch.targets.retain(|_| kept.next() == Some(&false));
                    counts.features += t2.elapsed() + (t1 - t0);
                    let Some(last) = chunk.last() else { continue };
                    let next_offset = last.offset + 1;
                    batch
                        .offsets
                        .push((c.consumer.clone(), c.s.topic.clone(), *p, next_offset));
                    // Committed by the writer while the next batch is computed; batches commit in
                    // order, one at a time, each with its offsets.
                    writer.submit(batch, counts).await?;
                    *next = next_offset;
                    got_any = true;
                    if let Some(h) = heartbeat.as_mut() {
                        h.beat();
                    }
                }
                if c.a.max_messages.is_some_and(|m| counts.messages >= m) {
                    break 'outer;
                }
            }
            if got_any {
                last_message = Instant::now();
            } else if c
                .a
                .idle_exit
                .is_some_and(|secs| last_message.elapsed().as_secs_f64() >= secs)
            {
                tracing::info!("no new message for {:?} s: stopping", c.a.idle_exit);
                break;
            }
        }
        Ok::<(), StreamError>(())
    }
    .await;
    // Never leave a commit running behind the session: the next one reads the stored offsets.
    let drained = writer.idle(counts).await.map(|_| ());
    result.and(drained)
}

/// A bar of the batch being computed: its candle (index in the batch), its feature rows (spec
/// index, row) and the targets it completed (spec index, index in the batch's targets).
struct Bar {
    candle: usize,
    rows: Vec<(usize, online::FeatureRow)>,
    truths: Vec<(usize, usize)>,
}

/// What the consumer keeps per symbol and feature spec.
struct PerSpec {
    builder: OnlineFeatures,
    tracker: score::Tracker,
    /// The volatility forecasts made in this session from the last `horizon + 1` bars, as
    /// stored (bar open time → rows): the ones the next bars' targets score.
    recent: VecDeque<(i64, Vec<db::StoredForecast>)>,
}

impl PerSpec {
    /// Keep `p`, just predicted from the bar at `ts`, if it is a volatility forecast.
    fn remember(&mut self, ts: i64, p: &db::Prediction) {
        let (Some(v), "volatility") = (p.volatility, p.task) else {
            return;
        };
        let row = (
            p.model.clone(),
            p.version.clone(),
            p.alias.clone(),
            p.symbol.clone(),
            p.bar_time,
            v,
            p.lower_80,
            p.upper_80,
        );
        match self.recent.back_mut() {
            Some((at, rows)) if *at == ts => rows.push(row),
            _ => self.recent.push_back((ts, vec![row])),
        }
        while self.recent.len() > self.tracker.horizon() + 1 {
            self.recent.pop_front();
        }
    }
}

/// The scores of target `t` from the forecasts kept in `recent`, when every version it lists
/// has one there (the same rows the stored-forecast query would read); `None` otherwise.
fn remembered(
    recent: &VecDeque<(i64, Vec<db::StoredForecast>)>,
    t: &db::Target,
) -> Result<Option<Vec<db::Score>>, StreamError> {
    let from = t.predicted_from.timestamp_millis();
    let Some((_, rows)) = recent.iter().find(|(at, _)| *at == from) else {
        return Ok(None);
    };
    if !t
        .versions
        .iter()
        .all(|(m, v)| rows.iter().any(|r| r.0 == *m && r.1 == *v))
    {
        return Ok(None);
    }
    db::score_stored(std::slice::from_ref(t), rows).map(Some)
}

type Fetched = Result<Vec<rskafka::record::RecordAndOffset>, rskafka::client::error::Error>;

/// A partition's reader: while the consumer works through one fetch, the next one (from the
/// offset after its last record) is already on its way.
struct Reader {
    client: std::sync::Arc<PartitionClient>,
    /// The fetch under way and the offset it reads from.
    ahead: Option<(i64, tokio::task::JoinHandle<Fetched>)>,
}

impl Reader {
    fn start(&self, offset: i64) -> tokio::task::JoinHandle<Fetched> {
        let client = std::sync::Arc::clone(&self.client);
        tokio::spawn(async move {
            client
                .fetch_records(offset, 1..4_000_000, 200)
                .await
                .map(|(records, _high)| records)
        })
    }

    /// The records from `offset` on (as the broker returns them), and the next fetch started.
    async fn fetch(
        &mut self,
        offset: i64,
    ) -> Result<Vec<rskafka::record::RecordAndOffset>, StreamError> {
        let task = match self.ahead.take() {
            Some((at, task)) if at == offset => task,
            other => {
                if let Some((_, stale)) = other {
                    stale.abort();
                }
                self.start(offset)
            }
        };
        let records = task
            .await
            .map_err(|e| StreamError::Join(e.to_string()))?
            .map_err(kafka::kafka_err("fetch"))?;
        if let Some(last) = records.iter().map(|r| r.offset).max()
            && last >= offset
        {
            self.ahead = Some((last + 1, self.start(last + 1)));
        }
        Ok(records)
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        if let Some((_, task)) = self.ahead.take() {
            task.abort();
        }
    }
}

/// A session's PostgreSQL writer: it commits one batch at a time, in order, each in its own
/// transaction with its offsets, in a task of its own, so that the consumer computes the next
/// batch meanwhile. At most one batch is in flight; it is waited for before the connection is
/// used for anything else (seeding a builder from the stored candles) and before the session
/// ends, so what a session reads back from PostgreSQL includes every batch it handed over.
struct Writer {
    db: Option<db::Db>,
    inflight: Option<tokio::task::JoinHandle<(db::Db, Result<db::Written, StreamError>)>>,
}

impl Writer {
    /// Wait for the batch in flight (counting it once committed) and lend the connection.
    async fn idle(&mut self, counts: &mut Counts) -> Result<&mut db::Db, StreamError> {
        if let Some(h) = self.inflight.take() {
            let (db, written) = h.await.map_err(|e| StreamError::Join(e.to_string()))?;
            self.db = Some(db);
            let w = written?;
            counts.predictions += w.predictions;
            counts.scores += w.scores;
            counts.batches += 1;
        }
        self.db
            .as_mut()
            .ok_or_else(|| StreamError::Join("the PostgreSQL writer was lost".to_owned()))
    }

    /// Hand `batch` over once the previous one is committed.
    async fn submit(&mut self, batch: db::Batch, counts: &mut Counts) -> Result<(), StreamError> {
        let t0 = Instant::now();
        self.idle(counts).await?;
        counts.wait_db += t0.elapsed();
        let Some(mut db) = self.db.take() else {
            return Err(StreamError::Join(
                "the PostgreSQL writer was lost".to_owned(),
            ));
        };
        self.inflight = Some(tokio::spawn(async move {
            let written = db.commit(&batch).await;
            (db, written)
        }));
        Ok(())
    }
}

/// The consumer's liveness file (`--heartbeat-file`): the current Unix time, rewritten at most
/// every [`Heartbeat::EVERY`].
struct Heartbeat {
    path: std::path::PathBuf,
    last: Instant,
}

impl Heartbeat {
    const EVERY: Duration = Duration::from_secs(10);

    fn start(path: &std::path::Path) -> Result<Self, StreamError> {
        write_heartbeat(path).map_err(|source| StreamError::Heartbeat {
            path: path.display().to_string(),
            source,
        })?;
        Ok(Self {
            path: path.to_owned(),
            last: Instant::now(),
        })
    }

    fn beat(&mut self) {
        if self.last.elapsed() < Self::EVERY {
            return;
        }
        self.last = Instant::now();
        if let Err(e) = write_heartbeat(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %e, "could not write the heartbeat file");
        }
    }
}

fn write_heartbeat(path: &std::path::Path) -> std::io::Result<()> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    std::fs::write(path, format!("{now}\n"))
}

/// Stops the consumer between batches on SIGTERM or Ctrl-C.
pub(crate) fn shutdown_flag() -> tokio::sync::watch::Receiver<bool> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(t) => t,
                    Err(e) => {
                        tracing::warn!(error = %e, "no SIGTERM handler");
                        let _ = ctrl_c.await;
                        let _ = tx.send(true);
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("stopping after the current batch");
        let _ = tx.send(true);
    });
    rx
}

/// Re-read the aliases (blocking registry calls off the async threads); keep the old set when
/// the registry fails or no alias is left.
async fn refresh_live(
    s: &Settings,
    aliases: &[String],
    old: Vec<live::LiveModel>,
) -> Result<Vec<live::LiveModel>, StreamError> {
    let home = s.home.clone();
    let bindings = s.bindings.clone();
    let aliases = aliases.to_vec();
    let fresh = tokio::task::spawn_blocking(move || {
        let registry = home.registry()?;
        live::load_bound(registry.as_ref(), &bindings, &aliases)
    })
    .await
    .map_err(|e| StreamError::Join(e.to_string()))?;
    match fresh {
        Ok(new) if !new.is_empty() => {
            let key = |l: &[live::LiveModel]| {
                l.iter()
                    .map(|m| (m.version, m.alias.clone()))
                    .collect::<Vec<_>>()
            };
            if key(&new) != key(&old) {
                tracing::info!("live models now: {}", live::describe(&new));
            }
            Ok(new)
        }
        Ok(_) => {
            tracing::warn!("no live alias left in the registry: keeping the previous models");
            Ok(old)
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not refresh the live models: keeping the previous ones");
            Ok(old)
        }
    }
}

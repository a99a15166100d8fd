//! The Kafka side: the candle message, the topic, keyed partitioning.
//!
//! Client: `rskafka` (pure Rust, builds for static musl). It produces and fetches by offset;
//! consumer offsets are not kept in Kafka but in PostgreSQL, in the same transaction as the
//! rows they produced (see `db`), so no consumer-group support is needed.

use crate::StreamError;
use rps_core::candle::Candle;
use rskafka::BackoffConfig;
use rskafka::client::partition::{PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// One closed candle on the topic (JSON, UTF-8), keyed by `symbol`.
///
/// `{"symbol":"BTC-USD","interval":"1h","ts":1514764800000,"time":"2018-01-01T00:00:00Z",
/// "open":13716.36,"high":13818.55,"low":13630.0,"close":13657.2,"volume":123.4}` — `ts` is the
/// bar's open time in ms (UTC) and is what the consumer reads; `time` is for humans. A candle
/// with the Binance klines' order-flow columns adds `quote_volume`, `trades`, `taker_buy_volume`
/// and `taker_buy_quote_volume`; each is optional (left out when the candle has none), so
/// messages without them decode as before.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandleMessage {
    pub symbol: String,
    pub interval: String,
    pub ts: i64,
    #[serde(default)]
    pub time: String,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quote_volume: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trades: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taker_buy_volume: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taker_buy_quote_volume: Option<f64>,
}

impl CandleMessage {
    /// The candle a record carries, or `None` for an empty or non-candle value.
    pub fn decode(record: &rskafka::record::Record) -> Option<Self> {
        record
            .value
            .as_deref()
            .and_then(|v| serde_json::from_slice(v).ok())
    }

    pub fn new(symbol: &str, interval: &str, c: &Candle) -> Self {
        Self {
            symbol: symbol.to_owned(),
            interval: interval.to_owned(),
            ts: c.ts,
            time: chrono::DateTime::from_timestamp_millis(c.ts)
                .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
                .unwrap_or_default(),
            open: c.open,
            high: c.high,
            low: c.low,
            close: c.close,
            volume: c.volume,
            quote_volume: c.quote_volume,
            trades: c.trades,
            taker_buy_volume: c.taker_buy_volume,
            taker_buy_quote_volume: c.taker_buy_quote_volume,
        }
    }

    pub fn candle(&self) -> Candle {
        Candle {
            ts: self.ts,
            open: self.open,
            high: self.high,
            low: self.low,
            close: self.close,
            volume: self.volume,
            quote_volume: self.quote_volume,
            trades: self.trades,
            taker_buy_volume: self.taker_buy_volume,
            taker_buy_quote_volume: self.taker_buy_quote_volume,
        }
    }
}

/// The record of one closed candle: key `symbol`, value the JSON [`CandleMessage`].
pub fn candle_record(
    symbol: &str,
    interval: &str,
    c: &Candle,
) -> Result<rskafka::record::Record, StreamError> {
    let value = serde_json::to_vec(&CandleMessage::new(symbol, interval, c))
        .map_err(|e| StreamError::Input(e.to_string()))?;
    Ok(rskafka::record::Record {
        key: Some(symbol.as_bytes().to_vec()),
        value: Some(value),
        headers: std::collections::BTreeMap::new(),
        timestamp: chrono::Utc::now(),
    })
}

/// Kafka's default partitioner (murmur2 of the key, positive, modulo the partition count), so
/// that other Kafka clients place a symbol on the same partition.
pub fn partition_for(key: &[u8], partitions: i32) -> i32 {
    let n = partitions.max(1);
    let h = murmur2(key) & 0x7fff_ffff;
    #[allow(clippy::cast_possible_wrap)]
    let h = h as i32;
    h % n
}

/// Kafka's murmur2 (seed 0x9747b28c), as in the Java client's `Utils.murmur2`.
#[allow(clippy::cast_possible_truncation)]
fn murmur2(data: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = 0x9747_b28c ^ (len as u32);
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

pub(crate) fn kafka_err(
    what: &str,
) -> impl FnOnce(rskafka::client::error::Error) -> StreamError + '_ {
    move |source| StreamError::Kafka {
        what: what.to_owned(),
        source: Box::new(source),
    }
}

/// Connect to the brokers (comma-separated `host:port`). Requests are retried with back-off
/// for at most `deadline`.
pub async fn connect(brokers: &str, deadline: Duration) -> Result<Client, StreamError> {
    let list: Vec<String> = brokers
        .split(',')
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .map(str::to_owned)
        .collect();
    if list.is_empty() {
        return Err(StreamError::Config("no Kafka broker given".to_owned()));
    }
    ClientBuilder::new(list)
        .client_id("rps-stream")
        .backoff_config(BackoffConfig {
            deadline: Some(deadline),
            ..BackoffConfig::default()
        })
        .build()
        .await
        .map_err(kafka_err(&format!("connect to {brokers}")))
}

/// The partitions of `topic` as the cluster lists them now (`None`: no such topic).
async fn listed_partitions(client: &Client, topic: &str) -> Result<Option<Vec<i32>>, StreamError> {
    Ok(client
        .list_topics()
        .await
        .map_err(kafka_err("list topics"))?
        .into_iter()
        .find(|t| t.name == topic)
        .map(|t| t.partitions.into_iter().collect::<Vec<i32>>())
        .filter(|p| !p.is_empty()))
}

/// The partitions of `topic`, creating the topic with `partitions` partitions when it does not
/// exist (and `create` is set).
pub async fn topic_partitions(
    client: &Client,
    topic: &str,
    partitions: i32,
    create: bool,
) -> Result<Vec<i32>, StreamError> {
    if let Some(p) = listed_partitions(client, topic).await? {
        return Ok(p);
    }
    if !create {
        return Err(StreamError::Config(format!(
            "Kafka topic {topic:?} does not exist (run `rps stream produce` first)"
        )));
    }
    let controller = client
        .controller_client()
        .map_err(kafka_err("find the controller"))?;
    if let Err(e) = controller
        .create_topic(topic, partitions.max(1), 1, 10_000)
        .await
    {
        // Another producer may have created it meanwhile; the listing below decides.
        tracing::debug!(error = %e, topic, "create topic");
    } else {
        tracing::info!(topic, partitions, "created Kafka topic");
    }
    for _ in 0..50 {
        if let Some(p) = listed_partitions(client, topic).await? {
            return Ok(p);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(StreamError::Config(format!(
        "Kafka topic {topic:?} could not be created"
    )))
}

/// A client for one partition of `topic`.
pub async fn partition(
    client: &Client,
    topic: &str,
    partition: i32,
) -> Result<PartitionClient, StreamError> {
    client
        .partition_client(topic, partition, UnknownTopicHandling::Retry)
        .await
        .map_err(kafka_err(&format!("open {topic}/{partition}")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafkas_java_partitioner() {
        // Values from Kafka's UtilsTest.testMurmur2.
        assert_eq!(murmur2(b"21"), (-973_932_308_i32) as u32);
        assert_eq!(murmur2(b"foobar"), (-790_332_482_i32) as u32);
        assert_eq!(
            murmur2(b"a-little-bit-long-string"),
            (-985_981_536_i32) as u32
        );
        assert_eq!(
            murmur2(b"a-little-bit-longer-string"),
            (-1_486_304_829_i32) as u32
        );
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
            (-58_897_971_i32) as u32
        );
        assert_eq!(murmur2(b"abc"), 479_470_107);
        assert!((0..3).contains(&partition_for(b"BTC-USD", 3)));
    }

    #[test]
    fn message_round_trips_a_candle() {
        let c = Candle {
            ts: 1_514_764_800_000,
            open: 1.0,
            high: 2.0,
            low: 0.5,
            close: 1.5,
            volume: 3.0,
            ..Default::default()
        };
        let m = CandleMessage::new("BTC-USD", "1h", &c);
        assert_eq!(m.time, "2018-01-01T00:00:00Z");
        let back: CandleMessage = serde_json::from_slice(&serde_json::to_vec(&m).unwrap()).unwrap();
        assert_eq!(back.candle(), c);
        let json = String::from_utf8(serde_json::to_vec(&m).unwrap()).unwrap();
        assert!(
            !json.contains("trades"),
            "no flow columns, none written: {json}"
        );
    }

    /// The order-flow columns travel; a message written before they existed still decodes.
    #[test]
    fn message_carries_the_order_flow_columns_and_old_messages_decode() {
        let c = Candle {
            quote_volume: Some(4.5),
            trades: Some(17),
            taker_buy_volume: Some(1.25),
            taker_buy_quote_volume: Some(2.0),
            ..Candle::ohlcv(1_514_764_800_000, 1.0, 2.0, 0.5, 1.5, 3.0)
        };
        let m = CandleMessage::new("BTC-USD", "1h", &c);
        let back: CandleMessage = serde_json::from_slice(&serde_json::to_vec(&m).unwrap()).unwrap();
        assert_eq!(back.candle(), c);
        let old = br#"{"symbol":"BTC-USD","interval":"1h","ts":1514764800000,"time":"2018-01-01T00:00:00Z","open":1.0,"high":2.0,"low":0.5,"close":1.5,"volume":3.0}"#;
        let m: CandleMessage = serde_json::from_slice(old).unwrap();
        assert_eq!(
            m.candle(),
            Candle::ohlcv(1_514_764_800_000, 1.0, 2.0, 0.5, 1.5, 3.0)
        );
    }
}

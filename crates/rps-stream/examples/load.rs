//! The load of `make bench-stream`'s scale run: `--symbols` synthetic coins (seeded GARCH with
//! regime switches, `rps_core::synthetic`) × `--bars` hourly bars published to a topic in time
//! order — every symbol's bar `t`, then every symbol's bar `t + 1` — as a live multi-coin feed
//! would be, keyed by symbol with Kafka's partitioner, `--batch` records per produce request.
//!
//! Usage: cargo run --release -p rps-stream --example load -- BROKERS TOPIC SYMBOLS BARS [BATCH]

#![allow(clippy::print_stdout)]

use rps_core::candle::Interval;
use rps_core::synthetic::{SyntheticParams, simulate};
use rps_stream::kafka;
use rskafka::client::partition::Compression;
use std::time::{Duration, Instant};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [brokers, topic, symbols, bars, rest @ ..] = args.as_slice() else {
        return Err("usage: load BROKERS TOPIC SYMBOLS BARS [BATCH]".into());
    };
    let (symbols, bars): (usize, usize) = (symbols.parse()?, bars.parse()?);
    let batch: usize = rest.first().map_or(Ok(1000), |b| b.parse())?;
    let start = 1_609_459_200_000; // 2021-01-01T00:00:00Z
    let end = start + i64::try_from(bars)? * Interval::H1.ms();
    let series: Vec<(String, Vec<rps_core::Candle>)> = (0..symbols)
        .map(|i| {
            let p = SyntheticParams {
                seed: 1000 + i as u64,
                start_price: 10.0 + i as f64,
                ..SyntheticParams::default()
            };
            let mut candles = simulate(&p, Interval::H1, start, end);
            // The Binance klines' order-flow columns, derived from each bar (a model trained
            // on the bundled Binance sample with `features.flow: auto` needs them on every bar):
            // a trade per 0.25 units of volume, the taker-buy share leaning with the bar's move.
            for c in &mut candles {
                let mid = 0.5 * (c.open + c.close);
                let lean = ((c.close - c.open) / c.open * 50.0).tanh();
                let buy = c.volume * (0.5 + 0.4 * lean);
                c.quote_volume = Some(c.volume * mid);
                c.trades = Some((c.volume * 4.0).round().max(1.0) as u64);
                c.taker_buy_volume = Some(buy);
                c.taker_buy_quote_volume = Some(buy * mid);
            }
            (format!("SYM{i:04}-USD"), candles)
        })
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let client = kafka::connect(brokers, Duration::from_secs(30)).await?;
        let parts = kafka::topic_partitions(&client, topic, 1, true).await?;
        let n = i32::try_from(parts.len())?;
        let mut clients = Vec::new();
        for p in &parts {
            clients.push(kafka::partition(&client, topic, *p).await?);
        }
        let mut pending: Vec<Vec<rskafka::record::Record>> = vec![Vec::new(); parts.len()];
        let started = Instant::now();
        let mut sent = 0usize;
        for t in 0..bars {
            for (symbol, candles) in &series {
                let Some(c) = candles.get(t) else { continue };
                let p = usize::try_from(kafka::partition_for(symbol.as_bytes(), n))?;
                pending[p].push(kafka::candle_record(symbol, "1h", c)?);
                if pending[p].len() >= batch {
                    sent += pending[p].len();
                    clients[p]
                        .produce(std::mem::take(&mut pending[p]), Compression::NoCompression)
                        .await?;
                }
            }
        }
        for (p, records) in pending.into_iter().enumerate() {
            if !records.is_empty() {
                sent += records.len();
                clients[p]
                    .produce(records, Compression::NoCompression)
                    .await?;
            }
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "produced {sent} bars of {symbols} symbols in {secs:.1} s ({:.0} bars/s)",
            sent as f64 / secs
        );
        Ok::<(), Box<dyn std::error::Error>>(())
    })
}

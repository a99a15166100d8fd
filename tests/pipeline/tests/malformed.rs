//! The malformed-input corpus (tests/data/malformed, one file per defect class) and the other
//! attacks on the quality gate and the raw dataset: each must stop the pipeline with its exit
//! code and a message naming the check and the row; the real data must still pass.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use rps_pipeline_tests::{Output, Project, bin_dir, btc_params, repo_root, shared_data};
use std::path::PathBuf;
use std::process::{Command, Stdio};

fn corpus(name: &str) -> PathBuf {
    repo_root().join("tests/data/malformed").join(name)
}

/// The corpus files are 120–300 rows: everything at the repository defaults but `min_rows`.
fn corpus_params(file: &str) -> String {
    format!("{}quality:\n  min_rows: 50\n", btc_params(&corpus(file)))
}

fn assert_names(o: &Output, what: &str, code: i32, needles: &[&str]) {
    assert_eq!(o.code, code, "{what}: wanted exit {code}:\n{}", o.stderr);
    for n in needles {
        assert!(
            o.stderr.contains(n),
            "{what}: stderr should name {n:?}:\n{}",
            o.stderr
        );
    }
}

#[test]
fn each_malformed_file_stops_the_pipeline_naming_the_check_and_the_row() {
    // (file, the stage that refuses it, exit code, what the message must name)
    let cases: &[(&str, &str, i32, &[&str])] = &[
        (
            "inf_high.csv",
            "rps-quality",
            5,
            &["non_finite: 1 infinite values: 2018-01-03T02:00:00Z high=inf"],
        ),
        (
            "spike_x100.csv",
            "rps-quality",
            5,
            &["spikes: 1 bars", "2018-01-03T12:00:00Z close"],
        ),
        (
            "spike_x10.csv",
            "rps-quality",
            5,
            &["spikes: 1 bars", "2018-01-03T13:00:00Z close"],
        ),
        (
            "wick_high_x10.csv",
            "rps-quality",
            5,
            &["spikes: 1 bars", "2018-01-03T22:00:00Z high"],
        ),
        (
            "frozen_200h.csv",
            "rps-quality",
            5,
            &[
                "frozen: longest run of identical OHLC bars: 200",
                "2018-01-03T02:00:00Z..2018-01-11T09:00:00Z (200 bars)",
            ],
        ),
        (
            "price_1e308.csv",
            "rps-quality",
            5,
            &["magnitude: 1 bars", "2018-01-04T08:00:00Z price 1e308"],
        ),
        (
            "conflicting_duplicates.csv",
            "rps-extract",
            4,
            &[
                "1 timestamps appear more than once with different values",
                "2018-01-03T22:00:00Z (lines 72, 73)",
            ],
        ),
        (
            "mixed_offsets.csv",
            "rps-extract",
            4,
            &[
                "the UTC offset of the timestamps changes (+00:00 from line 2, +02:00 from line 62)",
                "2018-01-03T10:00:00Z (lines 60, 62)",
                "2018-01-03T11:00:00Z (lines 61, 63)",
            ],
        ),
        // Exact copies are collapsed and counted, not refused.
        (
            "identical_duplicates.csv",
            "rps-quality",
            0,
            &["1 rows repeated another row exactly and were collapsed"],
        ),
    ];
    for &(file, stage, code, needles) in cases {
        let p = Project::new(&corpus_params(file));
        let extract = p.run("rps-extract", &[]);
        if stage == "rps-extract" {
            assert_names(&extract, file, code, needles);
            assert!(!p.path(".rps/data/raw").exists(), "{file}: nothing stored");
            continue;
        }
        assert_eq!(
            extract.code, 0,
            "{file}: extract failed:\n{}",
            extract.stderr
        );
        let quality = p.run("rps-quality", &[]);
        let both = Output {
            code: quality.code,
            stdout: String::new(),
            stderr: format!("{}{}", extract.stderr, quality.stderr),
        };
        assert_names(&both, file, code, needles);
        if code == 5 {
            let q = p.json(".rps/reports/quality.json");
            let failed: Vec<&str> = q["checks"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|c| c["passed"] == false)
                .map(|c| c["name"].as_str().unwrap())
                .collect();
            let check = needles[0].split(':').next().unwrap();
            assert!(failed.contains(&check), "{file}: {failed:?}");
        }
    }
}

#[test]
fn the_real_data_passes_the_gate() {
    let sample = Project::new(&btc_params(
        &repo_root().join("data/sample/btc_usd_1h_coinbase_2018.csv"),
    ));
    sample.ok("rps-extract", &[]);
    sample.ok("rps-quality", &[]);
    // 27 outage gaps and 43 bars stamped :28:14 after the February 2018 outage; every kline
    // column mapped (issue #16).
    let binance = Project::new(&format!(
        "data:\n  source: file\n  symbol: BTC-USDT\n  file:\n    path: {}\n    columns: {{timestamp: date, open: open, high: high, low: low, close: close, volume: volume, quote_volume: quote_asset_volume, trades: number_of_trades, taker_buy_volume: taker_buy_base_asset_volume, taker_buy_quote_volume: taker_buy_quote_asset_volume}}\n",
        shared_data("btc_usdt_1h_binance_2017-08_2021-12.csv").display()
    ));
    binance.ok("rps-extract", &[]);
    let store = rps_store::open(binance.path(".rps/data/raw/BTC-USDT").to_str().unwrap()).unwrap();
    let (_, bars, problems) = rps_store::raw::RawDataset::new(store).read_all().unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(bars.len(), 38_222);
    assert!(
        bars.iter()
            .all(|c| c.trades.is_some() && c.taker_buy_quote_volume.is_some()),
        "the raw dataset keeps the klines' order-flow columns"
    );
    let o = binance.ok("rps-quality", &[]);
    assert!(
        o.stderr.contains("43 timestamps off the grid")
            && o.stderr.contains("in 27 gaps (longest 32 bars"),
        "{}",
        o.stderr
    );
    let q = binance.json(".rps/reports/quality.json");
    for c in q["checks"].as_array().unwrap() {
        assert_eq!(c["passed"], true, "{c}");
    }
}

#[test]
fn an_edited_or_truncated_partition_is_refused_with_exit_4() {
    let p = Project::new(&btc_params(
        &repo_root().join("data/sample/btc_usd_1h_coinbase_2018.csv"),
    ));
    p.ok("rps-extract", &[]);
    let manifest = p.json(".rps/data/raw/BTC-USD/_manifest.json");
    let part = &manifest["partitions"][2];
    let key = part["key"].as_str().unwrap();
    let file = p.path(&format!(".rps/data/raw/BTC-USD/{key}"));
    let original = std::fs::read(&file).unwrap();
    // One byte changed in place: the size and the manifest are unchanged.
    let mut edited = original.clone();
    let mid = edited.len() / 2;
    edited[mid] ^= 0x20;
    std::fs::write(&file, &edited).unwrap();
    let o = p.run("rps-quality", &[]);
    assert_names(
        &o,
        "edited partition",
        4,
        &[
            key,
            "does not match the manifest",
            "crc32c",
            part["crc32c"].as_str().unwrap(),
        ],
    );
    std::fs::write(&file, &original[..original.len() / 3]).unwrap();
    assert_names(&p.run("rps-quality", &[]), "truncated partition", 4, &[key]);
    std::fs::write(&file, &original).unwrap();
    p.ok("rps-quality", &[]);
}

#[test]
fn configuration_mistakes_exit_3() {
    let p = Project::new(&btc_params(
        &repo_root().join("data/sample/btc_usd_1h_coinbase_2018.csv"),
    ));
    let o = p.run(
        "rps-extract",
        &[
            "--start",
            "2018-03-01T00:00:00Z",
            "--end",
            "2018-02-01T00:00:00Z",
        ],
    );
    assert_names(
        &o,
        "end before start",
        3,
        &["end 2018-02-01T00:00:00Z is not after start 2018-03-01T00:00:00Z"],
    );
    for stage in [
        "rps-extract",
        "rps-quality",
        "rps-transform",
        "rps-train",
        "rps-evaluate",
    ] {
        let o = p.run(stage, &["--home", "ftp://example.invalid/rps"]);
        assert_names(
            &o,
            stage,
            3,
            &["unsupported storage URI \"ftp://example.invalid/rps"],
        );
    }
    let bad = Project::new(&format!(
        "{}quality:\n  outlier_sigmas: -3\n",
        btc_params(&corpus("spike_x10.csv"))
    ));
    for stage in ["rps-extract", "rps-quality"] {
        assert_names(
            &bad.run(stage, &[]),
            stage,
            3,
            &["quality.outlier_sigmas: -3 must be a positive finite number"],
        );
    }
}

/// Peak resident memory (KiB) of a finished child run under GNU time, else of a polled one.
fn run_measured(args: &[&str], dir: &std::path::Path) -> (i32, String, u64) {
    let exe = bin_dir().join("rps-extract");
    let rss_file = dir.join("rss.txt");
    let stderr_file = dir.join("stderr.txt");
    let time = std::path::Path::new("/usr/bin/time");
    let mut cmd = if time.exists() {
        let mut c = Command::new(time);
        c.arg("-f").arg("%M").arg("-o").arg(&rss_file).arg(&exe);
        c
    } else {
        eprintln!("/usr/bin/time missing: polling VmHWM of the child instead (a lower bound)");
        Command::new(&exe)
    };
    let mut child = cmd
        .args(args)
        .current_dir(dir)
        .env_remove("MLFLOW_TRACKING_URI")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_file).unwrap())
        .spawn()
        .unwrap();
    let mut polled = 0u64;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if let Ok(text) = std::fs::read_to_string(format!("/proc/{}/status", child.id())) {
            for line in text.lines().filter(|l| l.starts_with("VmHWM:")) {
                let kb: u64 = line
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("0")
                    .parse()
                    .unwrap_or(0);
                polled = polled.max(kb);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    };
    let measured = std::fs::read_to_string(&rss_file)
        .ok()
        .and_then(|t| t.trim().lines().last().and_then(|l| l.trim().parse().ok()))
        .unwrap_or(polled);
    let stderr = std::fs::read_to_string(&stderr_file).unwrap();
    (status.code().unwrap_or(-1), stderr, measured)
}

#[test]
fn a_huge_file_without_line_breaks_is_refused_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("garbage.csv");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&big).unwrap());
        f.write_all(b"timestamp_utc,open,high,low,close,volume_btc,")
            .unwrap();
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..64 {
            f.write_all(&chunk).unwrap();
        }
    }
    std::fs::write(dir.path().join("params.yaml"), btc_params(&big)).unwrap();
    let (code, stderr, rss_kib) = run_measured(&["--home", ".rps"], dir.path());
    assert_eq!(code, 4, "{stderr}");
    assert!(
        stderr.contains("garbage.csv, line 1: longer than 1048576 bytes without a line break"),
        "{stderr}"
    );
    assert!(stderr.len() < 4096, "{} bytes of stderr", stderr.len());
    assert!(rss_kib > 0, "no memory measurement");
    assert!(
        rss_kib < 200 * 1024,
        "peak RSS {rss_kib} KiB for a 64 MiB file"
    );
    // A data line past the limit names its line number.
    let mut text = String::from(
        "timestamp_utc,open,high,low,close,volume_btc\n2018-01-01T00:00:00Z,1,2,0.5,1.5,3\n",
    );
    text.push_str(&"9".repeat(2 << 20));
    std::fs::write(&big, text).unwrap();
    let (code, stderr, _) = run_measured(&["--home", ".rps"], dir.path());
    assert_eq!(code, 4, "{stderr}");
    assert!(stderr.contains("line 3: longer than"), "{stderr}");
    // Long values are cut in messages.
    std::fs::write(
        &big,
        format!(
            "timestamp_utc,open,high,low,close,volume_btc\n2018-01-01T00:00:00Z,{},2,0.5,1.5,3\n",
            "7a".repeat(100_000)
        ),
    )
    .unwrap();
    let (code, stderr, _) = run_measured(&["--home", ".rps"], dir.path());
    assert_eq!(code, 4, "{stderr}");
    assert!(
        stderr.contains("is not a number") && stderr.contains('…'),
        "{stderr}"
    );
    assert!(stderr.len() < 4096, "{} bytes of stderr", stderr.len());
}

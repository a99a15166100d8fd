//! Import OHLCV candles from a user's CSV or Parquet file, with a column mapping.

use crate::parquet_io;
use arrow::array::{Array, RecordBatch, StringArray, TimestampMillisecondArray};
use arrow::datatypes::{DataType, TimeUnit};
use chrono::{DateTime, NaiveDateTime};
use rps_core::Candle;
use rps_core::params::{ColumnMapping, FileSourceParams};
use std::io::Read;
use std::path::Path;

/// Longest line accepted in a CSV file (1 MiB): a file without line breaks is refused after
/// reading this much, not loaded whole.
pub const MAX_LINE_BYTES: usize = 1 << 20;
/// Longest piece of the file quoted in an error message, in characters.
const MAX_QUOTED_CHARS: usize = 200;

/// `s` cut to its first 200 characters plus `…` (values quoted in error messages).
pub fn clip(s: &str) -> String {
    match s.char_indices().nth(MAX_QUOTED_CHARS) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_owned(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is empty: no header and no rows")]
    Empty { path: String },
    #[error("{path} has no data rows")]
    NoRows { path: String },
    #[error(
        "{path} has no column {column:?} (mapped from `{field}`); columns found: {found}. Set data.file.columns.{field} in params.yaml"
    )]
    MissingColumn {
        path: String,
        field: String,
        column: String,
        found: String,
    },
    #[error("{path}, row {row}: {problem}")]
    Row {
        path: String,
        row: usize,
        problem: String,
    },
    #[error("{path}: {source}")]
    Csv {
        path: String,
        #[source]
        source: csv::Error,
    },
    #[error(transparent)]
    Parquet(#[from] parquet_io::ParquetError),
    #[error("unknown file format {0:?}: use csv, parquet or auto")]
    Format(String),
    #[error(
        "{path}, line {line}: longer than {limit} bytes without a line break; not a CSV file of candles?"
    )]
    LineTooLong {
        path: String,
        line: u64,
        limit: usize,
    },
    #[error(
        "{path}: {count} timestamps appear more than once with different values (identical copies would be collapsed): {listed}"
    )]
    ConflictingDuplicates {
        path: String,
        count: usize,
        listed: String,
    },
    #[error(
        "{path}: the UTC offset of the timestamps changes ({changes}) and the converted times collide: {listed}. Fix the offsets (or the clock) in the file"
    )]
    OffsetCollision {
        path: String,
        changes: String,
        listed: String,
    },
}

/// A reader that fails once a line grows past `limit` bytes, counting lines as it goes.
struct LineLimit<R> {
    inner: R,
    line: u64,
    current: usize,
    limit: usize,
}

/// The marker inside the I/O error [`LineLimit`] raises.
#[derive(Debug)]
struct LineTooLong {
    line: u64,
}

impl std::fmt::Display for LineTooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {} is too long", self.line)
    }
}

impl std::error::Error for LineTooLong {}

impl<R: Read> Read for LineLimit<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        for &b in &buf[..n] {
            if b == b'\n' {
                self.line += 1;
                self.current = 0;
            } else {
                self.current += 1;
                if self.current > self.limit {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        LineTooLong { line: self.line },
                    ));
                }
            }
        }
        Ok(n)
    }
}

/// Parse a timestamp cell to epoch ms (UTC) with the given format (see
/// [`FileSourceParams::timestamp_format`]).
pub fn parse_timestamp(s: &str, format: &str) -> Result<i64, String> {
    parse_timestamp_offset(s, format).map(|(ts, _)| ts)
}

/// [`parse_timestamp`], plus the UTC offset in seconds the cell carried (RFC 3339 cells only).
fn parse_timestamp_offset(s: &str, format: &str) -> Result<(i64, Option<i32>), String> {
    let s = s.trim();
    let rfc = |s: &str| {
        DateTime::parse_from_rfc3339(s)
            .map(|d| (d.timestamp_millis(), Some(d.offset().local_minus_utc())))
    };
    if (format == "rfc3339" || format == "auto")
        && let Ok(v) = rfc(s)
    {
        return Ok(v);
    }
    parse_timestamp_plain(s, format).map(|ts| (ts, None))
}

fn parse_timestamp_plain(s: &str, format: &str) -> Result<i64, String> {
    let q = clip(s);
    let naive =
        |f: &str| NaiveDateTime::parse_from_str(s, f).map(|d| d.and_utc().timestamp_millis());
    match format {
        "unix_ms" => s
            .parse::<i64>()
            .map_err(|e| format!("{q:?} is not epoch milliseconds: {e}")),
        "unix_s" => s
            .parse::<f64>()
            .map(|v| (v * 1000.0).round() as i64)
            .map_err(|e| format!("{q:?} is not epoch seconds: {e}")),
        "rfc3339" => DateTime::parse_from_rfc3339(s)
            .map(|d| d.timestamp_millis())
            .map_err(|e| format!("{q:?} is not RFC 3339: {e}")),
        "auto" => {
            if let Ok(v) = s.parse::<f64>() {
                // Seconds until the year 5138; larger numbers are milliseconds.
                return Ok(if v.abs() >= 1e11 {
                    v.round() as i64
                } else {
                    (v * 1000.0).round() as i64
                });
            }
            DateTime::parse_from_rfc3339(s)
                .map(|d| d.timestamp_millis())
                .or_else(|_| naive("%Y-%m-%d %H:%M:%S"))
                .or_else(|_| naive("%Y-%m-%dT%H:%M:%S"))
                .or_else(|_| naive("%Y-%m-%d %H:%M"))
                .or_else(|_| naive("%Y-%m-%d %I-%p"))
                .map_err(|_| format!("cannot read timestamp {q:?} (RFC 3339, 'YYYY-MM-DD HH:MM:SS' or epoch seconds/ms expected; set data.file.timestamp_format)"))
        }
        custom => naive(custom).map_err(|e| format!("{q:?} does not match {custom:?}: {e}")),
    }
}

fn parse_number(s: &str) -> Result<f64, String> {
    let t = s.trim();
    if t.is_empty() {
        return Ok(f64::NAN);
    }
    t.parse::<f64>()
        .map_err(|_| format!("{:?} is not a number", clip(t)))
}

/// A trade count: a whole, non-negative number (`12417`, or `12417.0` as some exports write it).
fn parse_count(s: &str) -> Result<Option<u64>, String> {
    let t = s.trim();
    if t.is_empty() {
        return Ok(None);
    }
    if let Ok(n) = t.parse::<u64>() {
        return Ok(Some(n));
    }
    match t.parse::<f64>() {
        Ok(x) if x >= 0.0 && x.fract() == 0.0 && x < 2f64.powi(63) => Ok(Some(x as u64)),
        _ => Err(format!("{:?} is not a whole number of trades", clip(t))),
    }
}

/// The optional order-flow fields of the mapping and the columns they name, in
/// [`rps_store::raw::FLOW_COLUMNS`](crate::raw::FLOW_COLUMNS) order.
fn flow_fields(m: &ColumnMapping) -> [(&'static str, Option<&str>); 4] {
    [
        ("quote_volume", m.quote_volume.as_deref()),
        ("trades", m.trades.as_deref()),
        ("taker_buy_volume", m.taker_buy_volume.as_deref()),
        (
            "taker_buy_quote_volume",
            m.taker_buy_quote_volume.as_deref(),
        ),
    ]
}

/// Set the order-flow columns of `c` from the four parsed cells (floats as `None` when empty).
fn set_flow(c: &mut Candle, floats: [Option<f64>; 3], trades: Option<u64>) {
    let [quote, taker, taker_quote] = floats.map(|v| v.filter(|x| !x.is_nan()));
    c.quote_volume = quote;
    c.trades = trades;
    c.taker_buy_volume = taker;
    c.taker_buy_quote_volume = taker_quote;
}

fn fields(m: &ColumnMapping) -> [(&'static str, &str); 6] {
    [
        ("timestamp", &m.timestamp),
        ("open", &m.open),
        ("high", &m.high),
        ("low", &m.low),
        ("close", &m.close),
        ("volume", &m.volume),
    ]
}

/// Read candles from the file named in `p` (rows in file order, not de-duplicated).
///
/// A CSV file is streamed (a line longer than [`MAX_LINE_BYTES`] is refused); a Parquet file is
/// read whole. Rows that share a timestamp are refused when their values differ
/// ([`ImportError::ConflictingDuplicates`]) or when the file's UTC offsets change and the
/// converted times collide ([`ImportError::OffsetCollision`]); identical copies are kept for the
/// caller to collapse and count.
pub fn read_file(p: &FileSourceParams) -> Result<Vec<Candle>, ImportError> {
    let path = Path::new(&p.path);
    let format = match p.format.as_str() {
        "auto" => match path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("parquet" | "pq") => "parquet",
            _ => "csv",
        },
        f @ ("csv" | "parquet") => f,
        other => return Err(ImportError::Format(clip(other))),
    };
    let io = |source| ImportError::Io {
        path: p.path.clone(),
        source,
    };
    let rows = if format == "csv" {
        let file = std::fs::File::open(path).map_err(io)?;
        read_csv(std::io::BufReader::new(file), p)?
    } else {
        let bytes = std::fs::read(path).map_err(io)?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ImportError::Empty {
                path: p.path.clone(),
            });
        }
        let bars = read_parquet(bytes, p)?;
        let lines = (1..=bars.len() as u64).collect();
        Rows {
            bars,
            lines,
            offsets: Vec::new(),
        }
    };
    if rows.bars.is_empty() {
        return Err(ImportError::NoRows {
            path: p.path.clone(),
        });
    }
    check_timestamps(&p.path, &rows)?;
    Ok(rows.bars)
}

/// Candles with where they came from.
struct Rows {
    bars: Vec<Candle>,
    /// The file line (CSV) or row (Parquet, 1-based) of each bar.
    lines: Vec<u64>,
    /// Where the UTC offset of the timestamps changes: `(line, offset in seconds)`, the first
    /// entry being the first offset seen.
    offsets: Vec<(u64, i32)>,
}

fn offset_label(secs: i32) -> String {
    let sign = if secs < 0 { '-' } else { '+' };
    let a = secs.unsigned_abs();
    format!("{sign}{:02}:{:02}", a / 3600, a % 3600 / 60)
}

/// Refuse conflicting duplicates and offset changes that make rows collide; log offset
/// changes that do not.
fn check_timestamps(path: &str, rows: &Rows) -> Result<(), ImportError> {
    let dups = rps_core::quality::find_duplicates(&rows.bars);
    let changes = rows
        .offsets
        .iter()
        .map(|(line, off)| format!("{} from line {line}", offset_label(*off)))
        .collect::<Vec<_>>()
        .join(", ");
    let list = |groups: &[(i64, Vec<usize>)]| {
        let mut out: Vec<String> = groups
            .iter()
            .take(5)
            .map(|(ts, idx)| {
                let lines: Vec<String> = idx.iter().map(|&i| rows.lines[i].to_string()).collect();
                format!(
                    "{} (lines {})",
                    rps_core::quality::rfc3339(*ts),
                    lines.join(", ")
                )
            })
            .collect();
        if groups.len() > 5 {
            out.push(format!("… and {} more", groups.len() - 5));
        }
        out.join("; ")
    };
    if rows.offsets.len() > 1 {
        if dups.identical > 0 || !dups.conflicting.is_empty() {
            // Every colliding timestamp, identical or not: an offset change loses rows either way.
            let mut idx: Vec<usize> = (0..rows.bars.len()).collect();
            idx.sort_by_key(|&i| rows.bars[i].ts);
            let groups: Vec<(i64, Vec<usize>)> = idx
                .chunk_by(|&a, &b| rows.bars[a].ts == rows.bars[b].ts)
                .filter(|g| g.len() > 1)
                .map(|g| (rows.bars[g[0]].ts, g.to_vec()))
                .collect();
            return Err(ImportError::OffsetCollision {
                path: path.to_owned(),
                changes,
                listed: list(&groups),
            });
        }
        tracing::warn!(
            "{path}: the UTC offset of the timestamps changes ({changes}); converted to UTC without collisions"
        );
    }
    if !dups.conflicting.is_empty() {
        return Err(ImportError::ConflictingDuplicates {
            path: path.to_owned(),
            count: dups.conflicting.len(),
            listed: list(&dups.conflicting),
        });
    }
    Ok(())
}

fn csv_error(path: &str, source: csv::Error) -> ImportError {
    if let csv::ErrorKind::Io(e) = source.kind()
        && let Some(t) = e.get_ref().and_then(|x| x.downcast_ref::<LineTooLong>())
    {
        return ImportError::LineTooLong {
            path: path.to_owned(),
            line: t.line,
            limit: MAX_LINE_BYTES,
        };
    }
    ImportError::Csv {
        path: path.to_owned(),
        source,
    }
}

fn read_csv<R: Read>(reader: R, p: &FileSourceParams) -> Result<Rows, ImportError> {
    let path = p.path.clone();
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(false)
        .trim(csv::Trim::All)
        .from_reader(LineLimit {
            inner: reader,
            line: 1,
            current: 0,
            limit: MAX_LINE_BYTES,
        });
    let headers = rdr.headers().map_err(|e| csv_error(&path, e))?.clone();
    if headers.iter().all(str::is_empty) {
        return Err(ImportError::Empty { path });
    }
    let mut idx = [0usize; 6];
    for (slot, (field, column)) in idx.iter_mut().zip(fields(&p.columns)) {
        *slot =
            headers
                .iter()
                .position(|h| h == column)
                .ok_or_else(|| ImportError::MissingColumn {
                    path: path.clone(),
                    field: field.to_owned(),
                    column: clip(column),
                    found: clip(&headers.iter().map(clip).collect::<Vec<_>>().join(", ")),
                })?;
    }
    // The optional columns: unmapped is None; mapped but absent from the file is an error.
    let mut flow_idx: [Option<usize>; 4] = [None; 4];
    for (slot, (field, column)) in flow_idx.iter_mut().zip(flow_fields(&p.columns)) {
        let Some(column) = column else { continue };
        *slot = Some(headers.iter().position(|h| h == column).ok_or_else(|| {
            ImportError::MissingColumn {
                path: path.clone(),
                field: field.to_owned(),
                column: clip(column),
                found: clip(&headers.iter().map(clip).collect::<Vec<_>>().join(", ")),
            }
        })?);
    }
    let mut rows = Rows {
        bars: Vec::new(),
        lines: Vec::new(),
        offsets: Vec::new(),
    };
    let mut record = csv::StringRecord::new();
    loop {
        match rdr.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(csv_error(&path, e)),
        }
        let row = record
            .position()
            .map_or(rows.bars.len() as u64 + 2, csv::Position::line);
        let cell = |k: usize| record.get(idx[k]).unwrap_or("");
        let err = |problem: String| ImportError::Row {
            path: path.clone(),
            row: usize::try_from(row).unwrap_or(usize::MAX),
            problem,
        };
        let (ts, offset) = parse_timestamp_offset(cell(0), &p.timestamp_format).map_err(err)?;
        if let Some(off) = offset
            && rows.offsets.last().is_none_or(|(_, last)| *last != off)
        {
            rows.offsets.push((row, off));
        }
        let mut v = [0.0; 5];
        for (k, slot) in v.iter_mut().enumerate() {
            *slot = parse_number(cell(k + 1)).map_err(|e| {
                err(format!(
                    "column {:?}: {e}",
                    clip(fields(&p.columns)[k + 1].1)
                ))
            })?;
        }
        let mut bar = Candle {
            ts,
            open: v[0],
            high: v[1],
            low: v[2],
            close: v[3],
            volume: v[4],
            ..Default::default()
        };
        if flow_idx.iter().any(Option::is_some) {
            let flow_err = |k: usize, e: String| {
                err(format!(
                    "column {:?}: {e}",
                    clip(flow_fields(&p.columns)[k].1.unwrap_or_default())
                ))
            };
            let float = |k: usize| {
                flow_idx[k]
                    .map(|j| parse_number(record.get(j).unwrap_or("")).map_err(|e| flow_err(k, e)))
                    .transpose()
            };
            let trades = flow_idx[1]
                .map(|j| parse_count(record.get(j).unwrap_or("")).map_err(|e| flow_err(1, e)))
                .transpose()?
                .flatten();
            set_flow(&mut bar, [float(0)?, float(2)?, float(3)?], trades);
        }
        rows.bars.push(bar);
        rows.lines.push(row);
    }
    Ok(rows)
}

fn read_parquet(bytes: Vec<u8>, p: &FileSourceParams) -> Result<Vec<Candle>, ImportError> {
    let batches: Vec<RecordBatch> = parquet_io::decode(bytes, &p.path)?;
    let mut bars = Vec::new();
    let mut row0 = 0;
    for batch in &batches {
        let s = batch.schema();
        let col = |field: &str, column: &str| {
            batch
                .column_by_name(column)
                .cloned()
                .ok_or_else(|| ImportError::MissingColumn {
                    path: p.path.clone(),
                    field: field.to_owned(),
                    column: column.to_owned(),
                    found: clip(
                        &s.fields()
                            .iter()
                            .map(|f| clip(f.name()))
                            .collect::<Vec<_>>()
                            .join(", "),
                    ),
                })
        };
        let [(tf, tc), rest @ ..] = fields(&p.columns);
        let ts_col = col(tf, tc)?;
        let ts: Vec<i64> = match ts_col.data_type() {
            DataType::Timestamp(_, _) | DataType::Date64 => {
                let c = arrow::compute::cast(
                    &ts_col,
                    &DataType::Timestamp(TimeUnit::Millisecond, None),
                )
                .map_err(|e| ImportError::Row {
                    path: p.path.clone(),
                    row: row0,
                    problem: e.to_string(),
                })?;
                c.as_any()
                    .downcast_ref::<TimestampMillisecondArray>()
                    .map(|a| a.values().to_vec())
                    .unwrap_or_default()
            }
            _ => {
                let c = arrow::compute::cast(&ts_col, &DataType::Utf8).map_err(|e| {
                    ImportError::Row {
                        path: p.path.clone(),
                        row: row0,
                        problem: format!("timestamp column: {e}"),
                    }
                })?;
                let a = c
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .cloned()
                    .unwrap_or_else(|| StringArray::from(Vec::<String>::new()));
                (0..a.len())
                    .map(|i| {
                        parse_timestamp(a.value(i), &p.timestamp_format).map_err(|problem| {
                            ImportError::Row {
                                path: p.path.clone(),
                                row: row0 + i,
                                problem,
                            }
                        })
                    })
                    .collect::<Result<_, _>>()?
            }
        };
        let mut vals: Vec<Vec<f64>> = Vec::new();
        for (field, column) in rest {
            let c = col(field, column)?;
            let f = arrow::compute::cast(&c, &DataType::Float64).map_err(|e| ImportError::Row {
                path: p.path.clone(),
                row: row0,
                problem: format!("column {column:?}: {e}"),
            })?;
            let a = f
                .as_any()
                .downcast_ref::<arrow::array::Float64Array>()
                .cloned()
                .unwrap_or_else(|| arrow::array::Float64Array::from(Vec::<f64>::new()));
            vals.push(
                (0..a.len())
                    .map(|i| if a.is_null(i) { f64::NAN } else { a.value(i) })
                    .collect(),
            );
        }
        // The optional columns, cast to Float64 (UInt64 for trades): unmapped is None.
        let mut flow: Vec<Option<arrow::array::ArrayRef>> = Vec::with_capacity(4);
        for (field, column) in flow_fields(&p.columns) {
            let Some(column) = column else {
                flow.push(None);
                continue;
            };
            let to = if field == "trades" {
                DataType::UInt64
            } else {
                DataType::Float64
            };
            let c = col(field, column)?;
            let cast = arrow::compute::cast(&c, &to).map_err(|e| ImportError::Row {
                path: p.path.clone(),
                row: row0,
                problem: format!("column {column:?}: {e}"),
            })?;
            flow.push(Some(cast));
        }
        let float = |k: usize, i: usize| -> Option<f64> {
            let a = flow[k].as_ref()?;
            let a = a.as_any().downcast_ref::<arrow::array::Float64Array>()?;
            a.is_valid(i).then(|| a.value(i))
        };
        let trades = |i: usize| -> Option<u64> {
            let a = flow[1].as_ref()?;
            let a = a.as_any().downcast_ref::<arrow::array::UInt64Array>()?;
            a.is_valid(i).then(|| a.value(i))
        };
        for (i, &t) in ts.iter().enumerate() {
            let mut bar = Candle {
                ts: t,
                open: vals[0][i],
                high: vals[1][i],
                low: vals[2][i],
                close: vals[3][i],
                volume: vals[4][i],
                ..Default::default()
            };
            set_flow(&mut bar, [float(0, i), float(2, i), float(3, i)], trades(i));
            bars.push(bar);
        }
        row0 += batch.num_rows();
    }
    Ok(bars)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(
            parse_timestamp("2017-07-01T11:00:00Z", "auto"),
            Ok(1_498_906_800_000)
        );
        assert_eq!(
            parse_timestamp("2017-07-01 11:00:00", "auto"),
            Ok(1_498_906_800_000)
        );
        assert_eq!(parse_timestamp("1498906800", "auto"), Ok(1_498_906_800_000));
        assert_eq!(
            parse_timestamp("1498906800000", "auto"),
            Ok(1_498_906_800_000)
        );
        assert_eq!(parse_timestamp("01/07/2017 11", "%d/%m/%Y %H"), Err("\"01/07/2017 11\" does not match \"%d/%m/%Y %H\": input is not enough for unique date and time".to_owned()));
        assert!(parse_timestamp("yesterday", "auto").is_err());
    }

    fn params(path: &Path, mapping: ColumnMapping) -> FileSourceParams {
        FileSourceParams {
            path: path.to_string_lossy().into_owned(),
            columns: mapping,
            ..FileSourceParams::default()
        }
    }

    #[test]
    fn csv_with_mapping_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("eth.csv");
        std::fs::write(&f, "Date,ETH.open,ETH.close,ETH.high,ETH.low,ETH.volume\n2017-10-01 00:00:00,303.44,304.0,304.18,303.17,3941.7\n2017-10-01 00:30:00,304.0,303.55,304.7,303.01,\n").unwrap();
        let m = ColumnMapping {
            timestamp: "Date".into(),
            open: "ETH.open".into(),
            high: "ETH.high".into(),
            low: "ETH.low".into(),
            close: "ETH.close".into(),
            volume: "ETH.volume".into(),
            ..ColumnMapping::default()
        };
        let bars = read_file(&params(&f, m.clone())).unwrap();
        assert_eq!(bars.len(), 2);
        assert_eq!(bars[0].close, 304.0);
        assert_eq!(bars[0].high, 304.18);
        assert!(bars[1].volume.is_nan());
        let err = read_file(&params(&f, ColumnMapping::default()))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no column \"timestamp_utc\"") && err.contains("Date, ETH.open"),
            "{err}"
        );
        std::fs::write(&f, "").unwrap();
        assert!(matches!(
            read_file(&params(&f, m.clone())),
            Err(ImportError::Empty { .. })
        ));
        std::fs::write(&f, "Date,ETH.open,ETH.close,ETH.high,ETH.low,ETH.volume\n").unwrap();
        assert!(matches!(
            read_file(&params(&f, m.clone())),
            Err(ImportError::NoRows { .. })
        ));
        std::fs::write(&f, "Date,ETH.open,ETH.close,ETH.high,ETH.low,ETH.volume\n2017-10-01 00:00:00,abc,1,1,1,1\n").unwrap();
        let err = read_file(&params(&f, m)).unwrap_err().to_string();
        assert!(
            err.contains("row 2") && err.contains("\"abc\" is not a number"),
            "{err}"
        );
    }

    #[test]
    fn unreadable_parquet_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x.parquet");
        std::fs::write(&f, b"not parquet at all").unwrap();
        let err = read_file(&params(&f, ColumnMapping::default()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a readable Parquet file"), "{err}");
    }

    fn binance_mapping() -> ColumnMapping {
        ColumnMapping {
            timestamp: "date".into(),
            volume: "volume".into(),
            quote_volume: Some("quote_asset_volume".into()),
            trades: Some("number_of_trades".into()),
            taker_buy_volume: Some("taker_buy_base_asset_volume".into()),
            taker_buy_quote_volume: Some("taker_buy_quote_asset_volume".into()),
            ..ColumnMapping::default()
        }
    }

    #[test]
    fn the_real_binance_klines_keep_every_column() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/data/btc_usdt_1h_binance_2017-08_2021-12.csv"
        ));
        if !path.exists() {
            return;
        }
        let bars = read_file(&params(path, binance_mapping())).unwrap();
        assert_eq!(bars.len(), 38_222);
        // 2017-08-17 04:00:00,4261.48,4313.62,4261.32,4308.83,47.181009,2017-08-17 04:59:59,
        // 202366.13839304,171,35.160503,150952.47794304
        let first = bars[0];
        assert_eq!(first.ts, 1_502_942_400_000);
        assert_eq!(
            (first.open, first.close, first.volume),
            (4261.48, 4308.83, 47.181_009)
        );
        assert_eq!(first.quote_volume, Some(202_366.138_393_04));
        assert_eq!(first.trades, Some(171));
        assert_eq!(first.taker_buy_volume, Some(35.160_503));
        assert_eq!(first.taker_buy_quote_volume, Some(150_952.477_943_04));
        assert!(bars.iter().all(|c| c.has_flow() && c.trades.is_some()));
        // The same file with the OHLCV mapping only: no flow columns.
        let plain = ColumnMapping {
            quote_volume: None,
            trades: None,
            taker_buy_volume: None,
            taker_buy_quote_volume: None,
            ..binance_mapping()
        };
        let bars = read_file(&params(path, plain)).unwrap();
        assert!(bars.iter().all(|c| !c.has_flow()));
    }

    #[test]
    fn flow_columns_mapped_but_missing_or_bad_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("k.csv");
        std::fs::write(&f, "date,open,high,low,close,volume,number_of_trades\n2018-01-01 00:00:00,1,2,0.5,1.5,10,7\n2018-01-01 01:00:00,1,2,0.5,1.5,10,\n").unwrap();
        let only_trades = ColumnMapping {
            quote_volume: None,
            taker_buy_volume: None,
            taker_buy_quote_volume: None,
            ..binance_mapping()
        };
        let bars = read_file(&params(&f, only_trades.clone())).unwrap();
        assert_eq!(bars[0].trades, Some(7));
        assert_eq!(
            bars[1].trades, None,
            "an empty cell is a bar without the value"
        );
        assert_eq!(bars[0].quote_volume, None, "unmapped");
        let err = read_file(&params(&f, binance_mapping()))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no column \"quote_asset_volume\" (mapped from `quote_volume`)")
                && err.contains("data.file.columns.quote_volume"),
            "{err}"
        );
        std::fs::write(&f, "date,open,high,low,close,volume,number_of_trades\n2018-01-01 00:00:00,1,2,0.5,1.5,10,7.5\n").unwrap();
        let err = read_file(&params(&f, only_trades)).unwrap_err().to_string();
        assert!(
            err.contains("row 2") && err.contains("not a whole number of trades"),
            "{err}"
        );
        assert_eq!(parse_count("12417.0"), Ok(Some(12_417)));
        assert!(parse_count("-3").is_err());
    }

    #[test]
    fn parquet_import_maps_the_flow_columns() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("k.parquet");
        let bar = Candle {
            quote_volume: Some(15.0),
            trades: Some(9),
            taker_buy_volume: Some(4.0),
            taker_buy_quote_volume: Some(6.0),
            ..Candle::ohlcv(1_514_764_800_000, 1.0, 2.0, 0.5, 1.5, 10.0)
        };
        // The raw schema's own writer: ts, OHLCV and the four flow columns by their raw names.
        std::fs::write(
            &f,
            parquet_io::encode(&crate::raw::to_batch(&[bar])).unwrap(),
        )
        .unwrap();
        let m = ColumnMapping {
            timestamp: "ts".into(),
            volume: "volume".into(),
            quote_volume: Some("quote_volume".into()),
            trades: Some("trades".into()),
            taker_buy_volume: Some("taker_buy_volume".into()),
            taker_buy_quote_volume: Some("taker_buy_quote_volume".into()),
            ..ColumnMapping::default()
        };
        assert_eq!(read_file(&params(&f, m.clone())).unwrap(), vec![bar]);
        let unmapped = ColumnMapping {
            trades: None,
            ..m.clone()
        };
        assert_eq!(read_file(&params(&f, unmapped)).unwrap()[0].trades, None);
        let missing = ColumnMapping {
            trades: Some("n_trades".into()),
            ..m
        };
        let err = read_file(&params(&f, missing)).unwrap_err().to_string();
        assert!(
            err.contains("no column \"n_trades\" (mapped from `trades`)"),
            "{err}"
        );
    }
}

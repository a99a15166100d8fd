//! Parsing and validating `POST /predict` bodies against the model's feature schema.
//!
//! Accepted shapes (exactly one of `features` and `instances`):
//! - `{"features": {"ret_1b_pct": 0.1, …}}` — one row, features by name (the canonical form);
//! - `{"features": [0.1, …]}` — one row, values in the schema's order;
//! - `{"instances": [{…}, […], …]}` — a batch, each row in either form;
//!
//! each with an optional `"symbol": "ETH-USD"`, which picks the symbol's models when the service
//! serves several (the same as `?symbol=`).
//!
//! Every feature must be present exactly once and known; its value is a number finite as a
//! 32-bit float, or `null` for a missing value (NaN to the booster, which routes it down each
//! tree's learned default branch, as in training). An absent key is still an error
//! (`missing_feature`): a client that forgets a feature should hear about it.

use crate::error::ApiError;
use axum::http::StatusCode;
use serde_json::Value;
use std::collections::HashMap;

/// Validated rows, row-major in model order.
#[derive(Debug, Clone, PartialEq)]
pub struct Rows {
    pub values: Vec<f32>,
    pub n_rows: usize,
    /// Whether the request was a batch (`instances`), which decides the response shape.
    pub batch: bool,
}

/// Parse `body` for a model with `features` (in order) and `index` (name → position).
#[cfg(test)]
pub fn parse(
    body: &[u8],
    features: &[String],
    index: &HashMap<String, usize>,
    max_batch: usize,
) -> Result<Rows, ApiError> {
    request(body)?.rows(features, index, max_batch)
}

/// Longest accepted `symbol`.
pub const MAX_SYMBOL: usize = 64;

/// A `POST /predict` body read as JSON, its `symbol` taken out; its rows are parsed once the
/// symbol's model is known ([`Request::rows`]).
#[derive(Debug)]
pub struct Request {
    top: serde_json::Map<String, Value>,
    /// The `symbol` field, if given.
    pub symbol: Option<String>,
}

/// Read a `POST /predict` body: a JSON object of `features` or `instances` and an optional
/// `symbol`.
pub fn request(body: &[u8]) -> Result<Request, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("request body is not valid JSON: {e}"),
        )
    })?;
    let Value::Object(mut top) = value else {
        return Err(ApiError::invalid(
            "invalid_request",
            "request body must be a JSON object with `features` (one row) or `instances` (a batch)",
        ));
    };
    if let Some(key) = top
        .keys()
        .find(|k| !matches!(k.as_str(), "features" | "instances" | "symbol"))
    {
        return Err(ApiError::invalid(
            "unknown_field",
            format!(
                "unknown field `{key}` in the request: expected `features` (one row) or `instances` (a batch), and optionally `symbol`"
            ),
        ));
    }
    let symbol = match top.remove("symbol") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= MAX_SYMBOL => Some(s),
        Some(other) => {
            let got = match &other {
                Value::String(s) => format!("{} characters", s.trim().chars().count()),
                v => kind(v).to_owned(),
            };
            return Err(ApiError::invalid(
                "invalid_symbol",
                format!("`symbol` must be a string of 1 to {MAX_SYMBOL} characters, got {got}"),
            ));
        }
    };
    Ok(Request { top, symbol })
}

impl Request {
    /// The rows, for a model with `features` (in order) and `index` (name → position).
    pub fn rows(
        mut self,
        features: &[String],
        index: &HashMap<String, usize>,
        max_batch: usize,
    ) -> Result<Rows, ApiError> {
        let top = &mut self.top;
        rows(top, features, index, max_batch)
    }
}

fn rows(
    top: &mut serde_json::Map<String, Value>,
    features: &[String],
    index: &HashMap<String, usize>,
    max_batch: usize,
) -> Result<Rows, ApiError> {
    let n = features.len();
    match (top.remove("features"), top.remove("instances")) {
        (Some(_), Some(_)) => Err(ApiError::invalid(
            "invalid_request",
            "give either `features` (one row) or `instances` (a batch), not both",
        )),
        (None, None) => Err(ApiError::invalid(
            "invalid_request",
            "request body must have `features` (one row) or `instances` (a batch)",
        )),
        (Some(row), None) => {
            let mut values = Vec::with_capacity(n);
            parse_row(&row, features, index, &mut values).map_err(|e| e.prefixed("`features`"))?;
            Ok(Rows {
                values,
                n_rows: 1,
                batch: false,
            })
        }
        (None, Some(instances)) => {
            let Value::Array(rows) = instances else {
                return Err(ApiError::invalid(
                    "invalid_request",
                    format!(
                        "`instances` must be an array of rows, got {}",
                        kind(&instances)
                    ),
                ));
            };
            if rows.is_empty() {
                return Err(ApiError::invalid(
                    "empty_batch",
                    "`instances` is empty: send at least one row",
                ));
            }
            if rows.len() > max_batch {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "batch_too_large",
                    format!(
                        "`instances` has {} rows, the limit is {max_batch} (--max-batch)",
                        rows.len()
                    ),
                ));
            }
            let mut values = Vec::with_capacity(n * rows.len());
            for (i, row) in rows.iter().enumerate() {
                parse_row(row, features, index, &mut values)
                    .map_err(|e| e.prefixed(&format!("instance {i}")))?;
            }
            Ok(Rows {
                values,
                n_rows: rows.len(),
                batch: true,
            })
        }
    }
}

/// A problem with one row, before it is placed in context.
struct RowError {
    code: &'static str,
    message: String,
}

impl RowError {
    fn prefixed(self, at: &str) -> ApiError {
        ApiError::invalid(self.code, format!("{at}: {}", self.message))
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn number(name: &str, v: &Value) -> Result<f32, RowError> {
    if v.is_null() {
        return Ok(f32::NAN);
    }
    let Value::Number(num) = v else {
        return Err(RowError {
            code: "invalid_value",
            message: format!(
                "feature `{name}` is {}, expected a finite number or null (missing)",
                kind(v)
            ),
        });
    };
    let x = num.as_f64().unwrap_or(f64::NAN);
    #[allow(clippy::cast_possible_truncation)]
    let f = x as f32;
    if !f.is_finite() {
        return Err(RowError {
            code: "invalid_value",
            message: format!("feature `{name}` = {num} is not finite as a 32-bit float"),
        });
    }
    Ok(f)
}

fn parse_row(
    row: &Value,
    features: &[String],
    index: &HashMap<String, usize>,
    out: &mut Vec<f32>,
) -> Result<(), RowError> {
    let n = features.len();
    match row {
        Value::Object(map) => {
            let start = out.len();
            out.resize(start + n, f32::NAN);
            let mut seen = vec![false; n];
            for (k, v) in map {
                let Some(&j) = index.get(k) else {
                    return Err(RowError {
                        code: "unknown_feature",
                        message: format!(
                            "unknown feature `{k}` (the model takes {n} features; GET /model lists them)"
                        ),
                    });
                };
                out[start + j] = number(k, v)?;
                seen[j] = true;
            }
            let missing: Vec<&str> = features
                .iter()
                .zip(&seen)
                .filter(|(_, s)| !**s)
                .map(|(f, _)| f.as_str())
                .collect();
            match missing.as_slice() {
                [] => Ok(()),
                [one] => Err(RowError {
                    code: "missing_feature",
                    message: format!("missing feature `{one}`"),
                }),
                many => Err(RowError {
                    code: "missing_feature",
                    message: format!(
                        "missing {} features: {}",
                        many.len(),
                        many.iter()
                            .map(|m| format!("`{m}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                }),
            }
        }
        Value::Array(values) => {
            if values.len() != n {
                return Err(RowError {
                    code: "wrong_length",
                    message: format!(
                        "expected {n} feature values in schema order (GET /model lists them), got {}",
                        values.len()
                    ),
                });
            }
            for (name, v) in features.iter().zip(values) {
                out.push(number(name, v)?);
            }
            Ok(())
        }
        other => Err(RowError {
            code: "invalid_request",
            message: format!(
                "a row must be an object of features by name or an array in schema order, got {}",
                kind(other)
            ),
        }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn schema() -> (Vec<String>, HashMap<String, usize>) {
        let f: Vec<String> = ["a", "b"].map(str::to_owned).to_vec();
        let i = f.iter().enumerate().map(|(i, n)| (n.clone(), i)).collect();
        (f, i)
    }

    fn err(body: &str) -> ApiError {
        let (f, i) = schema();
        parse(body.as_bytes(), &f, &i, 2).unwrap_err()
    }

    #[test]
    fn accepts_the_three_shapes() {
        let (f, i) = schema();
        let r = parse(br#"{"features": {"b": 2, "a": 1.5}}"#, &f, &i, 2).unwrap();
        assert_eq!(
            r,
            Rows {
                values: vec![1.5, 2.0],
                n_rows: 1,
                batch: false
            }
        );
        let r = parse(br#"{"features": [1.5, 2]}"#, &f, &i, 2).unwrap();
        assert_eq!(r.values, vec![1.5, 2.0]);
        // null is a missing value: NaN to the booster, by name and in schema order.
        let r = parse(br#"{"features": {"a": 1, "b": null}}"#, &f, &i, 2).unwrap();
        assert_eq!(r.values[0], 1.0);
        assert!(r.values[1].is_nan());
        let r = parse(br#"{"instances": [[null, 2]]}"#, &f, &i, 2).unwrap();
        assert!(r.values[0].is_nan() && r.values[1] == 2.0);
        let r = parse(br#"{"instances": [{"a": 1, "b": 2}, [3, 4]]}"#, &f, &i, 2).unwrap();
        assert_eq!(
            r,
            Rows {
                values: vec![1.0, 2.0, 3.0, 4.0],
                n_rows: 2,
                batch: true
            }
        );
    }

    #[test]
    fn names_each_problem() {
        let e = err(r#"{"features": {"a": 1}}"#);
        assert_eq!(
            (e.code, e.message.as_str()),
            ("missing_feature", "`features`: missing feature `b`")
        );
        assert_eq!(
            err(r#"{"features": {"a": 1, "b": 2, "c": 3}}"#).code,
            "unknown_feature"
        );
        assert_eq!(err(r#"{"features": [1]}"#).code, "wrong_length");
        assert_eq!(
            err(r#"{"features": {"a": "1", "b": 2}}"#).code,
            "invalid_value"
        );
        assert_eq!(err(r#"{"features": [1, 1e39]}"#).code, "invalid_value");
        assert_eq!(
            err(r#"{"features": [1, NaN]}"#).status,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            err(r#"{"instances": [[1,2],[1,2],[1,2]]}"#).status,
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(err(r#"{"instances": []}"#).code, "empty_batch");
        assert_eq!(err(r#"{"rows": []}"#).code, "unknown_field");
        assert_eq!(err(r#"[1, 2]"#).code, "invalid_request");
        let e = err(r#"{"instances": [[1,2], {"a": 1}]}"#);
        assert!(
            e.message.starts_with("instance 1: missing feature `b`"),
            "{}",
            e.message
        );
    }
}

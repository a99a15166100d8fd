//! The market API that `params.yaml` configures (`data.source` with `data.binance:` /
//! `data.coincap:`), built the same way for every stage that reads it (`rps extract`,
//! `rps stream produce --follow`).

use crate::{
    BinanceClient, CoinCapClient, CoinCapMode, FetchRequest, MarketError, MarketSource, RetryPolicy,
};
use rps_core::candle::Interval;
use rps_core::params::{DataParams, SourceKind};

/// An API client and the symbol it is asked for (`data.binance.symbol`, e.g. `BTCUSDT`, or
/// `data.coincap.slug`, e.g. `bitcoin`).
pub struct ConfiguredSource {
    pub client: Box<dyn MarketSource + Send + Sync>,
    pub symbol: String,
}

impl std::fmt::Debug for ConfiguredSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfiguredSource")
            .field("client", &self.client.name())
            .field("symbol", &self.symbol)
            .finish()
    }
}

impl ConfiguredSource {
    /// The request for the bars of `interval` opening in `[start_ms, end_ms)`.
    pub fn request(&self, interval: Interval, start_ms: i64, end_ms: i64) -> FetchRequest {
        FetchRequest::new(self.symbol.clone(), interval, start_ms, end_ms)
    }
}

/// The client for `kind` configured by `data` (base URL, symbol, CoinCap mode), with the
/// default [`RetryPolicy`]. `None` when `kind` is not a market API (`file`, `synthetic`).
///
/// `coincap_key` is the CoinCap v3 API key; this crate never reads the environment, the caller
/// does (RPS: `COINCAP_API_KEY`). A missing key is logged, since CoinCap v3 then answers 401.
///
/// # Errors
///
/// [`MarketError::Setup`] when a base URL does not parse, the HTTP client cannot be built, or
/// `data.coincap.mode` is neither `candles` nor `history`.
pub fn from_params(
    kind: SourceKind,
    data: &DataParams,
    coincap_key: Option<String>,
) -> Result<Option<ConfiguredSource>, MarketError> {
    match kind {
        SourceKind::File | SourceKind::Synthetic => Ok(None),
        SourceKind::Binance => Ok(Some(ConfiguredSource {
            client: Box::new(BinanceClient::new(
                &data.binance.base_url,
                RetryPolicy::default(),
            )?),
            symbol: data.binance.symbol.clone(),
        })),
        SourceKind::Coincap => {
            let key = coincap_key.filter(|k| !k.trim().is_empty());
            if key.is_none() {
                tracing::warn!("COINCAP_API_KEY is not set: CoinCap v3 will answer 401");
            }
            let c = &data.coincap;
            let mode = match c.mode.as_str() {
                "history" => CoinCapMode::History,
                "candles" => CoinCapMode::Candles {
                    exchange: c.exchange.clone(),
                    quote_id: c.quote_id.clone(),
                },
                other => {
                    return Err(MarketError::Setup {
                        api: "CoinCap",
                        detail: format!(
                            "data.coincap.mode must be `candles` or `history`, not {other:?}"
                        ),
                    });
                }
            };
            Ok(Some(ConfiguredSource {
                client: Box::new(CoinCapClient::new(
                    &c.base_url,
                    key,
                    mode,
                    RetryPolicy::default(),
                )?),
                symbol: c.slug.clone(),
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_the_configured_api_and_symbol() {
        let mut data = DataParams::default();
        assert!(matches!(
            from_params(SourceKind::File, &data, None),
            Ok(None)
        ));
        assert!(matches!(
            from_params(SourceKind::Synthetic, &data, None),
            Ok(None)
        ));
        data.binance.base_url = "http://127.0.0.1:1".to_owned();
        data.binance.symbol = "ETHUSDT".to_owned();
        let b = from_params(SourceKind::Binance, &data, None)
            .ok()
            .flatten()
            .map(|s| (s.client.name(), s.symbol));
        assert_eq!(b, Some(("binance", "ETHUSDT".to_owned())));
        let c = from_params(SourceKind::Coincap, &data, Some("k".to_owned()))
            .ok()
            .flatten()
            .map(|s| (s.client.name(), s.symbol));
        assert_eq!(c, Some(("coincap", "bitcoin".to_owned())));
        data.coincap.mode = "ticks".to_owned();
        assert!(matches!(
            from_params(SourceKind::Coincap, &data, None),
            Err(MarketError::Setup { .. })
        ));
        data.binance.base_url = "not a url".to_owned();
        assert!(from_params(SourceKind::Binance, &data, None).is_err());
    }
}

//! Experiments that compare modelling choices on real data with the pipeline's own building
//! blocks (the walk-forward folds of `rps_core::walkforward`, the model of `rps_model`, the
//! baselines of `rps_core::baselines`), outside the stages. Each one is a binary run by a
//! script under `scripts/` and written up in `docs/`.
//!
//! - [`pooled`]: one model per symbol vs one pooled model across symbols with the symbol as an
//!   input, with and without the other symbols' volatility as a market factor (issue #20,
//!   `make pooled`, docs/symbols.md "Pooled vs per-symbol").

pub mod pooled;

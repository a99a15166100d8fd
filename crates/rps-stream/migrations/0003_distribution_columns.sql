-- rps stream: the forecast distribution beside the mean (issue #16). A volatility model with
-- quantiles fills the median of σ and the central 80 % band [q0.1, q0.9]; a model without them
-- (trained before #16 or with `train.quantiles: []`), a signal model and every row written
-- before this migration leave them NULL.
ALTER TABLE predictions
    ADD COLUMN IF NOT EXISTS median   double precision,
    ADD COLUMN IF NOT EXISTS lower_80 double precision,
    ADD COLUMN IF NOT EXISTS upper_80 double precision;

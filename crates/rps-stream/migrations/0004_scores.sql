-- rps stream: every volatility forecast scored once its target bar has closed (issue #19).
--
-- bar_time is the open time of the bar whose close made the forecast scorable: the last bar of
-- the target window, predicted_from + target.horizon bars (one bar later with the default
-- horizon 1). predicted_from is predictions.bar_time of the scored forecast: the bar whose
-- features it was made from. realized is the model's own training target for that window (the
-- RMS of the floored bar volatilities of its target.estimator); forecast the stored prediction
-- (or the baseline's, floored alike). qlike = σ²/h² − ln(σ²/h²) − 1, log_error = (ln σ − ln h)²,
-- covered_80 whether lower_80 ≤ σ ≤ upper_80 (NULL when the forecast has no band).
--
-- Rows are written in the same transaction as the bar that completed them, keyed so that a
-- replay or a crash rewrites nothing: model, version, symbol, bar_time. Live versions are
-- scored under their registry name and version; the baselines the consumer computes online
-- under `ewma` (version 0) and `har_rv_log` (version = the live version whose saved base-margin
-- fit it is).
CREATE TABLE scores (
    model          text             NOT NULL,
    version        text             NOT NULL,
    alias          text,
    symbol         text             NOT NULL,
    bar_time       timestamptz      NOT NULL,
    predicted_from timestamptz      NOT NULL,
    realized       double precision NOT NULL,
    forecast       double precision NOT NULL,
    qlike          double precision NOT NULL,
    log_error      double precision NOT NULL,
    covered_80     boolean,
    scored_at      timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (model, version, symbol, bar_time)
);
CREATE INDEX scores_symbol_bar_time ON scores (symbol, bar_time);

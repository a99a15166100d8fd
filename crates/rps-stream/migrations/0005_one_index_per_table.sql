-- rps stream: one B-tree per table for predictions and scores (issue #17), half PostgreSQL's work
-- per consumed bar.
--
-- Until now each table had two indexes: the primary key (model, version, symbol, bar_time) and
-- (symbol, bar_time) for the readers, which all ask by symbol and time (rps-serve's history,
-- scores and metrics queries, reconcile's prediction keys). Every row a consumer writes went into
-- both. The primary key now leads with (symbol, bar_time), so it answers those queries itself and
-- the second index goes. The key is the same set of columns, so uniqueness and the upserts'
-- ON CONFLICT (model, version, symbol, bar_time) are unchanged.
--
-- Measured with `rps stream consume` (1,000 symbols x 1,000 bars, 1 live model, 4 score rows
-- per bar): PostgreSQL's CPU time 40.3 s -> 20.3 s, the database 1,470 MB -> 1,353 MB.
--
-- Rebuilding a primary key takes an ACCESS EXCLUSIVE lock on the table for as long as the build:
-- on a large table, run `rps stream migrate` while consumers and rps-serve's history reads can
-- wait (docs/streaming.md, "Migrations").
ALTER TABLE predictions
    DROP CONSTRAINT predictions_pkey,
    ADD CONSTRAINT predictions_pkey PRIMARY KEY (symbol, bar_time, model, version);
DROP INDEX IF EXISTS predictions_symbol_bar_time;

ALTER TABLE scores
    DROP CONSTRAINT scores_pkey,
    ADD CONSTRAINT scores_pkey PRIMARY KEY (symbol, bar_time, model, version);
DROP INDEX IF EXISTS scores_symbol_bar_time;

-- rps stream: candles, predictions and the consumer's offsets (applied by `rps stream migrate`
-- and by `rps stream consume`; recorded in schema_migrations).

-- Every closed bar the consumer has read, per symbol: the history the online features and
-- `rps stream reconcile` are built from.
CREATE TABLE candles (
    symbol   text             NOT NULL,
    bar_time timestamptz      NOT NULL,
    open     double precision NOT NULL,
    high     double precision NOT NULL,
    low      double precision NOT NULL,
    close    double precision NOT NULL,
    volume   double precision NOT NULL,
    PRIMARY KEY (symbol, bar_time)
);

-- One row per model version and bar. bar_time is the open time of the bar whose features the
-- prediction was made from; the forecast is for the next bar. task 'volatility' fills
-- `volatility`; task 'signal' fills `signal` and the class probabilities.
CREATE TABLE predictions (
    model        text             NOT NULL,
    version      text             NOT NULL,
    alias        text,
    symbol       text             NOT NULL,
    bar_time     timestamptz      NOT NULL,
    task         text             NOT NULL CHECK (task IN ('volatility', 'signal')),
    volatility   double precision,
    signal       text,
    p_sell       double precision,
    p_hold       double precision,
    p_buy        double precision,
    predicted_at timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (model, version, symbol, bar_time)
);
CREATE INDEX predictions_symbol_bar_time ON predictions (symbol, bar_time);

-- The next Kafka offset to read, per consumer, topic and partition; written in the same
-- transaction as the rows the messages before it produced (exactly-once into PostgreSQL).
CREATE TABLE stream_offsets (
    consumer    text        NOT NULL,
    topic       text        NOT NULL,
    partition   integer     NOT NULL,
    next_offset bigint      NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, topic, partition)
);

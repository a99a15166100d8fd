-- rps stream: the Binance klines' order-flow columns on the candles (issue #16), nullable: a
-- candle without them (CoinCap, Coinbase files, rows written before this migration) has NULLs.
-- A model trained with the order-flow features (features.flow: on in its schema) needs trades
-- and taker_buy_volume on every candle it reads.
ALTER TABLE candles
    ADD COLUMN IF NOT EXISTS quote_volume           double precision,
    ADD COLUMN IF NOT EXISTS trades                 bigint,
    ADD COLUMN IF NOT EXISTS taker_buy_volume       double precision,
    ADD COLUMN IF NOT EXISTS taker_buy_quote_volume double precision;

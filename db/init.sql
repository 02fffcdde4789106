-- TickStockPL database schema: what TickStockAppV2 expects (contract §4), made idempotent.
--
-- Run it in the `tickstock` database as a superuser (or the database owner), once or many times:
--   psql -v ON_ERROR_STOP=1 -d tickstock -f db/init.sql
-- Columns, types, sizes, the view and the function (signature and defaults) are the consumer's,
-- unchanged. What we add:
--   * IF NOT EXISTS on the indexes, so a second run does not fail;
--   * the roles, which the consumer's script assumes exist, created without a password
--     (set one with ALTER ROLE ... PASSWORD; `make up` and docker-compose do it from .env);
--   * the grant the consumer's script forgot: USAGE on integration_events_id_seq, without which
--     every call as app_readwrite fails with "permission denied for sequence";
--   * tickstockpl_producer, a least-privilege role: EXECUTE on the function, INSERT on the table
--     (the function is SECURITY INVOKER, so the caller inserts) and USAGE on the sequence; it
--     cannot read the table;
--   * historical_bars, the backtester's price history.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'app_readwrite') THEN
        CREATE ROLE app_readwrite LOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'tickstockpl_producer') THEN
        CREATE ROLE tickstockpl_producer LOGIN;
    END IF;
END
$$;

CREATE TABLE IF NOT EXISTS integration_events (
    id SERIAL PRIMARY KEY,
    flow_id UUID,
    timestamp TIMESTAMPTZ DEFAULT NOW(),
    event_type VARCHAR(50) NOT NULL,
    source_system VARCHAR(50) NOT NULL,
    checkpoint VARCHAR(100) NOT NULL,
    channel VARCHAR(100),
    symbol VARCHAR(20),
    pattern_name VARCHAR(50),
    confidence DECIMAL(3,2),
    user_count INTEGER,
    details JSONB,
    latency_ms DECIMAL(10,2),
    created_at TIMESTAMPTZ DEFAULT NOW()
);

CREATE INDEX IF NOT EXISTS idx_integration_events_flow_id ON integration_events(flow_id);
CREATE INDEX IF NOT EXISTS idx_integration_events_timestamp ON integration_events(timestamp DESC);
CREATE INDEX IF NOT EXISTS idx_integration_events_symbol ON integration_events(symbol);
CREATE INDEX IF NOT EXISTS idx_integration_events_pattern ON integration_events(pattern_name);

CREATE OR REPLACE VIEW pattern_flow_analysis AS
SELECT
    flow_id,
    MIN(timestamp) AS start_time,
    MAX(timestamp) AS end_time,
    EXTRACT(EPOCH FROM (MAX(timestamp) - MIN(timestamp))) * 1000 AS total_latency_ms,
    symbol,
    pattern_name,
    MAX(confidence) AS confidence,
    MAX(user_count) AS users_notified,
    COUNT(*) AS checkpoints_logged,
    ARRAY_AGG(checkpoint ORDER BY timestamp) AS flow_path
FROM integration_events
WHERE flow_id IS NOT NULL
GROUP BY flow_id, symbol, pattern_name;

CREATE OR REPLACE FUNCTION log_integration_event(
    p_flow_id UUID,
    p_event_type VARCHAR(50),
    p_source VARCHAR(50),
    p_checkpoint VARCHAR(100),
    p_channel VARCHAR(100) DEFAULT NULL,
    p_symbol VARCHAR(20) DEFAULT NULL,
    p_pattern VARCHAR(50) DEFAULT NULL,
    p_confidence DECIMAL(3,2) DEFAULT NULL,
    p_user_count INTEGER DEFAULT NULL,
    p_details JSONB DEFAULT NULL
) RETURNS VOID AS $$
BEGIN
    INSERT INTO integration_events (
        flow_id, event_type, source_system, checkpoint,
        channel, symbol, pattern_name, confidence,
        user_count, details
    ) VALUES (
        p_flow_id, p_event_type, p_source, p_checkpoint,
        p_channel, p_symbol, p_pattern, p_confidence,
        p_user_count, p_details
    );
END;
$$ LANGUAGE plpgsql;

GRANT ALL ON integration_events TO app_readwrite;
GRANT ALL ON pattern_flow_analysis TO app_readwrite;
GRANT EXECUTE ON FUNCTION log_integration_event TO app_readwrite;
GRANT USAGE, SELECT ON SEQUENCE integration_events_id_seq TO app_readwrite;

GRANT EXECUTE ON FUNCTION log_integration_event TO tickstockpl_producer;
GRANT INSERT ON integration_events TO tickstockpl_producer;
GRANT USAGE ON SEQUENCE integration_events_id_seq TO tickstockpl_producer;

-- Price history for the backtester, loaded by `tickstockpl load-history`; upserts keep it idempotent.
CREATE TABLE IF NOT EXISTS historical_bars (
    symbol VARCHAR(20) NOT NULL,
    timeframe VARCHAR(10) NOT NULL,
    bar_start TIMESTAMPTZ NOT NULL,
    open DOUBLE PRECISION NOT NULL,
    high DOUBLE PRECISION NOT NULL,
    low DOUBLE PRECISION NOT NULL,
    close DOUBLE PRECISION NOT NULL,
    volume DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (symbol, timeframe, bar_start)
);
GRANT SELECT, INSERT, UPDATE, DELETE ON historical_bars TO app_readwrite;

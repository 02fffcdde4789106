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
--   * the producer's least-privilege roles (docs/stack.md, "Least privilege"), which `make up`
--     gives passwords and runs the services with:
--       tickstockpl_producer   the audit writer: EXECUTE on the function, INSERT on the table (the
--                              function is SECURITY INVOKER, so the caller inserts), USAGE on the
--                              sequence, EXECUTE on tickstockpl_log_new; no SELECT, UPDATE, DELETE
--                              or TRUNCATE, so its password cannot read or erase the audit trail;
--       tickstockpl_reader     SELECT only, for doctor's flow checks;
--       tickstockpl_backtester SELECT on historical_bars only;
--       tickstockpl_audit_owner (NOLOGIN) owns tickstockpl_log_new, the relay's skip-existing write:
--                              SECURITY DEFINER with a fixed search_path, so the writer can learn
--                              which of ITS flow_ids already have a row without reading the table;
--   * historical_bars, the backtester's price history.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'app_readwrite') THEN
        CREATE ROLE app_readwrite LOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'tickstockpl_producer') THEN
        CREATE ROLE tickstockpl_producer LOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'tickstockpl_reader') THEN
        CREATE ROLE tickstockpl_reader LOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'tickstockpl_backtester') THEN
        CREATE ROLE tickstockpl_backtester LOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'tickstockpl_audit_owner') THEN
        CREATE ROLE tickstockpl_audit_owner NOLOGIN;
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
-- A role made by an older init.sql may hold more; the writer holds exactly the above.
REVOKE SELECT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON integration_events FROM tickstockpl_producer;

GRANT SELECT ON integration_events, pattern_flow_analysis TO tickstockpl_reader;

-- The relay's skip-existing write (tickstockpl/audit.py): one call per batch. The rows come as one
-- JSON document; a flow whose PATTERN_PUBLISHED row exists is not logged again, and a flow_id
-- repeated in the batch is logged once. The consumer's DDL has no unique constraint, so writers
-- serialize on an advisory lock, taken in its own statement: the function is VOLATILE, so the check
-- after it takes a fresh snapshot and sees every row committed before the lock was granted.
-- SECURITY DEFINER as tickstockpl_audit_owner (SELECT + the writer's grants, nothing more); the
-- search_path is fixed with pg_catalog first and pg_temp last, so no object a caller creates can
-- stand in for ours. It returns the flow_ids it wrote, and reveals nothing but whether the flow_ids
-- the caller names have a row. Sequential scans are off inside it: PL/pgSQL caches a generic plan
-- after five calls, and one made while the table was empty (a new database, a TRUNCATE) scanned the
-- whole table on every later batch (bench_relay's p99 at 10,000/s went from ms to 15 s); the
-- existing-row check is always a flow_id index lookup of one batch.
GRANT SELECT, INSERT ON integration_events TO tickstockpl_audit_owner;
GRANT USAGE ON SEQUENCE integration_events_id_seq TO tickstockpl_audit_owner;
GRANT EXECUTE ON FUNCTION log_integration_event TO tickstockpl_audit_owner;

CREATE OR REPLACE FUNCTION tickstockpl_log_new(
    p_rows JSONB,
    p_event_type VARCHAR(50),
    p_source VARCHAR(50),
    p_checkpoint VARCHAR(100),
    p_channel VARCHAR(100)
) RETURNS SETOF UUID
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
SET enable_seqscan = off
AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('tickstockpl.audit'));
    RETURN QUERY
    WITH batch AS (
        SELECT DISTINCT ON (b.flow_id) b.*
        FROM jsonb_to_recordset(p_rows)
            AS b(flow_id uuid, symbol text, pattern text, confidence numeric, details jsonb, ord int)
        ORDER BY b.flow_id, b.ord
    ), existing AS (
        SELECT e.flow_id FROM public.integration_events e
        WHERE e.flow_id = ANY(ARRAY(SELECT flow_id FROM batch))
          AND e.checkpoint = p_checkpoint AND e.source_system = p_source
    ), logged AS MATERIALIZED (
        SELECT t.flow_id,
               public.log_integration_event(t.flow_id, p_event_type, p_source, p_checkpoint,
                                            p_channel, t.symbol::varchar, t.pattern::varchar,
                                            t.confidence, NULL::integer, t.details)
        FROM batch t
        WHERE t.flow_id NOT IN (SELECT flow_id FROM existing)
    )
    SELECT logged.flow_id FROM logged;
END;
$$;
ALTER FUNCTION tickstockpl_log_new(JSONB, VARCHAR, VARCHAR, VARCHAR, VARCHAR) OWNER TO tickstockpl_audit_owner;
REVOKE ALL ON FUNCTION tickstockpl_log_new(JSONB, VARCHAR, VARCHAR, VARCHAR, VARCHAR) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tickstockpl_log_new(JSONB, VARCHAR, VARCHAR, VARCHAR, VARCHAR)
    TO tickstockpl_producer, app_readwrite;

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
GRANT SELECT ON historical_bars TO tickstockpl_backtester, tickstockpl_reader;
-- `load-history` (as app_readwrite) stages rows in TEMP tables: binary COPY, then one upsert. PUBLIC
-- has TEMPORARY by default; granted by name so a database that revoked it from PUBLIC still loads.
DO $$
BEGIN
    EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO app_readwrite', current_database());
END
$$;

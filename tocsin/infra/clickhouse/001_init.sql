-- 001_init: the recording tables of DESIGN "Recording" (database `tocsin`).
--
-- Every table is a ReplacingMergeTree ordered by its record id (decision_id, attempt_id,
-- event_id): a replayed topic or a retried insert writes rows that collapse into one at
-- merge time, and every analyst query reads with FINAL so that counts are exact even
-- before the merge. Rows with the same id always carry the same event time, so they land
-- in the same monthly partition and do collapse.
--
-- Inserts also carry an insert_deduplication_token (a hash of the batch's ids): a batch
-- retried after a timeout is dropped whole, base table and materialized views alike
-- (non_replicated_deduplication_window keeps the last 1000 tokens per table).
--
-- Runs unchanged on a ClickHouse server and on chdb (clickhouse-connect's chdb backend).

CREATE DATABASE IF NOT EXISTS tocsin;

-- Every valid alert with the throttle's decision about it (topic P.decisions).
CREATE TABLE IF NOT EXISTS tocsin.alerts
(
    decision_id      UUID,
    alert_id         UUID,
    fingerprint      String,
    type             LowCardinality(String),
    severity         UInt8,
    outcome          LowCardinality(String),
    reason           String,
    dedupe_key       String,
    suppressed_count UInt32,
    window_start     DateTime64(3, 'UTC'),
    event_timestamp  DateTime64(3, 'UTC'),
    decided_at       DateTime64(3, 'UTC'),
    account_id       String,
    symbol           String,
    strategy_id      String,
    run_id           String,
    summary          String,
    details          String,
    source           String,
    action           LowCardinality(String),
    resolves         String,
    requires_action  Bool,
    destinations     Array(String),
    recorded_at      DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(event_timestamp)
ORDER BY decision_id
SETTINGS non_replicated_deduplication_window = 1000;

-- Every delivery attempt, whatever its outcome (topic P.attempts).
CREATE TABLE IF NOT EXISTS tocsin.delivery_attempts
(
    attempt_id    UUID,
    delivery_id   String,
    alert_id      UUID,
    fingerprint   String,
    type          LowCardinality(String),
    severity      UInt8,
    channel       LowCardinality(String),
    destination   LowCardinality(String),
    attempt       UInt16,
    status        LowCardinality(String),
    reason        String,
    response_code Nullable(Int32),
    error         Nullable(String),
    started_at    DateTime64(3, 'UTC'),
    finished_at   DateTime64(3, 'UTC'),
    latency_ms    Float64,
    recorded_at   DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(started_at)
ORDER BY attempt_id
SETTINGS non_replicated_deduplication_window = 1000;

-- On-call actions on a fingerprint (topic P.lifecycle).
CREATE TABLE IF NOT EXISTS tocsin.alert_lifecycle
(
    event_id    UUID,
    fingerprint String,
    action      LowCardinality(String),
    by          String,
    note        String,
    at          DateTime64(3, 'UTC'),
    alert_id    Nullable(UUID),
    recorded_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(at)
ORDER BY event_id
SETTINGS non_replicated_deduplication_window = 1000;

-- Per-minute delivery statistics by channel and destination, kept by the materialized view
-- below. APPROXIMATE UNDER REPLAY: the view sees every inserted block, and a replayed topic
-- inserts rows that the base table later collapses but this table has already counted
-- (a retried batch with the same dedup token is dropped, so retries do not double-count).
-- It is for dashboards of recent traffic; the analyst queries read the base tables with
-- FINAL. `tocsin rebuild` truncates it together with the base tables.
CREATE TABLE IF NOT EXISTS tocsin.delivery_stats_1m
(
    minute            DateTime('UTC'),
    channel           LowCardinality(String),
    destination       LowCardinality(String),
    attempts          SimpleAggregateFunction(sum, UInt64),
    sent              SimpleAggregateFunction(sum, UInt64),
    failed            SimpleAggregateFunction(sum, UInt64),
    dead              SimpleAggregateFunction(sum, UInt64),
    skipped_duplicate SimpleAggregateFunction(sum, UInt64),
    rate_limited      SimpleAggregateFunction(sum, UInt64),
    circuit_open      SimpleAggregateFunction(sum, UInt64),
    latency_ms        AggregateFunction(quantiles(0.5, 0.95, 0.99), Float64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (minute, channel, destination)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS tocsin.delivery_stats_1m_mv TO tocsin.delivery_stats_1m AS
SELECT
    toStartOfMinute(started_at)             AS minute,
    channel,
    destination,
    count()                                 AS attempts,
    countIf(status = 'sent')                AS sent,
    countIf(status = 'failed')              AS failed,
    countIf(status = 'dead')                AS dead,
    countIf(status = 'skipped_duplicate')   AS skipped_duplicate,
    countIf(status = 'rate_limited')        AS rate_limited,
    countIf(status = 'circuit_open')        AS circuit_open,
    quantilesStateIf(0.5, 0.95, 0.99)(latency_ms, status IN ('sent', 'failed', 'dead')) AS latency_ms
FROM tocsin.delivery_attempts
GROUP BY minute, channel, destination;

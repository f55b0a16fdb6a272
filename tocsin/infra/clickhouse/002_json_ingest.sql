-- 002_json_ingest: ClickHouse parses the recorded topic messages itself.
--
-- The Recorder sends the JSON messages of P.decisions, P.attempts and P.lifecycle as they
-- travel on the topics, newline-joined, in one INSERT ... FORMAT JSONEachRow per table and
-- batch, into the Null-engine tables below (they store nothing). Each one's materialized
-- view turns a message into the row of its recording table of 001_init, whose own view
-- (delivery_stats_1m_mv) follows as before. The columns mirror the message models of
-- tocsin/schemas/messages.py; keys these tables do not name are skipped, so additive fields
-- need no change here.
--
-- Only messages the Recorder has checked go this way (agents/recorder.py, `json_id`): the
-- fields a row needs, of the JSON types the columns read, numbers in range, the JSON exactly
-- as orjson writes it (so `details` arrives as the very text the row keeps). The views check
-- the rest: ids are UUIDs in their canonical text, timestamps RFC 3339 with an offset
-- (years 1901..2298, hours 00..23, seconds 00..59; best-effort parsing would roll 24:00
-- over or take a naive time as UTC). One message failing that fails the whole INSERT before
-- anything is written (throwIf, error 395), and the Recorder then builds that batch's rows
-- in Python, which rejects the bad message with its reason. Either way a message gives the
-- same row (tests/integration/test_clickhouse_json.py).
--
-- Deduplication: the INSERT carries the batch's insert_deduplication_token and
-- deduplicate_blocks_in_dependent_materialized_views = 1, so a retried batch is dropped
-- by the recording tables and by delivery_stats_1m alike.
--
-- The same DDL serves a ClickHouse server and chdb; tested here on chdb (its engine 26.9)
-- only. The settings the inserts state exist since ClickHouse 23.x (docker-compose: 24.8),
-- and the testcontainers test runs this path against a server where Docker exists.

CREATE TABLE IF NOT EXISTS tocsin.alerts_json
(
    decision_id      String,
    alert            Tuple(
        alert_id         String,
        type             String,
        severity         UInt8,
        event_timestamp  String,
        fingerprint      String,
        entity           Tuple(account_id String, symbol String, strategy_id String, run_id String),
        summary          String,
        details          String,
        source           String,
        action           String,
        resolves         String,
        requires_action  Bool),
    dedupe_key       String,
    outcome          String,
    reason           String,
    window_start     String,
    suppressed_count UInt32,
    destinations     Array(String),
    decided_at       String
)
ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS tocsin.alerts_json_mv TO tocsin.alerts AS
SELECT
    toUUID(decision_id)                                               AS decision_id,
    toUUID(tupleElement(alert, 'alert_id'))                           AS alert_id,
    tupleElement(alert, 'fingerprint')                                AS fingerprint,
    tupleElement(alert, 'type')                                       AS type,
    tupleElement(alert, 'severity')                                   AS severity,
    outcome,
    reason,
    dedupe_key,
    suppressed_count,
    parseDateTime64BestEffort(window_start, 3, 'UTC')                 AS window_start,
    parseDateTime64BestEffort(tupleElement(alert, 'event_timestamp'), 3, 'UTC') AS event_timestamp,
    parseDateTime64BestEffort(decided_at, 3, 'UTC')                   AS decided_at,
    tupleElement(tupleElement(alert, 'entity'), 'account_id')         AS account_id,
    tupleElement(tupleElement(alert, 'entity'), 'symbol')             AS symbol,
    tupleElement(tupleElement(alert, 'entity'), 'strategy_id')        AS strategy_id,
    tupleElement(tupleElement(alert, 'entity'), 'run_id')             AS run_id,
    tupleElement(alert, 'summary')                                    AS summary,
    tupleElement(alert, 'details')                                    AS details,
    tupleElement(alert, 'source')                                     AS source,
    tupleElement(alert, 'action')                                     AS action,
    tupleElement(alert, 'resolves')                                   AS resolves,
    tupleElement(alert, 'requires_action')                            AS requires_action,
    destinations
FROM (SELECT * FROM tocsin.alerts_json WHERE throwIf(NOT (
        match(decision_id, '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$')
    AND match(tupleElement(alert, 'alert_id'), '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$')
    AND match(tupleElement(alert, 'event_timestamp'), '^(?:19(?:0[1-9]|[1-9]\\d)|2[01]\\d\\d|22[0-8]\\d|229[0-8])-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\\d|3[01])T(?:[01]\\d|2[0-3]):[0-5]\\d:[0-5]\\d(?:\\.\\d{1,6})?(?:Z|[+-](?:[01]\\d|2[0-3]):[0-5]\\d)$')
    AND match(window_start, '^(?:19(?:0[1-9]|[1-9]\\d)|2[01]\\d\\d|22[0-8]\\d|229[0-8])-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\\d|3[01])T(?:[01]\\d|2[0-3]):[0-5]\\d:[0-5]\\d(?:\\.\\d{1,6})?(?:Z|[+-](?:[01]\\d|2[0-3]):[0-5]\\d)$')
    AND match(decided_at, '^(?:19(?:0[1-9]|[1-9]\\d)|2[01]\\d\\d|22[0-8]\\d|229[0-8])-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\\d|3[01])T(?:[01]\\d|2[0-3]):[0-5]\\d:[0-5]\\d(?:\\.\\d{1,6})?(?:Z|[+-](?:[01]\\d|2[0-3]):[0-5]\\d)$')
    ), 'tocsin.alerts_json: a decision with an id or a timestamp not in canonical text') = 0);

CREATE TABLE IF NOT EXISTS tocsin.delivery_attempts_json
(
    attempt_id    String,
    delivery_id   String,
    alert_id      String,
    fingerprint   String,
    type          String,
    severity      UInt8,
    channel       String,
    destination   String,
    attempt       UInt16,
    status        String,
    reason        String,
    response_code Nullable(Int32),
    error         Nullable(String),
    started_at    String,
    finished_at   String,
    latency_ms    Float64
)
ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS tocsin.delivery_attempts_json_mv TO tocsin.delivery_attempts AS
SELECT
    toUUID(attempt_id)                                AS attempt_id,
    delivery_id,
    toUUID(alert_id)                                  AS alert_id,
    fingerprint, type, severity, channel, destination, attempt, status, reason, response_code, error,
    parseDateTime64BestEffort(started_at, 3, 'UTC')   AS started_at,
    parseDateTime64BestEffort(finished_at, 3, 'UTC')  AS finished_at,
    latency_ms
FROM (SELECT * FROM tocsin.delivery_attempts_json WHERE throwIf(NOT (
        match(attempt_id, '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$')
    AND match(alert_id, '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$')
    AND match(started_at, '^(?:19(?:0[1-9]|[1-9]\\d)|2[01]\\d\\d|22[0-8]\\d|229[0-8])-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\\d|3[01])T(?:[01]\\d|2[0-3]):[0-5]\\d:[0-5]\\d(?:\\.\\d{1,6})?(?:Z|[+-](?:[01]\\d|2[0-3]):[0-5]\\d)$')
    AND match(finished_at, '^(?:19(?:0[1-9]|[1-9]\\d)|2[01]\\d\\d|22[0-8]\\d|229[0-8])-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\\d|3[01])T(?:[01]\\d|2[0-3]):[0-5]\\d:[0-5]\\d(?:\\.\\d{1,6})?(?:Z|[+-](?:[01]\\d|2[0-3]):[0-5]\\d)$')
    ), 'tocsin.delivery_attempts_json: an attempt with an id or a timestamp not in canonical text') = 0);

CREATE TABLE IF NOT EXISTS tocsin.alert_lifecycle_json
(
    event_id    String,
    fingerprint String,
    action      String,
    by          String,
    note        String,
    at          String,
    alert_id    Nullable(String)
)
ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS tocsin.alert_lifecycle_json_mv TO tocsin.alert_lifecycle AS
SELECT
    toUUID(event_id)                         AS event_id,
    fingerprint,
    action,
    by,
    note,
    parseDateTime64BestEffort(at, 3, 'UTC')  AS at,
    toUUIDOrNull(alert_id)                   AS alert_id
FROM (SELECT * FROM tocsin.alert_lifecycle_json WHERE throwIf(NOT (
        match(event_id, '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$')
    AND (alert_id IS NULL
         OR match(assumeNotNull(alert_id), '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$'))
    AND match(at, '^(?:19(?:0[1-9]|[1-9]\\d)|2[01]\\d\\d|22[0-8]\\d|229[0-8])-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\\d|3[01])T(?:[01]\\d|2[0-3]):[0-5]\\d:[0-5]\\d(?:\\.\\d{1,6})?(?:Z|[+-](?:[01]\\d|2[0-3]):[0-5]\\d)$')
    ), 'tocsin.alert_lifecycle_json: a lifecycle event with an id or a timestamp not in canonical text') = 0);

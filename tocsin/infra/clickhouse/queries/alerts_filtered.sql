-- alerts_filtered: the alerts matching filters, newest first, each with its decision and its
-- status. An empty string (or 0 for severity) means "any".
-- status is open, acknowledged, resolved or dismissed: the latest on-call action on the
-- alert's fingerprint at or after its event time (tocsin.alert_lifecycle), where a recovery
-- alert naming the fingerprint in `resolves` counts as a resolve; no such action: open.
-- Params: since DateTime64, until DateTime64 (event time), symbol String, strategy_id String,
--   outcome String (notify | suppress | bypass), status String, severity UInt8, type String,
--   limit UInt32 (default 100), offset UInt32 (default 0).
-- Exact under replay: both tables are read with FINAL.
WITH
    picked AS (
        SELECT *
        FROM tocsin.alerts FINAL
        WHERE event_timestamp >= {since:DateTime64(3, 'UTC')}
          AND event_timestamp <  {until:DateTime64(3, 'UTC')}
          AND ({symbol:String} = '' OR symbol = {symbol:String})
          AND ({strategy_id:String} = '' OR strategy_id = {strategy_id:String})
          AND ({outcome:String} = '' OR outcome = {outcome:String})
          AND ({severity:UInt8} = 0 OR severity = {severity:UInt8})
          AND ({type:String} = '' OR type = {type:String})
    ),
    actions AS (
        SELECT fingerprint, toString(action) AS action, by, at
        FROM tocsin.alert_lifecycle FINAL
        UNION ALL
        SELECT resolves AS fingerprint, 'resolve' AS action, concat('alert:', toString(alert_id)) AS by,
               event_timestamp AS at
        FROM tocsin.alerts FINAL
        WHERE resolves != ''
          AND event_timestamp >= {since:DateTime64(3, 'UTC')}
    ),
    status_of AS (
        SELECT
            p.decision_id                                          AS decision_id,
            argMaxIf(x.action, x.at, x.at >= p.event_timestamp)   AS last_action,
            argMaxIf(x.by, x.at, x.at >= p.event_timestamp)       AS last_by,
            maxIf(x.at, x.at >= p.event_timestamp)                AS last_at
        FROM picked AS p
        LEFT JOIN actions AS x ON x.fingerprint = p.fingerprint
        GROUP BY p.decision_id
    )
SELECT
    p.event_timestamp                                      AS event_timestamp,
    p.alert_id                                             AS alert_id,
    p.severity                                             AS severity,
    p.type                                                 AS type,
    p.fingerprint                                          AS fingerprint,
    p.summary                                              AS summary,
    p.account_id                                           AS account_id,
    p.symbol                                               AS symbol,
    p.strategy_id                                          AS strategy_id,
    p.outcome                                              AS outcome,
    p.suppressed_count                                     AS suppressed_count,
    multiIf(s.last_action = 'acknowledge', 'acknowledged',
            s.last_action = 'resolve', 'resolved',
            s.last_action = 'dismiss', 'dismissed', 'open') AS status,
    if(s.last_action = '', NULL, s.last_at)                AS status_at,
    if(s.last_action = '', NULL, s.last_by)                AS status_by,
    p.destinations                                         AS destinations,
    p.source                                               AS source,
    p.requires_action                                      AS requires_action,
    p.decision_id                                          AS decision_id
FROM picked AS p
INNER JOIN status_of AS s ON s.decision_id = p.decision_id
WHERE {status:String} = '' OR status = {status:String}
ORDER BY event_timestamp DESC, decision_id
LIMIT {limit:UInt32} OFFSET {offset:UInt32}

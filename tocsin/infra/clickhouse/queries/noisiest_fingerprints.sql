-- noisiest_fingerprints: the fingerprints the throttle suppressed most often, i.e. the
-- problems that keep firing. suppressed = alerts decided `suppress`; notified = notify or
-- bypass; windows = distinct throttle windows (each opened by one notification).
-- Window: event time in [since, until). Ties: more alerts first, then by fingerprint.
-- Params: since DateTime64, until DateTime64, limit UInt32 (default 20).
-- Counts alerts: a window's digest and escalation steps are rows of tocsin.alerts about an
-- alert, not one, and left out. Exact under replay: reads tocsin.alerts with FINAL.
SELECT
    fingerprint,
    any(type)                                AS type,
    min(severity)                            AS worst_severity,
    count()                                  AS alerts,
    countIf(outcome = 'suppress')            AS suppressed,
    countIf(outcome IN ('notify', 'bypass')) AS notified,
    uniqExact(dedupe_key)                    AS windows,
    min(event_timestamp)                     AS first_seen,
    max(event_timestamp)                     AS last_seen
FROM tocsin.alerts FINAL
WHERE event_timestamp >= {since:DateTime64(3, 'UTC')}
  AND event_timestamp <  {until:DateTime64(3, 'UTC')}
  AND outcome NOT IN ('digest', 'escalated', 'escalation_stopped')  -- steps about an alert, not one
GROUP BY fingerprint
HAVING suppressed > 0
ORDER BY suppressed DESC, alerts DESC, fingerprint
LIMIT {limit:UInt32}

-- totals_24h_by_severity: how many valid alerts arrived per severity, and how many of them
-- were notified (notify or bypass) or suppressed by the throttle.
-- Window: event time in [since, until) (defaults: the last 24 hours).
-- Params: since DateTime64, until DateTime64.
-- Counts alerts: a window's digest and escalation steps are rows of tocsin.alerts about an
-- alert, not one, and left out. Exact under replay: reads tocsin.alerts with FINAL (one row per decision_id).
SELECT
    severity,
    count()                                  AS alerts,
    countIf(outcome IN ('notify', 'bypass')) AS notified,
    countIf(outcome = 'suppress')            AS suppressed,
    uniqExact(fingerprint)                   AS fingerprints
FROM tocsin.alerts FINAL
WHERE event_timestamp >= {since:DateTime64(3, 'UTC')}
  AND event_timestamp <  {until:DateTime64(3, 'UTC')}
  AND outcome NOT IN ('digest', 'escalated', 'escalation_stopped')  -- steps about an alert, not one
GROUP BY severity
ORDER BY severity

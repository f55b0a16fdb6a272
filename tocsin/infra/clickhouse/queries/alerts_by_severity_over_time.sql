-- alerts_by_severity_over_time: how many valid alerts arrived per time bucket (a minute by
-- default) and severity: the dashboard's "alerts per minute by severity" chart.
-- bucket is the start of the bucket_s-second slot the alert's event time falls in (slots
-- aligned on the Unix epoch: a minute starts at :00). Only non-empty (bucket, severity)
-- pairs are rows: a reader fills the gaps with zeros.
-- Window: event time in [since, until) (defaults: the last 24 hours).
-- Params: since DateTime64, until DateTime64, bucket_s UInt32 (default 60, at least 1).
-- Counts alerts: a window's digest and escalation steps are rows of tocsin.alerts about an
-- alert, not one, and left out. Exact under replay: reads tocsin.alerts with FINAL (one row per decision_id).
SELECT
    toStartOfInterval(event_timestamp, toIntervalSecond({bucket_s:UInt32})) AS bucket,
    severity,
    count()                                                               AS alerts
FROM tocsin.alerts FINAL
WHERE event_timestamp >= {since:DateTime64(3, 'UTC')}
  AND event_timestamp <  {until:DateTime64(3, 'UTC')}
  AND outcome NOT IN ('digest', 'escalated', 'escalation_stopped')  -- steps about an alert, not one
GROUP BY bucket, severity
ORDER BY bucket, severity

-- alerts_by_outcome_over_time: how many valid alerts were decided each way per time bucket
-- (a minute by default): the dashboard's "alerts per minute by outcome" chart.
-- outcome is the decision's as recorded (notify, suppress, bypass, silenced, and whatever
-- outcome a noise-control step adds: the list is open, nothing here names one).
-- bucket is the start of the bucket_s-second slot the alert's event time falls in (slots
-- aligned on the Unix epoch). Only non-empty (bucket, outcome) pairs are rows.
-- Window: event time in [since, until) (defaults: the last 24 hours).
-- Params: since DateTime64, until DateTime64, bucket_s UInt32 (default 60, at least 1).
-- Exact under replay: reads tocsin.alerts with FINAL (one row per decision_id).
SELECT
    toStartOfInterval(event_timestamp, toIntervalSecond({bucket_s:UInt32})) AS bucket,
    toString(outcome)                                                     AS outcome,
    count()                                                               AS alerts
FROM tocsin.alerts FINAL
WHERE event_timestamp >= {since:DateTime64(3, 'UTC')}
  AND event_timestamp <  {until:DateTime64(3, 'UTC')}
GROUP BY bucket, outcome
ORDER BY bucket, outcome

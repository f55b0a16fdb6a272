-- latency_over_time: latency_by_channel per time bucket (a minute by default; the dashboard
-- asks for hours): p50, p95 and p99 of latency_ms (ClickHouse `quantiles`, linearly
-- interpolated) and the maximum, per channel, over the attempts that reached out to the
-- destination (status sent, failed or dead) started in the bucket; rate_limited,
-- circuit_open and skipped_duplicate attempts never left Tocsin: not counted.
-- Only non-empty (bucket, channel) pairs are rows. Slots aligned on the Unix epoch.
-- Window: attempt started in [since, until).
-- Params: since DateTime64, until DateTime64, bucket_s UInt32 (default 60, at least 1).
-- Exact under replay: reads tocsin.delivery_attempts with FINAL.
SELECT
    toStartOfInterval(started_at, toIntervalSecond({bucket_s:UInt32})) AS bucket,
    channel,
    count()                                                   AS attempts,
    countIf(status = 'sent')                                  AS sent,
    round(quantiles(0.5, 0.95, 0.99)(latency_ms)[1], 3)        AS p50_ms,
    round(quantiles(0.5, 0.95, 0.99)(latency_ms)[2], 3)        AS p95_ms,
    round(quantiles(0.5, 0.95, 0.99)(latency_ms)[3], 3)        AS p99_ms,
    round(max(latency_ms), 3)                                 AS max_ms
FROM tocsin.delivery_attempts FINAL
WHERE status IN ('sent', 'failed', 'dead')
  AND started_at >= {since:DateTime64(3, 'UTC')}
  AND started_at <  {until:DateTime64(3, 'UTC')}
GROUP BY bucket, channel
ORDER BY bucket, channel

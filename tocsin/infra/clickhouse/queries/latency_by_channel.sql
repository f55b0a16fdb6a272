-- latency_by_channel: how long a send takes per channel: p50, p95 and p99 of latency_ms
-- (ClickHouse `quantiles`, linearly interpolated) and the maximum, over the attempts that
-- reached out to the destination (status sent, failed or dead) started in [since, until).
-- rate_limited, circuit_open and skipped_duplicate attempts never left Tocsin: not counted.
-- Params: since DateTime64, until DateTime64.
-- Exact under replay: reads tocsin.delivery_attempts with FINAL.
SELECT
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
GROUP BY channel
ORDER BY channel

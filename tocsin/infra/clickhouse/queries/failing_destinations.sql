-- failing_destinations: destinations with failed, dead or circuit-open attempts started in
-- [since, until), worst first: their attempt counts by status, failure rate
-- ((failed + dead) / attempts, skipped_duplicate excluded), the last failure and its error.
-- Params: since DateTime64, until DateTime64.
-- Exact under replay: reads tocsin.delivery_attempts with FINAL.
SELECT
    channel,
    destination,
    count()                                                        AS attempts,
    countIf(status = 'sent')                                       AS sent,
    countIf(status = 'failed')                                     AS failed,
    countIf(status = 'dead')                                       AS dead,
    countIf(status = 'rate_limited')                               AS rate_limited,
    countIf(status = 'circuit_open')                               AS circuit_open,
    round((failed + dead) / attempts, 4)                           AS failure_rate,
    maxIf(started_at, status IN ('failed', 'dead', 'circuit_open')) AS last_failure_at,
    argMaxIf(ifNull(error, reason), started_at, status IN ('failed', 'dead', 'circuit_open')) AS last_error
FROM tocsin.delivery_attempts FINAL
WHERE status != 'skipped_duplicate'
  AND started_at >= {since:DateTime64(3, 'UTC')}
  AND started_at <  {until:DateTime64(3, 'UTC')}
GROUP BY channel, destination
HAVING failed + dead + circuit_open > 0
ORDER BY dead DESC, failed DESC, failure_rate DESC, destination

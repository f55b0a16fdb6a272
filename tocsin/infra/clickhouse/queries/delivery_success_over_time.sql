-- delivery_success_over_time: delivery_success_rate per channel and time bucket (a minute
-- by default; the dashboard asks for hours): the "delivery success per channel" chart.
-- A delivery (one alert to one destination, its delivery_id) counts in the bucket its first
-- attempt started in; delivered when any of its attempts is `sent` (even one after `until`),
-- dead when one is `dead` and none `sent`; skipped_duplicate attempts are not deliveries.
-- success_rate = delivered / deliveries. Only non-empty (bucket, channel) pairs are rows.
-- Window: first attempt in [since, until). Slots aligned on the Unix epoch.
-- Params: since DateTime64, until DateTime64, bucket_s UInt32 (default 60, at least 1).
-- Exact under replay: reads tocsin.delivery_attempts with FINAL.
SELECT
    toStartOfInterval(first_attempt_at, toIntervalSecond({bucket_s:UInt32})) AS bucket,
    channel,
    count()                                        AS deliveries,
    countIf(is_delivered)                          AS delivered,
    countIf(is_dead AND NOT is_delivered)          AS dead,
    countIf(NOT is_delivered AND NOT is_dead)      AS in_progress,
    round(delivered / deliveries, 4)               AS success_rate
FROM
(
    SELECT
        delivery_id,
        any(channel)          AS channel,
        min(started_at)       AS first_attempt_at,
        max(status = 'sent')  AS is_delivered,
        max(status = 'dead')  AS is_dead
    FROM tocsin.delivery_attempts FINAL
    WHERE status != 'skipped_duplicate'
      AND started_at >= {since:DateTime64(3, 'UTC')} - INTERVAL 1 DAY
    GROUP BY delivery_id
    HAVING first_attempt_at >= {since:DateTime64(3, 'UTC')}
       AND first_attempt_at <  {until:DateTime64(3, 'UTC')}
)
GROUP BY bucket, channel
ORDER BY bucket, channel

-- delivery_success_rate: per channel, how many deliveries (one delivery = one alert to one
-- destination, its delivery_id) reached their destination.
-- A delivery counts in the window when its first attempt started in [since, until); it is
-- delivered when any of its attempts has status `sent` (even a retry after `until`), dead
-- when it has a `dead` attempt and none `sent`. skipped_duplicate attempts (a re-consumed
-- command recognised as already sent) are not deliveries.
-- success_rate = delivered / deliveries. The total over channels: sum(delivered) / sum(deliveries).
-- Params: since DateTime64, until DateTime64.
-- Exact under replay: reads tocsin.delivery_attempts with FINAL.
SELECT
    channel,
    count()                                        AS deliveries,
    countIf(is_delivered)                          AS delivered,
    countIf(is_dead AND NOT is_delivered)          AS dead,
    countIf(NOT is_delivered AND NOT is_dead)      AS in_progress,
    sum(n_attempts)                                AS attempts,
    round(delivered / deliveries, 4)               AS success_rate
FROM
(
    SELECT
        delivery_id,
        any(channel)          AS channel,
        min(started_at)       AS first_attempt_at,
        max(status = 'sent')  AS is_delivered,
        max(status = 'dead')  AS is_dead,
        count()               AS n_attempts
    FROM tocsin.delivery_attempts FINAL
    WHERE status != 'skipped_duplicate'
      AND started_at >= {since:DateTime64(3, 'UTC')} - INTERVAL 1 DAY
    GROUP BY delivery_id
    HAVING first_attempt_at >= {since:DateTime64(3, 'UTC')}
       AND first_attempt_at <  {until:DateTime64(3, 'UTC')}
)
GROUP BY channel
ORDER BY channel

-- totals_24h_by_type: alerts per type (notified and suppressed) with the delivery success
-- rate of that type's notifications.
-- Alerts: event time in [since, until). Deliveries: those first attempted in [since, until).
-- Delivery success rate = deliveries (delivery_ids) with a `sent` attempt / deliveries with
-- any attempt other than skipped_duplicate; NULL when the type had no delivery.
-- Params: since DateTime64, until DateTime64.
-- Exact under replay: both tables are read with FINAL.
WITH
    a AS (
        SELECT
            type,
            count()                                  AS alerts,
            countIf(outcome IN ('notify', 'bypass')) AS notified,
            countIf(outcome = 'suppress')            AS suppressed,
            min(severity)                            AS worst_severity
        FROM tocsin.alerts FINAL
        WHERE event_timestamp >= {since:DateTime64(3, 'UTC')}
          AND event_timestamp <  {until:DateTime64(3, 'UTC')}
  AND outcome NOT IN ('digest', 'escalated', 'escalation_stopped')  -- steps about an alert, not one
        GROUP BY type
    ),
    d AS (
        SELECT type, count() AS deliveries, countIf(is_delivered) AS delivered
        FROM
        (
            SELECT delivery_id, any(type) AS type, min(started_at) AS first_attempt_at,
                   max(status = 'sent') AS is_delivered
            FROM tocsin.delivery_attempts FINAL
            WHERE status != 'skipped_duplicate'
              AND started_at >= {since:DateTime64(3, 'UTC')} - INTERVAL 1 DAY
            GROUP BY delivery_id
            HAVING first_attempt_at >= {since:DateTime64(3, 'UTC')}
               AND first_attempt_at <  {until:DateTime64(3, 'UTC')}
        )
        GROUP BY type
    )
SELECT
    a.type                   AS type,
    a.worst_severity         AS worst_severity,
    a.alerts                 AS alerts,
    a.notified               AS notified,
    a.suppressed             AS suppressed,
    ifNull(d.deliveries, 0)  AS deliveries,
    ifNull(d.delivered, 0)   AS delivered,
    if(ifNull(d.deliveries, 0) = 0, NULL, round(d.delivered / d.deliveries, 4)) AS delivery_success_rate
FROM a
LEFT JOIN d ON d.type = a.type
ORDER BY alerts DESC, type

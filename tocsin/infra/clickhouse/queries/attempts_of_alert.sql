-- attempts_of_alert: every delivery attempt of one alert, in the order they happened:
-- each destination, attempt number, status, HTTP/SMTP response code, error and latency.
-- Params: alert_id UUID.
-- Exact under replay: reads tocsin.delivery_attempts with FINAL.
SELECT
    started_at,
    finished_at,
    channel,
    destination,
    attempt,
    status,
    reason,
    response_code,
    error,
    round(latency_ms, 3) AS latency_ms,
    delivery_id,
    attempt_id
FROM tocsin.delivery_attempts FINAL
WHERE alert_id = {alert_id:UUID}
ORDER BY started_at, destination, attempt, attempt_id

"""Prometheus metrics of one worker, served at ``GET /metrics``.

Labels are low-cardinality: channel, status, outcome, reason; never a fingerprint or URL.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

events_in = Counter("tocsin_events_in_total", "Messages consumed from the alerts topic", registry=REGISTRY)
events_invalid = Counter("tocsin_events_invalid_total", "Messages rejected to the invalid topic",
                         registry=REGISTRY)
decisions = Counter("tocsin_decisions_total", "Throttle decisions", ["outcome"], registry=REGISTRY)
deliveries = Counter("tocsin_deliveries_total", "Delivery attempts", ["channel", "status"],
                     registry=REGISTRY)
delivery_latency = Histogram(
    "tocsin_delivery_latency_seconds", "Latency of one delivery attempt", ["channel"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=REGISTRY,
)
end_to_end_latency = Histogram(
    "tocsin_notification_delay_seconds", "Event time to successful delivery", ["channel"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120, 600), registry=REGISTRY,
)
dlq_total = Counter("tocsin_dlq_total", "Commands sent to the dead-letter topic", ["channel"],
                    registry=REGISTRY)
retries_pending = Gauge("tocsin_retries_pending", "Delivery commands waiting for their retry time",
                        registry=REGISTRY)
#: labels: destination names from the routing file (``webhook:default``), never a URL
circuit_breaker_state = Gauge("tocsin_circuit_breaker_state",
                              "Each destination's circuit breaker: 0 closed, 1 half-open, 2 open",
                              ["destination"], registry=REGISTRY)
deliveries_deferred = Counter("tocsin_deliveries_deferred_total",
                              "Delivery commands deferred through the retry topic without an attempt spent",
                              ["channel", "reason"], registry=REGISTRY)
delivery_queue = Gauge("tocsin_delivery_queue", "Delivery commands read and waiting for a sender",
                       ["channel"], registry=REGISTRY)
consumer_lag = Gauge("tocsin_consumer_lag", "Messages behind the end of each consumed topic",
                     ["topic"], registry=REGISTRY)
dlq_size = Gauge("tocsin_dlq_size", "Messages on the dead-letter topic", registry=REGISTRY)
recorded_rows = Counter("tocsin_recorded_rows_total", "Rows inserted into ClickHouse", ["table"],
                        registry=REGISTRY)
record_failures = Counter("tocsin_record_failures_total", "Failed ClickHouse inserts (retried)",
                          registry=REGISTRY)
lifecycle_actions = Counter("tocsin_lifecycle_actions_total", "On-call actions through the API", ["action"],
                            registry=REGISTRY)
ingest_requests = Counter("tocsin_ingest_requests_total", "Requests to the HTTP ingest endpoints by way in and answer",
                          ["way", "code"], registry=REGISTRY)
ingest_alerts = Counter("tocsin_ingest_alerts_total", "Alerts received on the HTTP ingest endpoints",
                        ["way", "outcome"], registry=REGISTRY)

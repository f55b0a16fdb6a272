"""Every topic of Tocsin, by name, key and value (DESIGN "Topics"). ``P`` is the prefix.

| attribute        | topic                      | key          | value                  |
|------------------|----------------------------|--------------|------------------------|
| alerts           | P.alerts                   | fingerprint  | AlertEvent (raw bytes) |
| alerts_keyed     | P.alerts.keyed (internal)  | fingerprint  | AlertEvent, repartitioned by fingerprint |
| invalid          | P.alerts.invalid           | original key | InvalidAlert           |
| decisions        | P.decisions                | fingerprint  | Decision               |
| deliveries[ch]   | P.deliveries.<channel>     | delivery_id  | DeliveryCommand        |
| retry            | P.deliveries.retry         | delivery_id  | DeliveryCommand (or a flapping timer, a ``Wake``: key its timer_id) |
| attempts         | P.attempts                 | delivery_id  | DeliveryAttempt        |
| dlq              | P.dlq                      | delivery_id  | DeliveryCommand        |
| lifecycle        | P.lifecycle                | fingerprint  | LifecycleEvent         |
| silences         | P.silences                 | silence id   | Silence (one version)  |
| preferences      | P.preferences              | person       | a person's preferences set through the API (one version; core/preferences.py) |
| maintenance      | P.maintenance              | window id    | MaintenanceWindow (one version) |
| inhibitions      | P.inhibitions              | kind:fingerprint | InhibitionFact (decisions/inhibit.py) |
| escalations      | P.escalations (internal)   | fingerprint  | DeliveryCommand with ``escalation``: a due step's timer |
| groups           | P.groups (internal)        | group key    | a grouped alert (agents/grouping.py) |
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import faust

from ..decisions.routing import CHANNELS
from ..schemas.codec import CODEC_NAME


def topic_names(prefix: str) -> dict[str, str]:
    names = {
        "alerts": f"{prefix}.alerts",
        "alerts_keyed": f"{prefix}.alerts.keyed",
        "invalid": f"{prefix}.alerts.invalid",
        "decisions": f"{prefix}.decisions",
        "retry": f"{prefix}.deliveries.retry",
        "attempts": f"{prefix}.attempts",
        "dlq": f"{prefix}.dlq",
        "lifecycle": f"{prefix}.lifecycle",
        "silences": f"{prefix}.silences",
        "preferences": f"{prefix}.preferences",
        "maintenance": f"{prefix}.maintenance",
        "inhibitions": f"{prefix}.inhibitions",
        "escalations": f"{prefix}.escalations",
        "groups": f"{prefix}.groups",
    }
    for ch in CHANNELS:
        names[f"deliveries.{ch}"] = f"{prefix}.deliveries.{ch}"
    return names


@dataclass
class Topics:
    alerts: faust.TopicT
    alerts_keyed: faust.TopicT
    invalid: faust.TopicT
    decisions: faust.TopicT
    deliveries: dict[str, faust.TopicT]
    retry: faust.TopicT
    attempts: faust.TopicT
    dlq: faust.TopicT
    lifecycle: faust.TopicT
    silences: faust.TopicT
    preferences: faust.TopicT
    maintenance: faust.TopicT
    #: escalation steps come due here (agents/escalation.py), released by the retry agent
    escalations: faust.TopicT
    inhibitions: faust.TopicT | None = None
    #: grouped alerts, re-keyed by group key for the grouping agent (agents/grouping.py)
    groups: faust.TopicT | None = None

    def all(self) -> list[faust.TopicT]:
        return [self.alerts, self.alerts_keyed, self.invalid, self.decisions, *self.deliveries.values(),
                self.retry, self.attempts, self.dlq, self.lifecycle, self.silences,
                self.preferences, self.maintenance, self.escalations,
                *([self.inhibitions] if self.inhibitions is not None else []),
                *([self.groups] if self.groups is not None else [])]


def make_topics(app: faust.App, prefix: str, partitions: int) -> Topics:
    names = topic_names(prefix)

    def t(name: str, raw: bool = False) -> faust.TopicT:
        return app.topic(
            names[name],
            key_type=str,
            key_serializer="raw",
            value_serializer="raw" if raw else CODEC_NAME,
            partitions=partitions,
            replicas=1,
            acks=True,
        )

    return Topics(
        alerts=t("alerts", raw=True),
        alerts_keyed=t("alerts_keyed", raw=True),
        invalid=t("invalid"),
        decisions=t("decisions"),
        deliveries={ch: t(f"deliveries.{ch}") for ch in CHANNELS},
        retry=t("retry"),
        attempts=t("attempts"),
        dlq=t("dlq"),
        lifecycle=t("lifecycle"),
        silences=t("silences"),
        preferences=t("preferences"),
        maintenance=t("maintenance"),
        inhibitions=t("inhibitions"),
        escalations=t("escalations"),
        groups=t("groups", raw=True),
    )


async def ensure_topics(bootstrap: str, prefix: str, partitions: int, timeout_s: float = 15.0,
                        *, security: Mapping[str, Any] | None = None) -> list[str]:
    """Create every missing Tocsin topic with ``partitions`` partitions before the worker
    subscribes (a subscription to a missing topic may auto-create it with the broker's default
    count). Existing topics are left alone. Returns the names created. ``security``:
    ``infra.kafka.client_kwargs(settings)``."""
    import asyncio

    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000),
                                **(security or {}))
    await asyncio.wait_for(admin.start(), timeout_s)
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in topic_names(prefix).values() if n not in existing]
        if missing:
            try:
                await admin.create_topics([NewTopic(n, partitions, 1) for n in missing])
            except TopicAlreadyExistsError:
                pass
        return missing
    finally:
        await admin.close()

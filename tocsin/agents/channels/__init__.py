"""Channels, one module each, registered by one explicit line in ``REGISTRY``.

``build_channels`` turns settings, the routing file's destinations and the environment into
the enabled destinations; a destination whose settings are absent is disabled. Named
destinations take their settings from the environment variables the routing file names:
webhook `url_env`, `secret_env`; email `to_env`; file `path_env`; slack `webhook_env`
(or `url_env`); telegram `token_env`, `chat_id_env`, optional `api_base_env`; pagerduty
`routing_key_env`, optional `api_base_env`. A receiver's
``allow_mentions`` (routing file, Slack and Telegram) is set on its destination's channel.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from ...core.settings import Settings
from ...decisions.routing import MENTION_CHANNELS, RoutingPolicy
from .base import Channel, ChannelBase, DeliveryResult, env_lookup
from .console import ConsoleChannel
from .email import EmailChannel
from .file import FileChannel
from .pagerduty import PagerDutyChannel
from .slack import SlackChannel
from .telegram import TelegramChannel
from .webhook import WebhookChannel

Factory = Callable[[str, Settings, Mapping[str, str], Mapping[str, str]], Channel | None]


def _secret(v: object) -> str | None:
    return v.get_secret_value() if v is not None else None  # type: ignore[attr-defined]


def _console(name: str, s: Settings, conf: Mapping[str, str], env: Mapping[str, str]) -> Channel | None:
    return ConsoleChannel(name) if s.console_enabled or name == "console:default" else None


def _file(name: str, s: Settings, conf: Mapping[str, str], env: Mapping[str, str]) -> Channel | None:
    if name == "file:default":
        return FileChannel(name, s.file_path) if s.file_channel_path else None
    path = env_lookup(conf, "path", env)
    return FileChannel(name, path) if path else None  # type: ignore[arg-type]


def _webhook(name: str, s: Settings, conf: Mapping[str, str], env: Mapping[str, str]) -> Channel | None:
    if name == "webhook:default":
        url, secret = _secret(s.webhook_default_url), _secret(s.webhook_default_secret)
    else:
        url, secret = env_lookup(conf, "url", env), env_lookup(conf, "secret", env)
    return WebhookChannel(name, url, secret, s.delivery_timeout_s) if url else None


def _email(name: str, s: Settings, conf: Mapping[str, str], env: Mapping[str, str]) -> Channel | None:
    to = s.email_default_to if name == "email:default" else env_lookup(conf, "to", env)
    if not to or not s.smtp_host:
        return None
    return EmailChannel(name, [t.strip() for t in to.split(",") if t.strip()], s.smtp_host,
                        s.smtp_port, s.smtp_from, s.smtp_user, _secret(s.smtp_password),
                        s.smtp_tls, s.delivery_timeout_s)


def _slack(name: str, s: Settings, conf: Mapping[str, str], env: Mapping[str, str]) -> Channel | None:
    if name == "slack:default":
        url = _secret(s.slack_default_webhook)
    else:
        url = env_lookup(conf, "webhook", env) or env_lookup(conf, "url", env)
    return SlackChannel(name, url, s.delivery_timeout_s) if url else None


def _telegram(name: str, s: Settings, conf: Mapping[str, str], env: Mapping[str, str]) -> Channel | None:
    if name == "telegram:default":
        token, chat_id, api_base = _secret(s.telegram_bot_token), s.telegram_chat_id, s.telegram_api_base
    else:
        token, chat_id = env_lookup(conf, "token", env), env_lookup(conf, "chat_id", env)
        api_base = env_lookup(conf, "api_base", env) or s.telegram_api_base
    if not token or not chat_id:
        return None
    return TelegramChannel(name, token, chat_id, api_base, s.delivery_timeout_s)


def _pagerduty(name: str, s: Settings, conf: Mapping[str, str], env: Mapping[str, str]) -> Channel | None:
    if name == "pagerduty:default":
        key, api_base = _secret(s.pagerduty_routing_key), s.pagerduty_api_base
    else:
        key = env_lookup(conf, "routing_key", env)
        api_base = env_lookup(conf, "api_base", env) or s.pagerduty_api_base
    return PagerDutyChannel(name, key, api_base, s.delivery_timeout_s) if key else None


REGISTRY: dict[str, Factory] = {
    "console": _console,
    "file": _file,
    "webhook": _webhook,
    "email": _email,
    "slack": _slack,
    "telegram": _telegram,
    "pagerduty": _pagerduty,
}


def candidate_names(policy: RoutingPolicy) -> list[str]:
    names: list[str] = ["console:default"]
    for group in (*policy.by_severity.values(), *policy.by_type.values(), policy.always,
                  *(r.failover or () for r in policy.receivers.values()), policy.destinations.keys()):
        for n in group:
            if n not in names:
                names.append(n)
    for ch in REGISTRY:
        if f"{ch}:default" not in names:
            names.append(f"{ch}:default")
    return names


def build_channels(settings: Settings, policy: RoutingPolicy,
                   env: Mapping[str, str] | None = None) -> dict[str, Channel]:
    """Every enabled destination by name."""
    env = os.environ if env is None else env
    out: dict[str, Channel] = {}
    for name in candidate_names(policy):
        channel = name.split(":", 1)[0]
        factory = REGISTRY.get(channel)
        if factory is None:
            continue
        ch = factory(name, settings, policy.destinations.get(name, {}), env)
        if ch is not None:
            if isinstance(ch, ChannelBase):
                ch.allow_mentions = policy.policy_for(name).allow_mentions and channel in MENTION_CHANNELS
            out[name] = ch
    return out


__all__ = ["Channel", "ChannelBase", "DeliveryResult", "REGISTRY", "build_channels", "candidate_names"]

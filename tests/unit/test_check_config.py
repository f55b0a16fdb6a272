"""``tocsin check-config``: where a key path is in a TOML text (decisions.config_model.line_of),
every error of a routing file with its line (decisions.routing.problems, cli.route.check_routing),
and the real command run as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tocsin.cli.route import check_routing, summary_of
from tocsin.decisions.config_model import line_of
from tocsin.decisions.routing import default_policy_path, load_policy, problems

RECEIVERS = '''\
# the delivery policies
[receivers.default]
max_age_s = 3600

[receivers."email:default"]   # a quoted key
max_age_s = 0
'''

LINE_CASES: list[tuple[str, str, tuple[int | str, ...], int | None]] = [
    ("top-level key", '# routing\n\nalways = ["console:default"]\n', ("always",), 3),
    ("a position in an array: the key's line", 'always = ["a", "b"]\n', ("always", 1), 1),
    ("a key of a table", '[severity]\n1 = []\n4 = ["webhook:default"]\n', ("severity", "4"), 3),
    ("the table itself", '[types]\nx = []\n[severity]\n1 = []\n', ("severity",), 3),
    ("the same key in two tables", RECEIVERS, ("receivers", "email:default", "max_age_s"), 6),
    ("... and in the first", RECEIVERS, ("receivers", "default", "max_age_s"), 3),
    ("a quoted header", RECEIVERS, ("receivers", "email:default"), 5),
    ("a key not written: its table", RECEIVERS, ("receivers", "default", "backoff_s"), 2),
    ("a literal quoted header", "[destinations.'email:risk']\nto = \"X\"\n", ("destinations", "email:risk", "to"), 2),
    ("an escaped quoted key", '[severity]\n"\\u0032 " = []\n', ("severity", "2 "), 2),
    ("spaces around dots", '[ receivers . "webhook:x" ]\nburst = 0\n', ("receivers", "webhook:x", "burst"), 2),
    ("a dotted key under a table", '[receivers]\n"webhook:default".max_age_s = 0\n',
     ("receivers", "webhook:default", "max_age_s"), 2),
    ("a dotted key at the top", 'always = []\nreceivers.default.backoff_s = []\n',
     ("receivers", "default", "backoff_s"), 2),
    ("a key inside the one named", '[receivers]\nwebhook.max_attempts = 3\n', ("receivers", "webhook"), 2),
    ("inside an inline table: the table's line", '[receivers]\n"webhook:x" = { failover = "y" }\n',
     ("receivers", "webhook:x", "failover"), 2),
    ("an array over lines hides what looks like a header",
     'always = [\n  "[severity]",  # [severity]\n  "x = 1",\n]\n[severity]\n1 = []\n', ("severity", "1"), 6),
    ("a multi-line string hides it too", 'x = """\n[severity]\n1 = 2\n"""\n[severity]\n1 = []\n', ("severity", "1"), 6),
    ("a literal multi-line string", "x = '''\n[types]\n'''\n[types]\na = []\n", ("types", "a"), 5),
    ("comments", '# [severity]\n[severity] # the severities\n3 = 1  # a comment\n', ("severity", "3"), 3),
    ("a value holding = and #", '[destinations."webhook:x"]\nurl_env = "A=B#C"\nurl = "u"\n',
     ("destinations", "webhook:x", "url"), 3),
    ("an array of tables", '[[receivers]]\nburst = 1\n', ("receivers",), 1),
    ("CRLF line ends", '[severity]\r\n\r\n2 = 1\r\n', ("severity", "2"), 3),
    ("not there", 'always = []\n', ("types", "x"), None),
    ("the whole file", 'always = []\n', (), None),
]


@pytest.mark.parametrize(("text", "loc", "line"), [(t, loc, n) for _, t, loc, n in LINE_CASES],
                         ids=[name for name, *_ in LINE_CASES])
def test_line_of(text: str, loc: tuple[int | str, ...], line: int | None) -> None:
    assert line_of(text, loc) == line


CHECK_CASES: list[tuple[str, str, list[str]]] = [
    ("valid", '[severity]\n1 = ["webhook:default"]\n', []),
    ("every model error, in line order",
     '[receivers."webhook:x"]\nmax_age_s = -1\n\n[severity]\n4 = []\n[receivers.default]\nmax_attempt = 3\n',
     ["f.toml:2: receivers.webhook:x.max_age_s: seconds, a number > 0 and <= 2592000 (30 days)",
      "f.toml:5: severity.4: not 1, 2 or 3",
      "f.toml:7: receivers.default.max_attempt: unknown key (known: max_attempts, backoff_s, slow_backoff_s, "
      "max_age_s, failover, rate_per_s, burst, allow_mentions, breaker_failures, breaker_reset_s, "
      "breaker_max_reset_s)"]),
    ("a check of values together",
     '[receivers.default]\nbreaker_reset_s = 60\nbreaker_max_reset_s = 30\n',
     ["f.toml:3: receivers.default.breaker_max_reset_s: the longest open period, at least breaker_reset_s (60)"]),
    ("a receiver's option for another channel", '\n[receivers."email:risk"]\nallow_mentions = true\n',
     ["f.toml:3: receivers.email:risk.allow_mentions: only for slack and telegram destinations"]),
    ("an inline secret, never repeated", '[destinations."webhook:x"]\nurl = "https://h/T0K3N"\n',
     ["f.toml:2: destinations.webhook:x.url: settings are named by environment variable (keys ending in _env), "
      "never inline"]),
    ("a bad destination in a list", 'always = ["console:default",\n  "pager:duty"]\n',
     ["f.toml:1: always[1]: unknown channel 'pager' in 'pager:duty'"]),
    ("TOML syntax: tomllib's line and column", 'always = []\n[severity\n1 = []\n',
     ["f.toml:2:10: Expected ']' at the end of a table declaration"]),
    ("TOML syntax at the end", 'always = [', ["f.toml:1:11: Invalid value (at the end of the file)"]),
    ("... of a file ending in blank lines", 'x = 1\nalways = ["a"\n\n', ["f.toml:2:14: Unclosed array (at the end of the file)"]),
    ("a duplicate key", '[severity]\n1 = []\n1 = []\n', ["f.toml:3:7: Cannot overwrite a value"]),
]


@pytest.mark.parametrize(("source", "errors"), [(s, e) for _, s, e in CHECK_CASES],
                         ids=[name for name, *_ in CHECK_CASES])
def test_check_routing(source: str, errors: list[str]) -> None:
    policy, found = check_routing("f.toml", source)
    assert found == errors
    assert (policy is None) is bool(errors)
    assert "T0K3N" not in "\n".join(found)


def test_problems_is_empty_for_what_the_worker_loads() -> None:
    import tomllib

    doc = tomllib.loads(default_policy_path().read_text("utf-8"))
    assert problems(doc) == []
    assert summary_of("r.toml", load_policy(None)) == (
        "r.toml: ok: 6 receivers (console:default, email:default, email:ops, email:risk, file:default, "
        "webhook:default), 7 routes (3 by severity, 3 by type, always)")


# ---------------------------------------------------------------- the command


def tocsin(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("TOCSIN_")}
    return subprocess.run([sys.executable, "-m", "tocsin.cli", *args], capture_output=True, text=True,
                          timeout=60, env={**base, **(env or {})})


def test_check_config_command(tmp_path: Path) -> None:
    good = tmp_path / "routing.toml"
    good.write_text('always = ["console:default"]\n\n[severity]\n1 = ["webhook:ops", "slack:oncall"]\n\n'
                    '[destinations."webhook:ops"]\nurl_env = "OPS_URL"\n')
    ok = tocsin("check-config", str(good))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == (f"{good}: ok: 3 receivers (console:default, slack:oncall, webhook:ops), "
                         "2 routes (1 by severity, 0 by type, always)\n")

    bad = tmp_path / "bad.toml"
    bad.write_text('[severity]\n1 = ["webhook:ops"]\n4 = []\n\n[receivers."webhook:ops"]\nmax_age_s = "2d"\n')
    no = tocsin("check-config", env={"TOCSIN_ROUTING_FILE": str(bad)})  # the file the worker would load
    assert no.returncode == 1
    assert no.stderr.splitlines() == [
        f"{bad}:3: severity.4: not 1, 2 or 3",
        f"{bad}:6: receivers.webhook:ops.max_age_s: seconds, a number > 0 and <= 2592000 (30 days)"]

    syntax = tmp_path / "syntax.toml"
    syntax.write_text('always = ["console:default"\n')
    no = tocsin("check-config", str(syntax))
    assert (no.returncode, no.stderr) == (1, f"{syntax}:1:28: Unclosed array (at the end of the file)\n")

    no = tocsin("check-config", str(tmp_path / "missing.toml"))
    assert (no.returncode, no.stderr) == (1, f"{tmp_path / 'missing.toml'}: no such file\n")

    builtin = tocsin("check-config")
    assert builtin.returncode == 0 and builtin.stdout.startswith(f"{default_policy_path()}: ok: 6 receivers")

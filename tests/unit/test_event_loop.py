"""TOCSIN_EVENT_LOOP: the worker's event loop (cli/main.use_event_loop)."""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Iterator
from typing import Any

import pytest
import typer
import uvloop

from tocsin.cli.main import use_event_loop
from tocsin.core.settings import Settings


@pytest.fixture(autouse=True)
def policy() -> Iterator[None]:
    yield
    asyncio.set_event_loop_policy(None)


def loop_type() -> type:
    loop = asyncio.new_event_loop()
    try:
        return type(loop)
    finally:
        loop.close()


@pytest.mark.parametrize(("choice", "named", "kind"), [
    ("auto", "uvloop", uvloop.Loop),
    ("uvloop", "uvloop", uvloop.Loop),
    ("asyncio", "asyncio", asyncio.SelectorEventLoop),
])
def test_the_loop_chosen_is_the_loop_made(choice: str, named: str, kind: type) -> None:
    assert use_event_loop(choice) == named
    assert issubclass(loop_type(), kind)


@pytest.fixture
def no_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    real = builtins.__import__

    def imp(name: str, *a: Any, **kw: Any) -> Any:
        if name == "uvloop":
            raise ImportError("no uvloop here")
        return real(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", imp)


def test_auto_without_uvloop_is_asyncios(no_uvloop: None) -> None:
    assert use_event_loop("auto") == "asyncio"
    assert not issubclass(loop_type(), uvloop.Loop)


def test_uvloop_asked_by_name_without_it_stops_with_the_reason(
        no_uvloop: None, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit):
        use_event_loop("uvloop")
    assert "TOCSIN_EVENT_LOOP=uvloop, but uvloop is not installed" in capsys.readouterr().err


def test_the_setting_defaults_to_auto_and_names_its_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TOCSIN_EVENT_LOOP", raising=False)
    assert Settings().event_loop == "auto"
    monkeypatch.setenv("TOCSIN_EVENT_LOOP", "trio")
    with pytest.raises(ValueError, match="event_loop"):
        Settings()

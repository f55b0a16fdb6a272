"""``TOCSIN_RECORD_STORE_WRAPPER``: the function the record agent hands its store to (the
integration tests' ``FaultyStore``), imported at start, a bad name failing with the setting's
name; and the ``FaultyStore`` itself."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tocsin.agents.record import store_wrapper
from tocsin.core.settings import load_settings
from tocsin.errors import ConfigError

from ...support import faulty_store
from ...support.faulty_store import NO_SUCH_TABLE, FaultyStore, faulty_env


class Refusing:
    """A store that refuses inserts into the table that does not exist, as ClickHouse does."""

    def __init__(self) -> None:
        self.written: list[str] = []

    def insert(self, table: str, rows: Any, dedup_token: str | None = None) -> int:
        return self._write(table)

    def insert_json(self, table: str, messages: Any, dedup_token: str | None = None) -> int:
        return self._write(table)

    def _write(self, table: str) -> int:
        if table == NO_SUCH_TABLE:
            raise RuntimeError(f"Code: 60. Unknown table {table}")
        self.written.append(table)
        return 1

    def ping(self) -> bool:
        return True


def test_unset_is_no_wrapper() -> None:
    assert store_wrapper(load_settings()) is None


def test_the_named_function_is_imported() -> None:
    wrap = store_wrapper(load_settings(record_store_wrapper="tests.support.faulty_store:from_env"))
    assert wrap is faulty_store.from_env


@pytest.mark.parametrize(("value", "says"), [
    ("tests.support.no_such_module:wrap", "cannot import"),
    ("tests.support.faulty_store:no_such_function", "cannot import"),
    ("tests.support.faulty_store:ROOT", "is not callable"),
])
def test_a_bad_name_fails_at_start_with_the_setting(value: str, says: str) -> None:
    with pytest.raises(ConfigError) as info:
        store_wrapper(load_settings(record_store_wrapper=value))
    assert info.value.setting == "TOCSIN_RECORD_STORE_WRAPPER" and says in str(info.value)


@pytest.mark.parametrize("value", ["module", "module:", ":function", "a b:c", "module:f.g"])
def test_a_malformed_name_is_refused_by_the_settings(value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(record_store_wrapper=value)
    assert info.value.setting == "TOCSIN_RECORD_STORE_WRAPPER"


def test_the_first_n_inserts_fail_then_all_go_through() -> None:
    real = Refusing()
    store = FaultyStore(real, 2)
    for _ in range(2):
        with pytest.raises(RuntimeError, match="no_such_table_injected_fault"):
            store.insert("alerts", [{}])
    assert store.insert("alerts", [{}]) == 1 and store.insert_json("alerts_json", [b"{}"]) == 1
    assert real.written == ["alerts", "alerts_json"] and store.ping()  # the rest is the real store's


def test_every_insert_fails_while_the_outage_file_exists(tmp_path: Path) -> None:
    outage = tmp_path / "down"
    outage.touch()
    store = FaultyStore(Refusing(), 0, outage)
    with pytest.raises(RuntimeError):
        store.insert_json("alerts_json", [b"{}"])
    outage.unlink()
    assert store.insert_json("alerts_json", [b"{}"]) == 1


def test_faulty_env_names_the_wrapper_and_puts_the_checkout_on_the_path(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = faulty_env({"PYTHONPATH": "/elsewhere"}, faults=3, outage=tmp_path / "down")
    assert env["PYTHONPATH"].split(os.pathsep) == [str(faulty_store.ROOT), "/elsewhere"]
    assert (faulty_store.ROOT / "tests" / "support" / "faulty_store.py").is_file()
    for name in ("TOCSIN_RECORD_STORE_WRAPPER", "TOCSIN_TEST_INSERT_FAULTS", "TOCSIN_TEST_OUTAGE_FILE"):
        monkeypatch.setenv(name, env[name])
    wrap = store_wrapper(load_settings())
    assert wrap is not None
    store = wrap(Refusing())  # type: ignore[arg-type]
    assert isinstance(store, FaultyStore) and store.remaining == 3 and store.outage == tmp_path / "down"

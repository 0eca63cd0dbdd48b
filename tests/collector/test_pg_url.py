"""collector.store.pg.url: recognising, redacting and taking the store's options out of postgresql:// URLs."""

from __future__ import annotations

import pytest

from collector.store.pg.url import (
    PgOptions,
    check,
    database_of,
    is_pg_url,
    redact_url,
    split_options,
    with_database,
)
from hushmetric.errors import ConfigError


def test_recognises_both_schemes_only() -> None:
    assert is_pg_url("postgresql://h/db")
    assert is_pg_url("postgres://h/db")
    assert not is_pg_url("./hushmetric.db")
    assert not is_pg_url("sqlite:///x.db")


def test_passwords_never_appear_in_messages() -> None:
    assert redact_url("postgresql://u:pw@h:5/db?x=1") == "postgresql://u:***@h:5/db?x=1"
    assert redact_url("postgresql://u@h/db") == "postgresql://u@h/db"


def test_store_options_are_taken_out_and_the_rest_kept() -> None:
    url, options = split_options(
        "postgresql://u@h/db?sslmode=disable&pool_min=2&pool_max=20&statement_timeout=500ms&connect_timeout=3s"
    )
    assert url == "postgresql://u@h/db?sslmode=disable"
    assert options == PgOptions(min_size=2, max_size=20, statement_timeout=0.5, connect_timeout=3.0)
    assert split_options("postgresql://u@h/db") == ("postgresql://u@h/db", PgOptions())
    assert split_options("postgresql://h/db?statement_timeout=2m")[1].statement_timeout == 120.0
    assert split_options("postgresql://h/db?statement_timeout=1.5")[1].statement_timeout == 1.5


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("pool_max=many", "not a whole number"),
        ("statement_timeout=soon", "not a duration"),
        ("connect_timeout=0", "must be positive"),
    ],
)
def test_bad_options_name_the_parameter(query: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        split_options(f"postgresql://u:secret@h/db?{query}")
    assert "secret" not in str(err.value)


@pytest.mark.parametrize(("low", "high"), [(3, 2), (0, 0), (-1, 4)])
def test_pool_bounds_are_checked(low: int, high: int) -> None:
    with pytest.raises(ConfigError, match="pool size"):
        check(PgOptions(min_size=low, max_size=high), "postgresql://h/db")


def test_database_names() -> None:
    assert database_of("postgresql://u@h:5432/hush%20db?x=1") == "hush db"
    assert (
        with_database("postgresql://u:p@h:5432/hush?x=1", "postgres")
        == "postgresql://u:p@h:5432/postgres?x=1"
    )

"""The typed environment readers behind the settings."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from gateway_project.env import env_bool, env_int, env_list, env_str, env_url


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("true", True),
        ("YES", True),
        ("1", True),
        ("on", True),
        ("false", False),
        ("no", False),
        ("0", False),
        ("Off", False),
    ],
)
def test_env_bool_reads_the_usual_spellings(raw, expected):
    assert env_bool("FLAG", not expected, environ={"FLAG": raw}) is expected


def test_env_bool_uses_the_default_when_unset_or_blank():
    assert env_bool("FLAG", True, environ={}) is True
    assert env_bool("FLAG", False, environ={"FLAG": "  "}) is False


def test_env_bool_fails_loudly_on_anything_else():
    with pytest.raises(ImproperlyConfigured, match="FLAG must be true or false"):
        env_bool("FLAG", False, environ={"FLAG": "maybe"})


def test_env_int_reads_and_bounds_numbers():
    assert env_int("PORT", 8000, environ={"PORT": "9000"}) == 9000
    assert env_int("PORT", 8000, environ={}) == 8000
    with pytest.raises(ImproperlyConfigured, match="PORT must be a whole number"):
        env_int("PORT", 8000, environ={"PORT": "eighty"})
    with pytest.raises(ImproperlyConfigured, match="PORT must be at most 65535"):
        env_int("PORT", 8000, maximum=65535, environ={"PORT": "70000"})
    with pytest.raises(ImproperlyConfigured, match="PORT must be at least 1"):
        env_int("PORT", 8000, minimum=1, environ={"PORT": "0"})


def test_env_list_splits_on_commas_and_drops_blanks():
    assert env_list("HOSTS", environ={"HOSTS": "a.example, b.example,,"}) == [
        "a.example",
        "b.example",
    ]
    assert env_list("HOSTS", ["x"], environ={}) == ["x"]


def test_env_str_strips_and_defaults():
    assert env_str("NAME", "d", environ={"NAME": "  gw  "}) == "gw"
    assert env_str("NAME", "d", environ={}) == "d"


def test_env_url_checks_the_scheme_without_echoing_the_value():
    assert (
        env_url(
            "DATABASE_URL", schemes=("postgres",), environ={"DATABASE_URL": "postgres://u:p@db/x"}
        )
        == "postgres://u:p@db/x"
    )
    with pytest.raises(ImproperlyConfigured) as error:
        env_url(
            "DATABASE_URL",
            schemes=("postgres",),
            environ={"DATABASE_URL": "mysql://u:hunter2@db/x"},
        )
    assert "DATABASE_URL must be a postgres:// URL" in str(error.value)
    assert "hunter2" not in str(error.value)
    with pytest.raises(ImproperlyConfigured):
        env_url("REDIS_URL", schemes=("redis",), environ={"REDIS_URL": "redis://"})

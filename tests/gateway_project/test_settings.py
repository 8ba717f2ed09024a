"""Settings as a whole: embedded defaults, service switches and the production guard.

Each case imports the settings in a fresh interpreter with a controlled environment,
as a deployment would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[2]
PROBE = (
    "import json, gateway_project.settings as s; "
    "db = s.DATABASES['default']; "
    "print(json.dumps({'db': db['ENGINE'], 'db_name': str(db['NAME']), "
    "'cache': s.CACHES['default']['BACKEND'], 'layer': s.CHANNEL_LAYERS['default']['BACKEND'], "
    "'broker': s.CELERY_BROKER_URL, 'keys': len(s.GATEWAY_ENCRYPTION_KEYS)}))"
)
GOOD_SECRET = "x7Gq2-" * 10


def load(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "DATABASE_", "REDIS_"))
    }
    clean.pop("DJANGO_SETTINGS_MODULE", None)
    return subprocess.run(
        [sys.executable, "-c", PROBE],
        env={**clean, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_with_no_variables_it_runs_embedded_and_creates_its_data_folder(tmp_path):
    data = tmp_path / "data"
    result = load({"GATEWAY_DATA_DIR": str(data)})

    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["db"] == "django.db.backends.sqlite3"
    assert found["db_name"] == str(data / "gateway.sqlite3")
    assert found["cache"].endswith("LocMemCache")
    assert found["layer"] == "channels.layers.InMemoryChannelLayer"
    assert found["broker"] == "filesystem://"
    assert (data / "secret_key").stat().st_mode & 0o777 == 0o600
    assert (data / "encryption_key").exists()
    # The generated secrets are kept: a second start reads the same ones.
    first_key = (data / "encryption_key").read_text()
    assert load({"GATEWAY_DATA_DIR": str(data)}).returncode == 0
    assert (data / "encryption_key").read_text() == first_key


def test_database_and_redis_urls_switch_to_postgres_and_redis(tmp_path):
    result = load(
        {
            "GATEWAY_DATA_DIR": str(tmp_path),
            "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/gateway",
            "REDIS_URL": "redis://127.0.0.1:6379/0",
        }
    )

    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["db"] == "django.db.backends.postgresql"
    assert found["cache"] == "django.core.cache.backends.redis.RedisCache"
    assert found["layer"] == "channels_redis.core.RedisChannelLayer"
    assert found["broker"] == "redis://127.0.0.1:6379/0"


def test_production_refuses_to_start_without_each_required_setting(tmp_path):
    full = {
        "GATEWAY_DATA_DIR": str(tmp_path),
        "GATEWAY_PRODUCTION": "true",
        "GATEWAY_SECRET_KEY": GOOD_SECRET,
        "GATEWAY_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "GATEWAY_ALLOWED_HOSTS": "gateway.example.com",
        "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/gateway",
        "REDIS_URL": "redis://127.0.0.1:6379/0",
    }
    assert load(full).returncode == 0, load(full).stderr

    expectations = {
        "GATEWAY_SECRET_KEY": "GATEWAY_SECRET_KEY must be set",
        "GATEWAY_ENCRYPTION_KEYS": "GATEWAY_ENCRYPTION_KEYS must be set",
        "GATEWAY_ALLOWED_HOSTS": "GATEWAY_ALLOWED_HOSTS must be set",
        "DATABASE_URL": "DATABASE_URL (postgres://...) must be set",
        "REDIS_URL": "REDIS_URL (redis://...) must be set",
    }
    for missing, message in expectations.items():
        env = {k: v for k, v in full.items() if k != missing}
        result = load(env)
        assert result.returncode != 0, missing
        assert message in result.stderr, (missing, result.stderr[-500:])


def test_production_refuses_a_weak_secret_key(tmp_path):
    result = load(
        {
            "GATEWAY_DATA_DIR": str(tmp_path),
            "GATEWAY_PRODUCTION": "true",
            "GATEWAY_SECRET_KEY": "django-insecure-changeme",
        }
    )

    assert result.returncode != 0
    assert "GATEWAY_SECRET_KEY must be set to a random value" in result.stderr


def test_bad_values_fail_loudly(tmp_path):
    cases = {
        "GATEWAY_DEBUG": ("perhaps", "GATEWAY_DEBUG must be true or false"),
        "PORT": ("http", "PORT must be a whole number"),
        "GATEWAY_ENCRYPTION_KEYS": (
            "not-a-key",
            "GATEWAY_ENCRYPTION_KEYS item 1 is not a Fernet key",
        ),
        "DATABASE_URL": ("mysql://db/x", "DATABASE_URL must be a postgres:// or postgresql:// URL"),
    }
    for name, (value, message) in cases.items():
        result = load({"GATEWAY_DATA_DIR": str(tmp_path), name: value})
        assert result.returncode != 0, name
        assert message in result.stderr, (name, result.stderr[-400:])


STATEMENT_PROBE = (
    "import json, gateway_project.settings as s; "
    "print(json.dumps(s.DATABASES['default'].get('OPTIONS', {})))"
)


def _options(env: dict[str, str]) -> dict:
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "DATABASE_", "REDIS_"))
    }
    clean.pop("DJANGO_SETTINGS_MODULE", None)
    result = subprocess.run(
        [sys.executable, "-c", STATEMENT_PROBE],
        env={**clean, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_it_bounds_every_postgres_statement_by_a_timeout_unless_told_not_to(tmp_path):
    base = {
        "GATEWAY_DATA_DIR": str(tmp_path),
        "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/gateway?options=-c%20search_path%3Dx",
    }
    assert _options(base)["options"] == "-c search_path=x -c statement_timeout=30000"
    assert _options({**base, "GATEWAY_DB_STATEMENT_TIMEOUT_MS": "1500"})["options"].endswith(
        "statement_timeout=1500"
    )
    assert "options" not in _options(
        {**base, "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/gateway",
         "GATEWAY_DB_STATEMENT_TIMEOUT_MS": "0"}
    )  # fmt: skip
    assert _options({"GATEWAY_DATA_DIR": str(tmp_path)}).get("options") is None  # SQLite


def test_postgres_connections_come_from_a_bounded_pool_unless_it_is_turned_off(tmp_path):
    base = {
        "GATEWAY_DATA_DIR": str(tmp_path),
        "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/gateway",
    }
    assert _options(base)["pool"]["max_size"] == 16
    sized = _options({**base, "GATEWAY_DB_POOL_MAX_SIZE": "4", "GATEWAY_DB_POOL_TIMEOUT_S": "3"})
    assert (sized["pool"]["max_size"], sized["pool"]["timeout"]) == (4, 3)
    assert "pool" not in _options({**base, "GATEWAY_DB_POOL_MAX_SIZE": "0"})

"""Settings of the MCP gateway, read from environment variables.

With no variable set the gateway runs on embedded defaults: SQLite, the
in-memory channel layer, a local-memory cache and a file-based Celery broker,
all kept in a data folder it creates (``./data``, or ``GATEWAY_DATA_DIR``).
``DATABASE_URL`` switches to Postgres and ``REDIS_URL`` to Redis for the channel
layer, the Celery broker and the cache. ``GATEWAY_PRODUCTION=true`` refuses to
start without a real secret key, encryption keys, allowed hosts, Postgres and Redis.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dj_database_url
import django_stubs_ext
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

from gateway_project.client_address import trusted_proxy_networks
from gateway_project.env import env_bool, env_int, env_list, env_str, env_url

# Lets generic classes such as ModelAdmin[Model] be subscripted at run time.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent

PRODUCTION = env_bool("GATEWAY_PRODUCTION", False)
DEBUG = env_bool("GATEWAY_DEBUG", False)
if PRODUCTION and DEBUG:
    raise ImproperlyConfigured("GATEWAY_DEBUG must be off when GATEWAY_PRODUCTION is on")

DATA_DIR = Path(env_str("GATEWAY_DATA_DIR", str(BASE_DIR / "data"))).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)


def _generated_secret(filename: str, make: Any) -> str:
    """Read a secret kept in the data folder, creating it (mode 600) on first use."""
    path = DATA_DIR / filename
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(make())
    return path.read_text().strip()


# --- secrets ---------------------------------------------------------------

SECRET_KEY = env_str("GATEWAY_SECRET_KEY")
if PRODUCTION:
    if len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5 or "insecure" in SECRET_KEY:
        raise ImproperlyConfigured(
            "GATEWAY_SECRET_KEY must be set to a random value of at least 50 characters "
            "in production"
        )
elif not SECRET_KEY:
    SECRET_KEY = _generated_secret("secret_key", lambda: secrets.token_urlsafe(64))

# Fernet keys for secrets at rest. The first key encrypts; all of them decrypt,
# so a key is rotated by putting a new one first and running
# `manage.py rotate_encryption_keys` before dropping the old one.
GATEWAY_ENCRYPTION_KEYS = env_list("GATEWAY_ENCRYPTION_KEYS")
if not GATEWAY_ENCRYPTION_KEYS:
    if PRODUCTION:
        raise ImproperlyConfigured("GATEWAY_ENCRYPTION_KEYS must be set in production")
    GATEWAY_ENCRYPTION_KEYS = [
        _generated_secret("encryption_key", lambda: Fernet.generate_key().decode())
    ]
for _index, _key in enumerate(GATEWAY_ENCRYPTION_KEYS):
    try:
        Fernet(_key)
    except ValueError:
        raise ImproperlyConfigured(
            f"GATEWAY_ENCRYPTION_KEYS item {_index + 1} is not a Fernet key "
            "(32 url-safe base64-encoded bytes)"
        ) from None

# --- hosts and URLs ----------------------------------------------------------

PORT = env_int("PORT", 8000, minimum=1, maximum=65535)
GATEWAY_PUBLIC_URL = env_url(
    "GATEWAY_PUBLIC_URL", f"http://127.0.0.1:{PORT}", schemes=("http", "https")
).rstrip("/")
_public = urlsplit(GATEWAY_PUBLIC_URL)

ALLOWED_HOSTS = env_list("GATEWAY_ALLOWED_HOSTS")
if not ALLOWED_HOSTS:
    if PRODUCTION:
        raise ImproperlyConfigured("GATEWAY_ALLOWED_HOSTS must be set in production")
    ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]", "testserver", _public.hostname or ""]

CSRF_TRUSTED_ORIGINS = env_list(
    "GATEWAY_CSRF_TRUSTED_ORIGINS", [f"{_public.scheme}://{_public.netloc}"]
)
# Proxies whose X-Forwarded-For is believed (addresses or CIDR ranges, none by
# default): without one, rate limits and records use the TCP peer's address.
GATEWAY_TRUSTED_PROXIES = env_list("GATEWAY_TRUSTED_PROXIES")
try:
    trusted_proxy_networks(GATEWAY_TRUSTED_PROXIES, name="GATEWAY_TRUSTED_PROXIES")
except ValueError as _error:
    raise ImproperlyConfigured(str(_error)) from None
if env_bool("GATEWAY_TRUST_X_FORWARDED_PROTO", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
if _public.scheme == "https":
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

# --- services ------------------------------------------------------------

DATABASE_URL = env_url("DATABASE_URL", schemes=("postgres", "postgresql"))
REDIS_URL = env_url("REDIS_URL", schemes=("redis", "rediss"))
if PRODUCTION and not DATABASE_URL:
    raise ImproperlyConfigured("DATABASE_URL (postgres://...) must be set in production")
if PRODUCTION and not REDIS_URL:
    raise ImproperlyConfigured("REDIS_URL (redis://...) must be set in production")

# No query may run longer than this on PostgreSQL (0: no limit): a request whose
# query would run for ever is cancelled and answered, and gives its connection back.
# Long maintenance (migrations on a large table) may need it raised or set to 0.
GATEWAY_DB_STATEMENT_TIMEOUT_MS = env_int(
    "GATEWAY_DB_STATEMENT_TIMEOUT_MS", 30_000, minimum=0, maximum=86_400_000
)
# Connections of one process to PostgreSQL, at most (0: no pool, one persistent
# connection per thread as Django does by default). Under ASGI every request runs
# in a thread of its own, so without a pool a burst of requests is a burst of
# connections that linger until garbage-collected; with it a request borrows one
# and gives it back when it ends, and waits at most GATEWAY_DB_POOL_TIMEOUT_S.
GATEWAY_DB_POOL_MAX_SIZE = env_int("GATEWAY_DB_POOL_MAX_SIZE", 16, minimum=0, maximum=1000)
GATEWAY_DB_POOL_TIMEOUT_S = env_int("GATEWAY_DB_POOL_TIMEOUT_S", 10, minimum=1, maximum=600)
if DATABASE_URL:
    DATABASES = {
        "default": dj_database_url.parse(
            DATABASE_URL, conn_max_age=0 if GATEWAY_DB_POOL_MAX_SIZE else 60
        )
    }
    _options = DATABASES["default"].setdefault("OPTIONS", {})
    if GATEWAY_DB_STATEMENT_TIMEOUT_MS:
        _options["options"] = (
            f"{_options.get('options', '')} -c statement_timeout={GATEWAY_DB_STATEMENT_TIMEOUT_MS}"
        ).strip()
    if GATEWAY_DB_POOL_MAX_SIZE:
        _options["pool"] = {
            "min_size": 0,
            "max_size": GATEWAY_DB_POOL_MAX_SIZE,
            "timeout": GATEWAY_DB_POOL_TIMEOUT_S,
            # A connection idle this long is closed: an idle process holds none.
            "max_idle": 60,
        }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": env_str("GATEWAY_SQLITE_PATH", str(DATA_DIR / "gateway.sqlite3")),
            # WAL lets the web server, the worker and beat share the file.
            "OPTIONS": {
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
            },
            # A file, not memory, so a live daphne started by the tests shares it.
            "TEST": {"NAME": str(DATA_DIR / "test-gateway.sqlite3")},
        }
    }

if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env_str("GATEWAY_CACHE_PREFIX", "gateway"),
        }
    }
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # No socket timeout: a listener blocks on BZPOPMIN longer than redis-py 8's
            # default 5 s, which would otherwise end every idle receive in an error.
            "CONFIG": {
                "hosts": [{"address": REDIS_URL, "socket_timeout": None}],
                "prefix": "gateway:channels",
            },
        }
    }
    CELERY_BROKER_URL = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, Any] = {}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    # Kombu's file transport: the worker and beat share a folder, no server needed.
    _broker_dir = DATA_DIR / "broker"
    (_broker_dir / "queue").mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        # Kombu's default is a "control" folder in the working directory.
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }

CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")
CELERY_TASK_ALWAYS_EAGER = env_bool("GATEWAY_CELERY_EAGER", False)

# --- Django ----------------------------------------------------------------

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "oauth2_provider",
    "corsheaders",
    "channels",
    "oauth",
    "connections",
    "endpoints",
    "audit",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "oauth.middleware.OrganizationMiddleware",
    "gateway_project.middleware.StrictJsonBodyMiddleware",
    "gateway_project.middleware.ApiMethodNotAllowedMiddleware",
    "gateway_project.middleware.ApiErrorMiddleware",
]

ROOT_URLCONF = "gateway_project.urls"
ASGI_APPLICATION = "gateway_project.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "oauth.context_processors.organization",
            ],
        },
    },
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SESSION_COOKIE_HTTPONLY = True

# --- REST API ---------------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "oauth.authentication.ApiTokenAuthentication",
        "oauth.authentication.OrganizationSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["oauth.permissions.IsOrganizationMember"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["gateway_project.api_parsers.StrictJSONParser"],
    "DEFAULT_THROTTLE_CLASSES": [
        "gateway_project.throttling.AnonRateThrottle",
        "gateway_project.throttling.UserRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env_str("GATEWAY_API_ANON_RATE", "60/minute"),
        "user": env_str("GATEWAY_API_USER_RATE", "1200/minute"),
    },
    "EXCEPTION_HANDLER": "gateway_project.api_errors.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "MCP Gateway API",
    "DESCRIPTION": (
        "Manage the upstream MCP servers (connections) of an organisation. "
        "Authenticate with `Authorization: Bearer <API token>`."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "gateway_project.api_schema.schema_postprocess",
    ],
}

# --- OAuth for AI clients ------------------------------------------------------
# The token models are swapped for the gateway's own before the first migration,
# so later OAuth work (grants with an access duration, resource binding) extends
# them with ordinary migrations.

OAUTH2_PROVIDER_APPLICATION_MODEL = "oauth.OAuthApplication"
OAUTH2_PROVIDER_ACCESS_TOKEN_MODEL = "oauth.OAuthAccessToken"
OAUTH2_PROVIDER_REFRESH_TOKEN_MODEL = "oauth.OAuthRefreshToken"
OAUTH2_PROVIDER_GRANT_MODEL = "oauth.OAuthGrant"
OAUTH2_PROVIDER_ID_TOKEN_MODEL = "oauth.OAuthIDToken"
# The gateway is the authorization server: one issuer (the public URL's root),
# PKCE S256 only, RFC 9207 ``iss`` in the response, open dynamic registration
# (rate-limited per address in oauth.views) and client ID metadata documents,
# refresh tokens rotated with reuse detection. Access tokens live an hour at
# most; an authorization's chosen duration caps everything issued under it.
GATEWAY_OAUTH_ACCESS_TOKEN_SECONDS = env_int("GATEWAY_OAUTH_ACCESS_TOKEN_SECONDS", 3600, minimum=60)
GATEWAY_OAUTH_REGISTRATIONS_PER_HOUR = env_int(
    "GATEWAY_OAUTH_REGISTRATIONS_PER_HOUR", 30, minimum=1
)
# Registrations never used for this long are deleted by a periodic task.
GATEWAY_OAUTH_UNUSED_CLIENT_DAYS = env_int("GATEWAY_OAUTH_UNUSED_CLIENT_DAYS", 7, minimum=1)
# Browser-based MCP clients (the Inspector) call discovery, registration and the
# token endpoint from their own origin; none of these use cookies.
CORS_URLS_REGEX = r"^/(\.well-known/.*|o/(token|register|revoke_token)/.*|token|register)$"
CORS_ALLOW_ALL_ORIGINS = True
CORS_ALLOW_CREDENTIALS = False
OAUTH2_PROVIDER = {
    "SCOPES": {"mcp": "Use MCP tools through the gateway"},
    "DEFAULT_SCOPES": ["mcp"],
    "OAUTH2_VALIDATOR_CLASS": "oauth.validators.GatewayOAuth2Validator",
    "OIDC_ISS_ENDPOINT": GATEWAY_PUBLIC_URL,
    "PKCE_REQUIRED": True,
    "COMPLIANT_BCP_RFC9700_PKCE_METHOD": True,
    "COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS": True,
    "COMPLIANT_BCP_RFC9700_TOKEN_STORAGE": True,  # tokens stored only as SHA-256
    "COMPLIANT_BCP_RFC9700_IMPLICIT_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PASSWORD_GRANT": True,
    "OAUTH2_GRANT_TYPES_SUPPORTED": ["authorization_code", "refresh_token"],
    "OAUTH2_TOKEN_ENDPOINT_AUTH_METHODS_SUPPORTED": [
        "none",
        "client_secret_basic",
        "client_secret_post",
    ],
    "ACCESS_TOKEN_EXPIRE_SECONDS": GATEWAY_OAUTH_ACCESS_TOKEN_SECONDS,
    # Prefixed tokens (gwto_, gwtr_), so the activity log can recognise and redact them.
    "ACCESS_TOKEN_GENERATOR": "gateway_project.token_shapes.oauth_access_token_generate",
    "REFRESH_TOKEN_GENERATOR": "gateway_project.token_shapes.oauth_refresh_token_generate",
    "AUTHORIZATION_CODE_EXPIRE_SECONDS": 120,
    "ROTATE_REFRESH_TOKEN": True,
    # Longer than any access duration: the authorization's own expiry is what counts.
    "REFRESH_TOKEN_EXPIRE_SECONDS": 91 * 86400,
    "REFRESH_TOKEN_REUSE_PROTECTION": True,
    "REFRESH_TOKEN_GRACE_PERIOD_SECONDS": 0,
    "REQUEST_APPROVAL_PROMPT": "force",
    "ALLOW_LOCALHOST_LOOPBACK": True,
    # Desktop clients come back on their own schemes (cursor://, vscode://, ...).
    "ALLOWED_REDIRECT_URI_SCHEMES": env_list(
        "GATEWAY_OAUTH_REDIRECT_SCHEMES",
        ["https", "http", "cursor", "vscode", "vscode-insiders", "windsurf", "claude"],
    ),
    "DCR_ENABLED": True,
    "DCR_REGISTRATION_PERMISSION_CLASSES": ("oauth2_provider.dcr.AllowAllDCRPermission",),
    "CIMD_ENABLED": True,
    "OAUTH2_PROTECTED_RESOURCE_BEARER_METHODS_SUPPORTED": ["header"],
}

# --- gateway ---------------------------------------------------------------

GATEWAY_ADMIN_USERNAME = env_str("GATEWAY_ADMIN_USERNAME", "admin")
GATEWAY_ADMIN_PASSWORD = env_str("GATEWAY_ADMIN_PASSWORD")
GATEWAY_ORGANIZATION_NAME = env_str("GATEWAY_ORGANIZATION_NAME", "My organisation")
GATEWAY_DEMO = env_bool("GATEWAY_DEMO", not PRODUCTION)
GATEWAY_DEMO_PORT = env_int("GATEWAY_DEMO_PORT", 8765, minimum=1, maximum=65535)
GATEWAY_ALLOW_PRIVATE_UPSTREAMS = env_bool("GATEWAY_ALLOW_PRIVATE_UPSTREAMS", not PRODUCTION)
GATEWAY_ALLOW_STDIO = env_bool("GATEWAY_ALLOW_STDIO", False)
GATEWAY_HEALTH_CHECK_INTERVAL = env_int("GATEWAY_HEALTH_CHECK_INTERVAL", 60, minimum=5)
# The MCP transport: browser origins allowed besides GATEWAY_PUBLIC_URL's own, the
# largest request body, and the domain under which each endpoint is also served at
# https://<slug>.<domain>/mcp (for clients that need the path to be exactly /mcp).
GATEWAY_ALLOWED_ORIGINS = env_list("GATEWAY_ALLOWED_ORIGINS")
GATEWAY_MCP_MAX_BODY_BYTES = env_int("GATEWAY_MCP_MAX_BODY_BYTES", 4 * 1024 * 1024, minimum=1024)
# Every other route (the REST API, forms, OAuth): refused with 413 before it is buffered
# (gateway_project/body_limit.py). The largest real bodies (a connection with its
# headers, a PATCH enabling every tool of a large catalog) stay far below 1 MiB.
GATEWAY_MAX_BODY_BYTES = env_int("GATEWAY_MAX_BODY_BYTES", 1024 * 1024, minimum=1024)
GATEWAY_ENDPOINT_DOMAIN = env_str("GATEWAY_ENDPOINT_DOMAIN", "").lower().strip(".")
if GATEWAY_ENDPOINT_DOMAIN:
    ALLOWED_HOSTS = [*ALLOWED_HOSTS, f".{GATEWAY_ENDPOINT_DOMAIN}"]
GATEWAY_UPSTREAM_IDLE_SECONDS = env_int("GATEWAY_UPSTREAM_IDLE_SECONDS", 300, minimum=1)
GATEWAY_UPSTREAM_MAX_CONCURRENCY = env_int("GATEWAY_UPSTREAM_MAX_CONCURRENCY", 32, minimum=1)
# Upstream OAuth: access tokens expiring within this many seconds are refreshed by the
# periodic task (every GATEWAY_UPSTREAM_OAUTH_REFRESH_INTERVAL seconds); an unfinished
# sign-in (the redirect to the upstream and back) is kept this long.
GATEWAY_UPSTREAM_OAUTH_REFRESH_MARGIN = env_int(
    "GATEWAY_UPSTREAM_OAUTH_REFRESH_MARGIN", 300, minimum=10
)
GATEWAY_UPSTREAM_OAUTH_REFRESH_INTERVAL = env_int(
    "GATEWAY_UPSTREAM_OAUTH_REFRESH_INTERVAL", 60, minimum=5
)
GATEWAY_UPSTREAM_OAUTH_FLOW_SECONDS = env_int(
    "GATEWAY_UPSTREAM_OAUTH_FLOW_SECONDS", 600, minimum=60, maximum=3600
)
# The activity log (audit/): recorded off the hot path through a per-process
# write-ahead spool, flushed to the database in batches by size and time.
GATEWAY_AUDIT_ENABLED = env_bool("GATEWAY_AUDIT_ENABLED", True)
GATEWAY_AUDIT_MAX_PAYLOAD = env_int("GATEWAY_AUDIT_MAX_PAYLOAD", 65536, minimum=256)
GATEWAY_AUDIT_BATCH_SIZE = env_int("GATEWAY_AUDIT_BATCH_SIZE", 500, minimum=1, maximum=10000)
GATEWAY_AUDIT_FLUSH_INTERVAL_MS = env_int(
    "GATEWAY_AUDIT_FLUSH_INTERVAL_MS", 1000, minimum=10, maximum=3_600_000
)
GATEWAY_AUDIT_SPOOL_DIR = env_str("GATEWAY_AUDIT_SPOOL_DIR", str(DATA_DIR / "audit-spool"))

CELERY_BEAT_SCHEDULE: dict[str, Any] = {
    "connections-check-due": {
        "task": "connections.tasks.connections_check_due",
        "schedule": float(GATEWAY_HEALTH_CHECK_INTERVAL),
        # A run that waits longer than one interval is dropped: the next one replaces it.
        "options": {"expires": float(GATEWAY_HEALTH_CHECK_INTERVAL)},
    },
    "upstream-credentials-refresh": {
        "task": "connections.tasks.upstream_credentials_refresh_due",
        "schedule": float(GATEWAY_UPSTREAM_OAUTH_REFRESH_INTERVAL),
        "options": {"expires": float(GATEWAY_UPSTREAM_OAUTH_REFRESH_INTERVAL)},
    },
    "oauth-housekeeping": {
        "task": "oauth.tasks.oauth_housekeeping",
        "schedule": 3600.0,
        "options": {"expires": 3600.0},
    },
    "audit-spool-replay": {
        "task": "audit.tasks.audit_spool_replay",
        "schedule": 60.0,
        "options": {"expires": 60.0},
    },
    "audit-retention": {
        "task": "audit.tasks.audit_retention",
        "schedule": 3600.0,
        "options": {"expires": 3600.0},
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("GATEWAY_LOG_LEVEL", "INFO").upper()},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
        "httpx2": {"level": "WARNING"},
    },
}

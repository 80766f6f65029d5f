"""Dumont settings: one module, driven by the environment (see dumont/env.py and README)."""

from __future__ import annotations

import math
import os
import secrets
from datetime import timedelta
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from dumont.env import (
    database_from_url,
    env_bool,
    env_decimal,
    env_int,
    env_list,
    env_positive,
    env_seconds,
    env_secret,
    env_str,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("DUMONT_VAR_DIR", str(BASE_DIR / "var")))

# Off unless asked for: `make run` and `make test` set DEBUG=true.
DEBUG = env_bool("DEBUG", False)


def _local_secret(name: str, generate) -> str:
    """Generated once into var/ for local use; never committed, never used with DEBUG off."""
    path = VAR_DIR / name
    if not path.exists():
        # Two processes starting at once (web and worker) must end up with the same secret:
        # write a private file, then link it into place, which fails if the other won.
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        draft = VAR_DIR / f".{name}.{os.getpid()}"
        draft.write_text(generate())
        draft.chmod(0o600)
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return path.read_text().strip()


SECRET_KEY = env_secret("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY (or SECRET_KEY_FILE) is required when DEBUG is off")
    SECRET_KEY = _local_secret("secret_key", lambda: secrets.token_urlsafe(50))

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
SITE_URL = env_str("SITE_URL", "http://127.0.0.1:8000")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_simplejwt",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "django_celery_beat",
    # The layers, bottom up (README "Architecture"); apps.providers is a plain package, no app.
    "apps.instances",
    "apps.agents",
    "apps.races",
    "apps.snapshots",
    "apps.billing",
    "apps.hibernation",
    "apps.standby",
    "apps.web",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "apps.providers.middleware.NoProviderCallsInRequests",
    # Answers agents' heartbeats itself: the middleware below this line never sees them
    # (apps/agents/middleware.py says why).
    "apps.agents.middleware.HeartbeatFastPath",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "dumont.urls"
WSGI_APPLICATION = "dumont.wsgi.application"
ASGI_APPLICATION = "dumont.asgi.application"

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
            ],
        },
    },
]

DATABASES = {
    "default": database_from_url(
        env_str("DATABASE_URL", "sqlite:///var/dumont.sqlite3"), base_dir=BASE_DIR
    )
}
if DATABASES["default"]["ENGINE"].endswith("postgresql"):
    # Statements run five times on a connection are prepared: the heartbeat statement then
    # skips planning (measured 0.4 ms instead of 1.4 ms). Switch off behind a transaction-
    # pooling PgBouncer, which cannot keep prepared statements across transactions.
    DATABASES["default"]["OPTIONS"]["prepare_threshold"] = (
        5 if env_bool("DATABASE_PREPARED_STATEMENTS", True) else None
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "instances:list"
LOGOUT_REDIRECT_URL = "login"

if not DEBUG:
    SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", True)
    CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", True)
# HTTPS only in production (agents included: DUMONT_AGENT_CONTROL_URL is https there). Behind a
# TLS-terminating proxy, name the header it sets: SECURE_PROXY_SSL_HEADER=HTTP_X_FORWARDED_PROTO.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 365 * 86400, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
if env_str("SECURE_PROXY_SSL_HEADER"):
    SECURE_PROXY_SSL_HEADER = (env_str("SECURE_PROXY_SSL_HEADER"), "https")

# --- API --------------------------------------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework_simplejwt.authentication.JWTAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "dumont.errors.api_exception_handler",
    "DEFAULT_PAGINATION_CLASS": "dumont.api.StrictLimitOffsetPagination",
    "PAGE_SIZE": 50,
}

SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(seconds=env_seconds("DUMONT_JWT_ACCESS_SECONDS", 15 * 60)),
    "REFRESH_TOKEN_LIFETIME": timedelta(seconds=env_seconds("DUMONT_JWT_REFRESH_SECONDS", 7 * 86400)),
    "UPDATE_LAST_LOGIN": True,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Dumont API",
    "DESCRIPTION": "Hibernating GPU machines on vast.ai and RunPod: instances, snapshots, savings.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    # Request bodies get components of their own: what is required and non-blank in them shows.
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI served from our own static files, not a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "InstanceStatusEnum": "apps.instances.models.InstanceStatus",
        "AgentStatusEnum": "apps.agents.models.AgentStatus",
        "CommandStatusEnum": "apps.agents.models.CommandStatus",
        "StartStrategyEnum": "apps.instances.models.StartStrategy",
        "RaceStatusEnum": "apps.races.models.RaceStatus",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "dumont.openapi.add_agent_status",
    ],
}

# --- Celery -----------------------------------------------------------------------------------

REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
# Shared by every web worker: login throttling counts there (apps/web/login.py).
CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                      "LOCATION": env_str("CACHE_URL", REDIS_URL), "KEY_PREFIX": "dumont"}}
# Failed logins (API and page together) refused past these counts within the window, with 429.
DUMONT_LOGIN_FAILURES_PER_ACCOUNT = env_int("DUMONT_LOGIN_FAILURES_PER_ACCOUNT", 10, minimum=1)
DUMONT_LOGIN_FAILURES_PER_ADDRESS = env_int("DUMONT_LOGIN_FAILURES_PER_ADDRESS", 50, minimum=1)
DUMONT_LOGIN_FAILURE_WINDOW = env_seconds("DUMONT_LOGIN_FAILURE_WINDOW", 15 * 60)
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = TIME_ZONE
# Tasks by their names (each app's tasks.py), never by module path.
DUMONT_RECONCILE_INTERVAL = env_seconds("DUMONT_RECONCILE_INTERVAL", 30)
# How often the idle rule runs (apps/hibernation/tick.py).
DUMONT_HIBERNATION_TICK = env_seconds("DUMONT_HIBERNATION_TICK", 15)


def _every(task: str, seconds: float) -> dict:
    """A periodic task that expires after one period unrun: after an outage the worker finds one
    of each waiting, not a burst of copies running side by side. `expire_seconds` is how
    django-celery-beat's scheduler reads it, `expires` how Celery's own does. At least 1 s: that
    scheduler counts whole seconds, and below one it would send the task back to back."""
    period = max(math.ceil(seconds), 1)
    return {"task": task, "schedule": float(period), "options": {"expires": period, "expire_seconds": period}}


CELERY_BEAT_SCHEDULE = {
    "agents-mark-silent": _every("agents.mark_silent", 15.0),
    "machines-reconcile": _every("races.reconcile", DUMONT_RECONCILE_INTERVAL),
    "instances-requeue-stalled": _every("instances.requeue_stalled", DUMONT_RECONCILE_INTERVAL),
    "agents-requeue-stalled": _every("agents.requeue_stalled", DUMONT_RECONCILE_INTERVAL),
    "snapshots-requeue-stalled": _every("snapshots.requeue_stalled", DUMONT_RECONCILE_INTERVAL),
    "snapshots-fail-stale": _every("snapshots.fail_stale", 60.0),
    "hibernation-tick": _every("hibernation.tick", DUMONT_HIBERNATION_TICK),
    "snapshots-expire": _every("snapshots.expire", 3600.0),
    "snapshots-grants": _every("snapshots.grants_maintain", env_seconds("DUMONT_SNAPSHOT_GRANTS_INTERVAL", 300)),
    "agent-samples-purge": _every("agents.samples_purge", 3600.0),
    "idempotency-purge": _every("instances.idempotency_purge", 3600.0),
}

# --- Providers --------------------------------------------------------------------------------

DUMONT_PROVIDER = env_str("DUMONT_PROVIDER", "vast")
VAST_ENABLED = env_bool("DUMONT_VAST_ENABLED", True)
VAST_API_URL = env_str("VAST_API_URL", "https://console.vast.ai")
VAST_API_KEY = env_secret("VAST_API_KEY")

# The control plane's SSH identity: machines are created to accept it, and "ready" means a
# real handshake with it. Generated into var/ locally when no key file is given.
DUMONT_SSH_KEY_FILE = Path(env_str("DUMONT_SSH_KEY_FILE", str(VAR_DIR / "ssh" / "id_ed25519")))

# --- Time windows (seconds; tests shrink them) ------------------------------------------------

DUMONT_POLL_INTERVAL = env_seconds("DUMONT_POLL_INTERVAL", 5)
DUMONT_BOOT_TIMEOUT = env_seconds("DUMONT_BOOT_TIMEOUT", 15 * 60)
DUMONT_STOP_TIMEOUT = env_seconds("DUMONT_STOP_TIMEOUT", 5 * 60)
DUMONT_SSH_TIMEOUT = env_seconds("DUMONT_SSH_TIMEOUT", 10)
DUMONT_PROVIDER_RETRY_DELAY = env_seconds("DUMONT_PROVIDER_RETRY_DELAY", 10)
DUMONT_PROVIDER_MAX_ATTEMPTS = env_int("DUMONT_PROVIDER_MAX_ATTEMPTS", 5, minimum=1)
DUMONT_CREATE_MAX_OFFERS = env_int("DUMONT_CREATE_MAX_OFFERS", 3, minimum=1)
DUMONT_IDEMPOTENCY_TTL = env_seconds("DUMONT_IDEMPOTENCY_TTL", 24 * 3600)

# --- Racing several machines (create, wake) -------------------------------------------------------

# What create does for a GPU spec when the request names no strategy: "race" or "single".
DUMONT_START_STRATEGY = env_str("DUMONT_START_STRATEGY", "race")
if DUMONT_START_STRATEGY not in ("race", "single"):
    raise ImproperlyConfigured(f"DUMONT_START_STRATEGY={DUMONT_START_STRATEGY!r} must be race or single")
DUMONT_RACE_BATCH_SIZE = env_int("DUMONT_RACE_BATCH_SIZE", 5, minimum=1)
DUMONT_RACE_ROUNDS = env_int("DUMONT_RACE_ROUNDS", 3, minimum=1)
DUMONT_RACE_ROUND_TIMEOUT = env_seconds("DUMONT_RACE_ROUND_TIMEOUT", 90)
# One provider list call per poll covers every candidate of the race.
DUMONT_RACE_POLL_INTERVAL = env_seconds("DUMONT_RACE_POLL_INTERVAL", 2)
# The worker driving a race renews its lease every poll; past it, the reconciler takes over.
DUMONT_RACE_LEASE = env_seconds("DUMONT_RACE_LEASE", 30)
DUMONT_RACE_SEARCH_LIMIT = env_int("DUMONT_RACE_SEARCH_LIMIT", 50, minimum=1)
DUMONT_RACE_DESTROY_ATTEMPTS = env_int("DUMONT_RACE_DESTROY_ATTEMPTS", 5, minimum=1)
# A Dumont-labelled machine that no live instance or race owns is destroyed once the
# reconciler has seen it this long.
DUMONT_RECONCILE_GRACE = env_seconds("DUMONT_RECONCILE_GRACE", 120)

# --- The agent on each machine ------------------------------------------------------------------

DUMONT_AGENT_ENABLED = env_bool("DUMONT_AGENT_ENABLED", True)
# Where agents reach the control plane (must be reachable from the GPU machines).
DUMONT_AGENT_CONTROL_URL = env_str("DUMONT_AGENT_CONTROL_URL", SITE_URL)
DUMONT_AGENT_INTERVAL = env_seconds("DUMONT_AGENT_INTERVAL", 10)
DUMONT_AGENT_SAMPLES_KEPT = env_int("DUMONT_AGENT_SAMPLES_KEPT", 360, minimum=18)
DUMONT_AGENT_FIRST_HEARTBEAT_TIMEOUT = env_seconds("DUMONT_AGENT_FIRST_HEARTBEAT_TIMEOUT", 120)
DUMONT_AGENT_SILENT_AFTER = env_seconds("DUMONT_AGENT_SILENT_AFTER", 60)
DUMONT_AGENT_INSTALL_TIMEOUT = env_seconds("DUMONT_AGENT_INSTALL_TIMEOUT", 300)
# A destroyed instance's samples are deleted after this.
DUMONT_SAMPLES_KEEP_AFTER_DESTROY = env_seconds("DUMONT_SAMPLES_KEEP_AFTER_DESTROY", 24 * 3600)
# Upload the wheels of the agent's dependencies with it, for machines that cannot reach a package
# index (devcloud machines, locked-down hosts); otherwise the machine's pip fetches them.
DUMONT_AGENT_UPLOAD_DEPENDENCIES = env_bool("DUMONT_AGENT_UPLOAD_DEPENDENCIES", False)

# --- Auto-hibernation and wake ------------------------------------------------------------------

# Idle: every GPU under the threshold for the window and none of the signals showing use
# (ssh_input: a keystroke in a terminal session; jupyter: a busy kernel; cpu: CPU above 50%).
# Each instance can override them (API, page, admin).
DUMONT_IDLE_GPU_THRESHOLD = env_positive("DUMONT_IDLE_GPU_THRESHOLD", 5.0, unit="percent")
DUMONT_IDLE_WINDOW = env_seconds("DUMONT_IDLE_WINDOW", 180)
DUMONT_IDLE_SIGNALS = env_list("DUMONT_IDLE_SIGNALS", ["ssh_input", "jupyter"])
if set(DUMONT_IDLE_SIGNALS) - {"ssh_input", "jupyter", "cpu"}:  # apps.instances.models.IDLE_SIGNALS
    raise ImproperlyConfigured(
        f"DUMONT_IDLE_SIGNALS={','.join(DUMONT_IDLE_SIGNALS)}: each must be one of ssh_input, jupyter, cpu"
    )
# Paused by hibernation this long, the machine is destroyed and only the snapshot kept.
DUMONT_HIBERNATE_RELEASE_AFTER = env_seconds("DUMONT_HIBERNATE_RELEASE_AFTER", 30 * 60)
# Waking a paused machine that is not up by then (its GPU was taken): race for a new one.
DUMONT_WAKE_START_TIMEOUT = env_seconds("DUMONT_WAKE_START_TIMEOUT", 30)

# --- Prices for the savings report (US dollars) -------------------------------------------------

# Snapshot storage on R2, per GB (10^9 bytes) and 30-day month.
DUMONT_STORAGE_PRICE_PER_GB_MONTH = env_decimal("DUMONT_STORAGE_PRICE_PER_GB_MONTH", "0.015")
# A stopped machine's disk, which the marketplace keeps billing while the GPU is free.
DUMONT_STOPPED_DISK_PRICE_PER_GB_MONTH = env_decimal("DUMONT_STOPPED_DISK_PRICE_PER_GB_MONTH", "0.20")

# --- Snapshots (object storage; workspace bytes go machine <-> storage, never through here) ----

# S3-compatible storage: Cloudflare R2 in production. With DEBUG on and nothing set, the local
# SeaweedFS that `make run` and the tests start (it accepts any key).
DUMONT_SNAPSHOT_S3_ENDPOINT = env_str("DUMONT_SNAPSHOT_S3_ENDPOINT", "http://127.0.0.1:8333" if DEBUG else None)
DUMONT_SNAPSHOT_S3_BUCKET = env_str("DUMONT_SNAPSHOT_S3_BUCKET", "dumont" if DEBUG else None)
DUMONT_SNAPSHOT_S3_PREFIX = env_str("DUMONT_SNAPSHOT_S3_PREFIX", "workspaces/")
DUMONT_SNAPSHOT_S3_REGION = env_str("DUMONT_SNAPSHOT_S3_REGION", "auto")
DUMONT_SNAPSHOT_S3_ACCESS_KEY = env_secret("DUMONT_SNAPSHOT_S3_ACCESS_KEY") or ("dumont-local" if DEBUG else None)
DUMONT_SNAPSHOT_S3_SECRET_KEY = env_secret("DUMONT_SNAPSHOT_S3_SECRET_KEY") or ("dumont-local" if DEBUG else None)
# What a machine gets to reach its workspace in storage. "scoped": credentials of its own, issued
# by the store's IAM API (SeaweedFS's embedded IAM, or AWS IAM) for that workspace's prefix only,
# read and write, no delete but its own locks, revoked when the machine stops or goes and past
# their lifetime. "shared": the keys above, whole bucket, for a local store that checks no keys
# (the tests' SeaweedFS), and for a store without an IAM API (Cloudflare R2, until its temporary
# credentials are issued here): `manage.py check --deploy` warns about it (dumont.W001).
DUMONT_SNAPSHOT_CREDENTIALS = env_str("DUMONT_SNAPSHOT_CREDENTIALS", "shared" if DEBUG else "scoped")
if DUMONT_SNAPSHOT_CREDENTIALS not in ("scoped", "shared"):
    raise ImproperlyConfigured(f"DUMONT_SNAPSHOT_CREDENTIALS={DUMONT_SNAPSHOT_CREDENTIALS!r} must be scoped or shared")
# The IAM API that issues scoped credentials (SeaweedFS serves it on its S3 port).
DUMONT_SNAPSHOT_IAM_ENDPOINT = env_str("DUMONT_SNAPSHOT_IAM_ENDPOINT", DUMONT_SNAPSHOT_S3_ENDPOINT)
# A machine's credentials live this long unless renewed; the beat renews those of live machines
# and revokes the rest (DUMONT_SNAPSHOT_GRANTS_INTERVAL).
DUMONT_SNAPSHOT_CREDENTIALS_TTL = env_seconds("DUMONT_SNAPSHOT_CREDENTIALS_TTL", 6 * 3600)
DUMONT_SNAPSHOT_GRANTS_INTERVAL = env_seconds("DUMONT_SNAPSHOT_GRANTS_INTERVAL", 300)
DUMONT_SNAPSHOT_PARALLEL = env_int("DUMONT_SNAPSHOT_PARALLEL", 32, minimum=1)
DUMONT_SNAPSHOT_KEEP_LAST = env_int("DUMONT_SNAPSHOT_KEEP_LAST", 3, minimum=1)
# A snapshot the agent has not finished within this long is failed (the agent died with it).
DUMONT_SNAPSHOT_TIMEOUT = env_seconds("DUMONT_SNAPSHOT_TIMEOUT", 2 * 3600)
# A destroyed instance's snapshots are kept this long (a way back after a mistaken destroy).
DUMONT_SNAPSHOT_KEEP_AFTER_DESTROY = env_seconds("DUMONT_SNAPSHOT_KEEP_AFTER_DESTROY", 7 * 24 * 3600)
# Garbage collection keeps unreferenced objects younger than this (uploads of a snapshot in
# flight), and retries this often while a snapshot holds the repository.
DUMONT_SNAPSHOT_GC_GRACE = env_seconds("DUMONT_SNAPSHOT_GC_GRACE", 3600)
DUMONT_SNAPSHOT_GC_RETRY = env_seconds("DUMONT_SNAPSHOT_GC_RETRY", 300)
# Where the workspace lives on the machine ("~/" is the SSH user's home there).
DUMONT_WORKSPACE_PATH = env_str("DUMONT_WORKSPACE_PATH", "/workspace")
# Seals each workspace's key in the database (32 bytes, hex). Generated into var/ with DEBUG on.
DUMONT_SNAPSHOT_MASTER_KEY = env_secret("DUMONT_SNAPSHOT_MASTER_KEY")
if not DUMONT_SNAPSHOT_MASTER_KEY and DEBUG:
    DUMONT_SNAPSHOT_MASTER_KEY = _local_secret("snapshot_master_key", lambda: secrets.token_hex(32))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

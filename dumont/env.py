"""Strict parsing of settings from the environment.

A value that is present but malformed stops start-up with a message naming the variable:
a typo in production must not silently fall back to a default.
"""

from __future__ import annotations

import os
from decimal import Decimal, InvalidOperation
from pathlib import Path
from urllib.parse import unquote, urlparse

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def env_str(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return default if value is None or value == "" else value


def env_bool(name: str, default: bool) -> bool:
    raw = env_str(name)
    if raw is None:
        return default
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use true/false, 1/0, yes/no, on/off)")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = env_str(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={value} must be at least {minimum}")
    return value


def env_decimal(name: str, default: str) -> Decimal:
    """An exact amount (prices): never a float."""
    raw = env_str(name) or default
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a number") from None
    if not value.is_finite() or value < 0:
        raise ImproperlyConfigured(f"{name}={raw} must be a number at least 0")
    return value


def env_positive(name: str, default: float, *, unit: str = "") -> float:
    """A positive number (of `unit`, for the message)."""
    raw = env_str(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a number{f' of {unit}' if unit else ''}") from None
    if value <= 0:
        raise ImproperlyConfigured(f"{name}={value} must be positive")
    return value


def env_seconds(name: str, default: float) -> float:
    """A duration in seconds; fractions allowed so tests can shrink windows."""
    return env_positive(name, default, unit="seconds")


def env_list(name: str, default: list[str]) -> list[str]:
    raw = env_str(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_secret(name: str) -> str | None:
    """A secret from NAME, or from the file named by NAME_FILE (Docker/systemd credentials)."""
    value = env_str(name)
    path = env_str(f"{name}_FILE")
    if value is not None and path is not None:
        raise ImproperlyConfigured(f"set {name} or {name}_FILE, not both")
    if path is None:
        return value
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        raise ImproperlyConfigured(f"{name}_FILE={path!r} cannot be read: {exc}") from None


def database_from_url(url: str, *, base_dir: Path) -> dict:
    """`postgres://user:pass@host:port/name` or `sqlite:///path` (relative to base_dir)."""
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        # sqlite:///relative/file, sqlite:////absolute/file (the usual convention)
        path = unquote(parsed.netloc + parsed.path[1:])
        if not path:
            raise ImproperlyConfigured(f"DATABASE_URL={url!r} names no SQLite file")
        full = Path(path) if Path(path).is_absolute() else base_dir / path
        # The web server and the Celery worker write at once under make run: take the write lock
        # when a transaction begins (a read lock upgraded later fails at once instead of
        # waiting), let readers go on during writes (WAL), and wait for the lock.
        options = {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": str(full), "OPTIONS": options}
    if parsed.scheme in {"postgres", "postgresql"}:
        name = parsed.path.lstrip("/")
        if not name:
            raise ImproperlyConfigured(f"DATABASE_URL={url!r} names no database")
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(name),
            "USER": unquote(parsed.username or ""),
            "PASSWORD": unquote(parsed.password or ""),
            "HOST": parsed.hostname or "",
            "PORT": str(parsed.port or ""),
            # Persistent connections without a health check: the check is a round trip per
            # request, and Django drops a connection that failed at the end of that request.
            "CONN_MAX_AGE": 60,
            # Parameters travel separately from the SQL (server-side binding), which also lets
            # psycopg prepare statements (see prepare_threshold in settings).
            "OPTIONS": {"server_side_binding": True},
        }
    raise ImproperlyConfigured(f"DATABASE_URL scheme {parsed.scheme!r} is not supported (postgres, sqlite)")

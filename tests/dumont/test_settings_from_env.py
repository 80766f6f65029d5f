import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from dumont.env import database_from_url, env_bool, env_int, env_seconds, env_secret

ROOT = Path(__file__).resolve().parents[2]


def test_booleans_are_strict(monkeypatch):
    monkeypatch.setenv("FLAG", "yes")
    assert env_bool("FLAG", False) is True
    monkeypatch.setenv("FLAG", "Off")
    assert env_bool("FLAG", True) is False
    monkeypatch.setenv("FLAG", "ture")
    with pytest.raises(ImproperlyConfigured, match="FLAG='ture' is not a boolean"):
        env_bool("FLAG", False)


def test_numbers_are_strict(monkeypatch):
    monkeypatch.setenv("N", "12x")
    with pytest.raises(ImproperlyConfigured, match="N='12x' is not an integer"):
        env_int("N", 1)
    monkeypatch.setenv("N", "0")
    with pytest.raises(ImproperlyConfigured, match="at least 1"):
        env_int("N", 1, minimum=1)
    monkeypatch.setenv("WINDOW", "-3")
    with pytest.raises(ImproperlyConfigured, match="must be positive"):
        env_seconds("WINDOW", 180)
    monkeypatch.setenv("WINDOW", "0.5")
    assert env_seconds("WINDOW", 180) == 0.5


def test_secrets_come_from_the_variable_or_a_file(monkeypatch, tmp_path):
    secret = tmp_path / "key"
    secret.write_text("s3cret\n")
    monkeypatch.setenv("API_KEY_FILE", str(secret))
    assert env_secret("API_KEY") == "s3cret"
    monkeypatch.setenv("API_KEY", "other")
    with pytest.raises(ImproperlyConfigured, match="not both"):
        env_secret("API_KEY")
    monkeypatch.delenv("API_KEY")
    monkeypatch.setenv("API_KEY_FILE", str(tmp_path / "missing"))
    with pytest.raises(ImproperlyConfigured, match="cannot be read"):
        env_secret("API_KEY")


def test_database_urls(tmp_path):
    pg = database_from_url("postgres://u:p%40ss@db.example:6543/dumont", base_dir=tmp_path)
    assert (pg["NAME"], pg["USER"], pg["PASSWORD"], pg["HOST"], pg["PORT"]) == (
        "dumont", "u", "p@ss", "db.example", "6543"
    )
    assert database_from_url("sqlite:///var/x.db", base_dir=tmp_path)["NAME"] == str(tmp_path / "var/x.db")
    assert database_from_url("sqlite:////abs/x.db", base_dir=tmp_path)["NAME"] == "/abs/x.db"
    with pytest.raises(ImproperlyConfigured, match="not supported"):
        database_from_url("mysql://x/y", base_dir=tmp_path)


def _start_django(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT, env={"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "dumont.settings", **env},
        capture_output=True, text=True,
    )


def test_production_refuses_to_start_without_a_secret_key(tmp_path):
    result = _start_django({"DEBUG": "false", "DUMONT_VAR_DIR": str(tmp_path)})
    assert result.returncode != 0
    assert "SECRET_KEY (or SECRET_KEY_FILE) is required when DEBUG is off" in result.stderr
    assert _start_django({"DEBUG": "false", "SECRET_KEY": "x" * 50}).returncode == 0


def test_a_local_secret_key_is_generated_once_into_var(tmp_path):
    assert _start_django({"DEBUG": "true", "DUMONT_VAR_DIR": str(tmp_path)}).returncode == 0
    first = (tmp_path / "secret_key").read_text()
    assert _start_django({"DEBUG": "true", "DUMONT_VAR_DIR": str(tmp_path)}).returncode == 0
    assert (tmp_path / "secret_key").read_text() == first and len(first) >= 50


def test_a_malformed_setting_stops_start_up_with_its_name(tmp_path):
    result = _start_django({"DEBUG": "true", "DUMONT_VAR_DIR": str(tmp_path), "DUMONT_BOOT_TIMEOUT": "ten minutes"})
    assert result.returncode != 0
    assert "DUMONT_BOOT_TIMEOUT='ten minutes' is not a number of seconds" in result.stderr


def test_idle_and_price_settings_are_checked_at_start_up(tmp_path):
    for env, message in (
        ({"DUMONT_IDLE_SIGNALS": "ssh_input,mouse"}, "DUMONT_IDLE_SIGNALS=ssh_input,mouse: each must be one of"),
        ({"DUMONT_IDLE_GPU_THRESHOLD": "five"}, "DUMONT_IDLE_GPU_THRESHOLD='five' is not a number of percent"),
        ({"DUMONT_STORAGE_PRICE_PER_GB_MONTH": "cheap"}, "DUMONT_STORAGE_PRICE_PER_GB_MONTH='cheap' is not a number"),
    ):
        result = _start_django({"DEBUG": "true", "DUMONT_VAR_DIR": str(tmp_path), **env})
        assert result.returncode != 0 and message in result.stderr, result.stderr[-500:]


def test_machines_get_scoped_storage_keys_in_production_and_never_the_buckets(tmp_path):
    production = {"DEBUG": "false", "SECRET_KEY": "x" * 50, "DUMONT_VAR_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); from django.conf import settings; "
                               "print(settings.DUMONT_SNAPSHOT_CREDENTIALS)"],
        cwd=ROOT, env={"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "dumont.settings", **production},
        capture_output=True, text=True,
    )
    assert result.stdout.strip() == "scoped", result.stderr[-500:]
    shared = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"], cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", **production, "DUMONT_SNAPSHOT_CREDENTIALS": "shared"},
        capture_output=True, text=True,
    )
    assert "dumont.W001" in shared.stdout + shared.stderr  # an operator is told, loudly
    unknown = _start_django({"DEBUG": "true", "DUMONT_VAR_DIR": str(tmp_path), "DUMONT_SNAPSHOT_CREDENTIALS": "open"})
    assert unknown.returncode != 0 and "must be scoped or shared" in unknown.stderr



def test_debug_is_off_unless_asked_for(tmp_path):
    """Nothing set: production, which needs its secret; `make run` and `make test` say DEBUG=true."""
    result = _start_django({"DUMONT_VAR_DIR": str(tmp_path)})
    assert result.returncode != 0 and "SECRET_KEY (or SECRET_KEY_FILE) is required when DEBUG is off" in result.stderr
    assert not (tmp_path / "secret_key").exists() and not (tmp_path / "snapshot_master_key").exists()


# The production environment the README documents (section "Production"), with its secrets.
PRODUCTION = {
    "DEBUG": "false", "SECRET_KEY": "p" * 20 + "-Qz8w" * 8, "ALLOWED_HOSTS": "dumont.example.com",
    "SECURE_HSTS_PRELOAD": "true", "DATABASE_URL": "postgres://dumont@db.example:5432/dumont",
    "DUMONT_SNAPSHOT_S3_ENDPOINT": "https://store.example.com", "DUMONT_SNAPSHOT_S3_BUCKET": "dumont",
    "DUMONT_SNAPSHOT_S3_ACCESS_KEY": "cp", "DUMONT_SNAPSHOT_S3_SECRET_KEY": "cp-secret",
    "DUMONT_SNAPSHOT_MASTER_KEY": "7a" * 32, "VAST_API_KEY": "vast-key",
}


def test_the_documented_production_settings_pass_the_deploy_checks(tmp_path):
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "DUMONT_VAR_DIR": str(tmp_path), **PRODUCTION},
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout

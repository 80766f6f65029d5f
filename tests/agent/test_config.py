"""Settings from flags with environment fallbacks, strictly parsed."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from agent.config import ConfigError, add_run_arguments, load_config


def load(argv: list[str], env: dict[str, str] | None = None):
    parser = argparse.ArgumentParser()
    add_run_arguments(parser)
    return load_config(parser.parse_args(argv), env or {})


REQUIRED = ["--url", "https://dumont.example.com/", "--instance-id", "i-1", "--token", "t"]


def test_flags_win_over_the_environment_and_defaults_fill_the_rest():
    env = {"DUMONT_URL": "http://other", "DUMONT_AGENT_INTERVAL": "0.25", "DUMONT_GPU_BACKEND": "none"}

    config = load(REQUIRED, env)

    assert config.url == "https://dumont.example.com"
    assert (config.instance_id, config.token) == ("i-1", "t")
    assert (config.interval_s, config.gpu_backend, config.protect_after_s) == (0.25, "none", 1800.0)
    assert config.state_dir == Path.home() / ".dumont" / "agent"


def test_everything_can_come_from_the_environment():
    config = load([], {
        "DUMONT_URL": "http://10.0.0.2:8000",
        "DUMONT_INSTANCE_ID": "i-2",
        "DUMONT_AGENT_TOKEN": "secret",
        "DUMONT_AGENT_STATE_DIR": "/var/lib/dumont",
        "DUMONT_AGENT_PROTECT_AFTER": "60",
    })

    assert (config.url, config.instance_id, config.token) == ("http://10.0.0.2:8000", "i-2", "secret")
    assert (config.state_dir, config.protect_after_s, config.interval_s) == (Path("/var/lib/dumont"), 60.0, 10.0)


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        ([], {}, "--url (or DUMONT_URL) is required"),
        (["--url", "http://x"], {"DUMONT_INSTANCE_ID": "i"}, "--token (or DUMONT_AGENT_TOKEN) is required"),
        (["--url", "ftp://x", "--instance-id", "i", "--token", "t"], {}, "must be an http(s) URL, got 'ftp://x'"),
        (REQUIRED, {"DUMONT_AGENT_INTERVAL": "ten"}, "--interval (or DUMONT_AGENT_INTERVAL) must be a number"),
        ([*REQUIRED, "--interval", "0"], {}, "must be more than 0 seconds, got '0'"),
        ([*REQUIRED, "--protect-after", "nan"], {}, "(or DUMONT_AGENT_PROTECT_AFTER) must be more than 0"),
        (REQUIRED, {"DUMONT_GPU_BACKEND": "cuda"}, "must be one of auto, nvml, devcloud, none, got 'cuda'"),
    ],
)
def test_missing_or_malformed_settings_are_refused_with_their_name(argv, env, message):
    with pytest.raises(ConfigError) as error:
        load(argv, env)
    assert message in str(error.value)

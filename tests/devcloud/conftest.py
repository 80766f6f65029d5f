"""Fixtures for devcloud's own tests: plain pytest, no Django.

Run them alone with the repository's Django conftest out of the way:
    .venv/bin/python -m pytest tests/devcloud -q -p no:django --confcutdir=tests/devcloud
"""

from __future__ import annotations

import paramiko
import pytest

from devcloud.testing import DevCloud, new_ssh_key, run_devcloud

from .helpers import Vast

BOOT_DELAY = "fixed:0.1"


@pytest.fixture(scope="module")
def cloud(tmp_path_factory) -> DevCloud:
    with run_devcloud(tmp_path_factory.mktemp("devcloud") / "state", boot_delay=BOOT_DELAY) as running:
        yield running


@pytest.fixture(scope="module")
def account_key(cloud) -> paramiko.PKey:
    """A key on the account before any test creates machines, so they all accept it."""
    key, line = new_ssh_key()
    status, body = cloud.api("POST", "/api/v0/ssh/", {"ssh_key": line})
    assert status == 200, body
    return key


@pytest.fixture
def vast(cloud, account_key) -> Vast:
    """Also leaves the shared devcloud clean: faults off, every machine destroyed."""
    client = Vast(cloud)
    yield client
    cloud.reset_faults()
    for machine in cloud.machines():
        client.destroy(machine["id"])

"""A real agent process against the real endpoint, through a link the test can cut: samples
taken while the control plane is unreachable arrive, in order, once it is back."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from apps.agents import services as agent_services
from apps.agents.models import Agent, AgentSample
from apps.instances.models import Instance
from tests.chaos.harness import FaultProxy
from tests.polling import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
INTERVAL = 0.2


@pytest.fixture
def link(live_server):
    """The agent reaches the live server through a relay the test cuts and restores."""
    link = FaultProxy("control plane", "127.0.0.1", int(live_server.url.rsplit(":", 1)[1]))
    yield link
    link.close()


def test_samples_taken_during_an_outage_are_replayed_in_order(user, live_server, link, settings, tmp_path):
    settings.DUMONT_AGENT_INTERVAL = INTERVAL
    instance = Instance.objects.create(user=user, label="local", image="img", status="running")
    token = agent_services.agent_token_issue(instance=instance)
    log_path = tmp_path / "agent.log"
    agent = subprocess.Popen(
        [sys.executable, "-m", "agent", "run", "--url", f"http://127.0.0.1:{link.port}",
         "--instance-id", str(instance.id), f"--token={token}", "--interval", str(INTERVAL),
         "--gpu-backend", "none", "--state-dir", str(tmp_path / "state")],
        cwd=ROOT, stderr=log_path.open("w"),
    )
    try:
        wait_for(lambda: Agent.objects.get(pk=instance.pk).last_seq >= 3, timeout=20, what="three heartbeats")
        link.down()
        cut_at = time.time()
        wait_for(lambda: _buffered(log_path) >= 3, timeout=20, what="three samples buffered by the agent")
        restored_at = time.time()
        assert not AgentSample.objects.filter(instance=instance, at__gt=_dt(cut_at + INTERVAL)).exists()
        link.up()

        def replayed():
            during = AgentSample.objects.filter(instance=instance, at__gt=_dt(cut_at), at__lt=_dt(restored_at))
            return list(during.order_by("at")) if during.count() >= 3 else None

        during = wait_for(replayed, timeout=20, what="the samples of the outage to arrive")
        taken = [sample.at for sample in during]
        assert taken == sorted(taken) and len(set(taken)) == len(taken)
        assert Agent.objects.get(pk=instance.pk).status == "healthy"
        assert "retrying in" in log_path.read_text()
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nagent log:\n{log_path.read_text()[-3000:]}") from None
    finally:
        agent.terminate()
        agent.wait(timeout=10)


def _buffered(log_path: Path) -> int:
    counts = re.findall(r"(\d+) samples buffered", log_path.read_text())
    return int(counts[-1]) if counts else 0


def _dt(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=timezone.utc)

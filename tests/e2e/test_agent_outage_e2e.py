"""A real agent process against the real endpoint, through a link the test can cut: samples
taken while the control plane is unreachable arrive, in order, once it is back."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from apps.agents import services as agent_services
from apps.agents.models import Agent, AgentSample
from apps.instances.models import Instance
from tests.polling import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
INTERVAL = 0.2


class CuttableLink:
    """A TCP forwarder to the live server that can be cut (refusing connections) and restored."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self._listener: socket.socket | None = None
        self._open: list[socket.socket] = []

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        listener, self._listener = self._listener, None
        listener.close()
        for conn in self._open:
            try:
                conn.shutdown(socket.SHUT_RDWR)  # wakes the pipe threads and sends FIN; close alone may not
            except OSError:
                pass
            conn.close()
        self._open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.close()
                except OSError:
                    pass


@pytest.fixture
def link(live_server):
    link = CuttableLink(int(live_server.url.rsplit(":", 1)[1]))
    link.restore()
    yield link
    if link._listener:
        link.cut()


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
        link.cut()
        cut_at = time.time()
        wait_for(lambda: _buffered(log_path) >= 3, timeout=20, what="three samples buffered by the agent")
        restored_at = time.time()
        assert not AgentSample.objects.filter(instance=instance, at__gt=_dt(cut_at + INTERVAL)).exists()
        link.restore()

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

"""Helpers for devcloud's tests: polling, a raw vast.ai client, SSH."""

from __future__ import annotations

import paramiko
import requests

from devcloud.testing import DevCloud
from tests.polling import wait_for  # noqa: F401  (re-exported for the devcloud tests)


class Vast:
    """A thin vast.ai client for the tests: raw replies, nothing interpreted."""

    def __init__(self, cloud: DevCloud):
        self.url = cloud.url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {cloud.api_key}"

    def call(self, method: str, path: str, **kwargs) -> requests.Response:
        return self.session.request(method, self.url + path, timeout=10, **kwargs)

    def search(self, **query) -> list[dict]:
        reply = self.call("POST", "/api/v0/bundles/", json=query)
        assert reply.status_code == 200, reply.text
        return reply.json()["offers"]

    def free_offer(self, **filters) -> dict:
        offers = self.search(rented={"eq": False}, rentable={"eq": True}, **filters)
        assert offers, f"no free offer for {filters}"
        return offers[0]

    def create(self, offer_id: int | None = None, **body) -> int:
        reply = self.create_reply(offer_id, **body)
        assert reply.status_code == 200, reply.text
        assert reply.json()["success"] is True
        return reply.json()["new_contract"]

    def create_reply(self, offer_id: int | None = None, **body) -> requests.Response:
        offer_id = offer_id or self.free_offer()["id"]
        body = {"image": "pytorch/pytorch:latest", "disk": 16, "label": "test", **body}
        return self.call("PUT", f"/api/v0/asks/{offer_id}/", json=body)

    def instance(self, instance_id: int) -> dict | None:
        reply = self.call("GET", f"/api/v0/instances/{instance_id}/")
        assert reply.status_code == 200, reply.text
        return reply.json()["instances"]

    def wait_status(self, instance_id: int, status: str | None, timeout: float = 5.0) -> dict:
        return wait_for(
            lambda: (inst := self.instance(instance_id)) and inst["actual_status"] == status and inst,
            timeout=timeout,
            what=f"instance {instance_id} {status}",
        )

    def boots_done(self) -> None:
        """Return once a machine created now has booted: every boot that began before it, with the
        same delay, is over too. What to wait on before asserting that a boot did not happen."""
        witness = self.create(onstart="exec sleep 1000", label="witness")
        self.wait_status(witness, "running")
        assert self.destroy(witness).status_code == 200

    def set_state(self, instance_id: int, state: str) -> requests.Response:
        return self.call("PUT", f"/api/v0/instances/{instance_id}/", json={"state": state})

    def destroy(self, instance_id: int) -> requests.Response:
        return self.call("DELETE", f"/api/v0/instances/{instance_id}/")


def ssh_connect(instance: dict, key: paramiko.PKey, *, timeout: float = 5.0) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    client.connect(
        instance["ssh_host"],
        port=int(instance["ssh_port"]),
        username="root",
        pkey=key,
        allow_agent=False,
        look_for_keys=False,
        timeout=timeout,
        banner_timeout=timeout,
        auth_timeout=timeout,
    )
    return client


def run(client: paramiko.SSHClient, command: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of one exec."""
    channel_in, out, err = client.exec_command(command, timeout=10)
    if stdin is not None:
        channel_in.write(stdin)
    channel_in.channel.shutdown_write()
    stdout, stderr = out.read().decode(), err.read().decode()
    return out.channel.recv_exit_status(), stdout, stderr


def process_alive(pid: int) -> bool:
    """Alive and not a zombie waiting to be reaped."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False

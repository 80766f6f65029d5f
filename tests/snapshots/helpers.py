from __future__ import annotations

from rest_framework.test import APIClient

URL = "/api/v1/agent/status"


def post_heartbeat(instance, updates=(), seq=1) -> dict:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Agent {instance.token}")
    body = {"instance_id": str(instance.id), "agent_version": "0.1.0", "seq": seq, "samples": [],
            "updates": list(updates)}
    reply = client.post(URL, body, format="json")
    assert reply.status_code == 200, reply.content
    return reply.json()

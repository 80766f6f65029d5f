import time

import pytest
from rest_framework.test import APIClient

from apps.agents import services as agent_services
from apps.agents.models import Agent, AgentCommand, AgentSample, AgentStatus
from apps.instances import services
from apps.instances.models import Instance, InstanceStatus

S = InstanceStatus
URL = "/api/v1/agent/status"


@pytest.fixture
def instance(user):
    return Instance.objects.create(user=user, label="box", image="img", status=S.RUNNING)


@pytest.fixture
def token(instance):
    return agent_services.agent_token_issue(instance=instance)


def agent_client(token) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Agent {token}")
    return client


def sample(util=0.0, at=None, **activity):
    return {"at": at or time.time(), "gpus": [{"index": 0, "utilization": util, "memory_used_mb": 10,
                                               "memory_total_mb": 24564}],
            "activity": {"ssh_sessions": 0, "cpu_percent": 1.5, **activity}}


def heartbeat(instance, samples=(), updates=(), seq=1):
    return {"instance_id": str(instance.id), "agent_version": "0.1.0", "seq": seq,
            "samples": list(samples), "updates": list(updates)}


def test_heartbeat_stores_latest_and_samples_and_marks_the_agent_healthy(instance, token, api):
    reply = agent_client(token).post(URL, heartbeat(instance, [sample(12.5), sample(80.0)]), format="json")
    assert reply.status_code == 200
    assert reply.json() == {"commands": [], "interval_s": 10.0}
    agent = Agent.objects.get(pk=instance.pk)
    assert agent.status == AgentStatus.HEALTHY and agent.version == "0.1.0"
    assert agent.latest["gpus"][0]["utilization"] == 80.0
    detail = api.get(f"/api/v1/instances/{instance.id}").json()
    assert detail["agent"]["status"] == "healthy"
    assert [s["gpu_util_max"] for s in detail["recent_samples"]] == [12.5, 80.0]


def test_nvml_errors_are_stored_as_errors_not_as_zero(instance, token):
    failing = {"at": time.time(), "gpus": [], "gpu_error": "NVML: driver not loaded"}
    agent_client(token).post(URL, heartbeat(instance, [failing]), format="json")
    stored = AgentSample.objects.get(instance=instance)
    assert stored.gpu_util_max is None and stored.gpu_error == "NVML: driver not loaded"


def test_the_sample_ring_stays_bounded(instance, token, settings):
    settings.DUMONT_AGENT_SAMPLES_KEPT = 20
    client = agent_client(token)
    now = time.time()
    for batch in range(3):
        samples = [sample(float(i), at=now + batch * 15 + i) for i in range(15)]
        assert client.post(URL, heartbeat(instance, samples, seq=batch + 1), format="json").status_code == 200
    kept = AgentSample.objects.filter(instance=instance)
    assert kept.count() == 20
    assert max(s.at.timestamp() for s in kept) == pytest.approx(now + 2 * 15 + 14)


def test_a_heartbeat_is_one_statement_however_many_samples_it_carries(instance, token, django_assert_num_queries):
    client = agent_client(token)
    AgentCommand.objects.create(instance=instance, kind="echo", actor="t")
    with django_assert_num_queries(1):
        reply = client.post(URL, heartbeat(instance, [sample(float(i)) for i in range(50)]), format="json")
    assert len(reply.json()["commands"]) == 1
    assert AgentSample.objects.filter(instance=instance).count() == 50


@pytest.mark.parametrize("header", [None, "Agent nope", "Bearer whatever", "Agent "])
def test_without_a_valid_agent_token_it_is_401(instance, token, header):
    client = APIClient()
    if header:
        client.credentials(HTTP_AUTHORIZATION=header)
    response = client.post(URL, heartbeat(instance), format="json")
    assert response.status_code == 401
    assert not Agent.objects.filter(pk=instance.pk, last_heartbeat_at__isnull=False).exists()


def test_a_users_jwt_does_not_open_the_agent_endpoint(instance, api):
    assert api.post(URL, heartbeat(instance), format="json").status_code == 401


def test_a_token_cannot_speak_for_another_instance(instance, token, user):
    other = Instance.objects.create(user=user, label="other", image="img", status=S.RUNNING)
    response = agent_client(token).post(URL, heartbeat(other, [sample(50)]), format="json")
    assert response.status_code == 404
    assert not AgentSample.objects.exists()


def test_the_token_stops_working_once_the_instance_is_destroyed(instance, token):
    client = agent_client(token)
    assert client.post(URL, heartbeat(instance), format="json").status_code == 200
    services.instance_destroy(instance=instance, actor="t")
    services.instance_record_destroyed(instance_id=instance.id)
    assert client.post(URL, heartbeat(instance), format="json").status_code == 401


def test_a_new_token_replaces_the_old_one(instance, token):
    fresh = agent_services.agent_token_issue(instance=instance)
    assert agent_client(token).post(URL, heartbeat(instance), format="json").status_code == 401
    assert agent_client(fresh).post(URL, heartbeat(instance), format="json").status_code == 200


@pytest.mark.parametrize(
    "body, words",
    [
        ({}, "instance_id is required"),
        ({"instance_id": "x", "agent_version": "1", "seq": "one"}, "seq must be int"),
        ({"instance_id": "x", "agent_version": "1", "seq": 1, "samples": [{"at": 1, "gpus": [{"index": 0, "utilization": 180}]}]},
         "samples[0]: gpus[0]: utilization 180.0 is outside 0-100"),
        ({"instance_id": "x", "agent_version": "1", "seq": 1, "updates": [{"id": "a", "status": "done"}]},
         "updates[0]: status 'done'"),
    ],
)
def test_malformed_heartbeats_are_400_with_the_place_named(instance, token, body, words):
    response = agent_client(token).post(URL, body, format="json")
    assert response.status_code == 400
    assert response.json()["error"] == "bad_heartbeat"
    assert words in response.json()["detail"]


def test_commands_are_delivered_until_acknowledged_and_results_stored(instance, token):
    client = agent_client(token)
    command = agent_services.agent_command_create(instance=instance, kind="echo", args={"x": 1}, actor="t")
    first = client.post(URL, heartbeat(instance, seq=1), format="json").json()["commands"]
    again = client.post(URL, heartbeat(instance, seq=2), format="json").json()["commands"]
    assert first == again == [{"id": str(command.id), "kind": "echo", "args": {"x": 1}}]
    ack = {"id": str(command.id), "status": "acknowledged"}
    assert client.post(URL, heartbeat(instance, updates=[ack], seq=3), format="json").json()["commands"] == []
    done = {"id": str(command.id), "status": "succeeded", "result": {"x": 1}}
    client.post(URL, heartbeat(instance, updates=[done], seq=4), format="json")
    late_ack = client.post(URL, heartbeat(instance, updates=[ack], seq=5), format="json")
    assert late_ack.json()["commands"] == []
    command.refresh_from_db()
    assert (command.status, command.attempts, command.result) == ("succeeded", 2, {"x": 1})
    assert command.acknowledged_at and command.finished_at


def test_updates_for_unknown_or_foreign_commands_are_ignored(instance, token, user):
    other = Instance.objects.create(user=user, label="other", image="img", status=S.RUNNING)
    foreign = agent_services.agent_command_create(instance=other, kind="echo", actor="t")
    updates = [{"id": str(foreign.id), "status": "failed", "error": "x"}, {"id": "not-a-uuid", "status": "failed"}]
    assert agent_client(token).post(URL, heartbeat(instance, updates=updates), format="json").status_code == 200
    foreign.refresh_from_db()
    assert foreign.status == "pending"


def test_silent_agents_become_unhealthy_not_idle(instance, token, settings):
    agent_client(token).post(URL, heartbeat(instance, [sample(0)]), format="json")
    settings.DUMONT_AGENT_SILENT_AFTER = 0.01
    time.sleep(0.05)
    assert agent_services.agents_mark_silent() == 1
    agent = Agent.objects.get(pk=instance.pk)
    assert agent.status == AgentStatus.SILENT and "no heartbeat" in agent.error


def test_unknown_command_kinds_are_refused(instance):
    from dumont.errors import InvalidInput

    with pytest.raises(InvalidInput, match="unknown command 'format_disk'"):
        agent_services.agent_command_create(instance=instance, kind="format_disk", actor="t")


def test_the_portable_path_stores_the_same_as_the_single_statement(instance, token, monkeypatch):
    """SQLite (make run's default) takes the ORM path; run it here on PostgreSQL to check it."""
    from django.db import connection

    command = agent_services.agent_command_create(instance=instance, kind="echo", actor="t")
    monkeypatch.setattr(connection, "vendor", "sqlite")
    reply = agent_client(token).post(URL, heartbeat(instance, [sample(7.0), sample(9.0)]), format="json")
    assert reply.json()["commands"] == [{"id": str(command.id), "kind": "echo", "args": {}}]
    assert [s.gpu_util_max for s in AgentSample.objects.filter(instance=instance).order_by("slot")] == [7.0, 9.0]
    agent = Agent.objects.get(pk=instance.pk)
    assert (agent.status, agent.samples_received, agent.latest["gpus"][0]["utilization"]) == ("healthy", 2, 9.0)
    other = Instance.objects.create(user=instance.user, label="o", image="i", status=S.RUNNING)
    assert agent_client(token).post(URL, heartbeat(other), format="json").status_code == 404
    assert agent_client("f" * 64).post(URL, heartbeat(instance), format="json").status_code == 401


def test_bad_json_and_wrong_method_get_api_errors(instance, token):
    client = agent_client(token)
    response = client.generic("POST", URL, "{nope", content_type="application/json")
    assert (response.status_code, response.json()["error"]) == (400, "parse_error")
    response = client.get(URL)
    assert (response.status_code, response.json()["error"]) == (405, "method_not_allowed")


def test_the_agent_endpoint_is_in_the_openapi_schema(client, db):
    schema = client.get("/api/v1/schema/", HTTP_ACCEPT="application/json").json()
    operation = schema["paths"]["/api/v1/agent/status"]["post"]
    assert {"200", "400", "401", "404"} <= set(operation["responses"])
    assert "agentToken" in schema["components"]["securitySchemes"]
    assert "Error" in schema["components"]["schemas"]


def test_a_heartbeat_with_null_samples_is_just_a_hello(instance, token):
    body = {**heartbeat(instance), "samples": None, "updates": None}
    assert agent_client(token).post(URL, body, format="json").status_code == 200
    assert Agent.objects.get(pk=instance.pk).status == AgentStatus.HEALTHY


def test_a_destroyed_instances_samples_are_purged_after_a_while(instance, token, settings):
    from datetime import timedelta

    from django.utils import timezone

    agent_client(token).post(URL, heartbeat(instance, [sample(1.0), sample(2.0)]), format="json")
    Instance.objects.filter(pk=instance.pk).update(status=S.DESTROYED)
    assert agent_services.agent_samples_purge() == 0
    Instance.objects.filter(pk=instance.pk).update(status_changed_at=timezone.now() - timedelta(days=2))
    assert agent_services.agent_samples_purge() == 2
    assert not AgentSample.objects.filter(instance=instance).exists()

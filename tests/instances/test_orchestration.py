"""Instance lifecycle steps against devcloud: real HTTP, real machines, real SSH handshakes.

Celery tasks are captured and run here in order (the `tasks` fixture); the end-to-end test in
tests/e2e runs the same flow through a real worker.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from apps.instances import orchestration, services
from apps.instances.models import Instance, InstanceStatus
from apps.instances.tasks import provision
from apps.providers.base import MachineState, OfferQuery
from apps.providers.registry import get_provider
from apps.providers.ssh import ssh_handshake
from tests.polling import wait_for

S = InstanceStatus
pytestmark = pytest.mark.django_db(transaction=True)


def create(user, **overrides) -> Instance:
    fields = {"label": "train", "image": "img", "disk_gb": 16, "gpu_name": "RTX 4090", **overrides}
    return services.instance_create(user=user, actor="user:alice", **fields)


def machines_labelled(devcloud, label: str) -> list[dict]:
    return [m for m in devcloud.machines() if m.get("label") == label]


def reload(instance: Instance) -> Instance:
    return Instance.objects.get(pk=instance.pk)


def test_create_reaches_running_only_after_a_real_ssh_handshake(user, devcloud, tasks):
    instance = create(user)
    assert tasks.names() == ["instances.provision"]
    tasks.drain()
    instance = reload(instance)
    assert instance.status == S.RUNNING, instance.status_reason
    assert instance.ssh_host_key.startswith("ssh-")
    assert ssh_handshake(instance.ssh_host, instance.ssh_port, pinned_host_key=instance.ssh_host_key)
    [machine] = machines_labelled(devcloud, instance.machine_label)
    assert str(machine["id"]) == instance.machine_id
    assert instance.machine_gpu_name == "RTX 4090" and instance.price_per_hour > 0
    steps = list(instance.events.values_list("to_status", flat=True))
    assert steps == [S.REQUESTED, S.PROVISIONING, S.BOOTING, S.RUNNING]


def test_pause_resume_destroy_leave_no_machine_dir_or_process(user, devcloud, tasks):
    instance = create(user)
    tasks.drain()
    instance = reload(instance)
    [machine] = machines_labelled(devcloud, instance.machine_label)
    (Path(machine["disk"]) / "work.txt").write_text("kept across pause")

    services.instance_pause(instance=instance, actor="user:alice")
    tasks.drain()
    assert reload(instance).status == S.PAUSED
    assert machines_labelled(devcloud, instance.machine_label)[0]["pids"] == []

    services.instance_resume(instance=reload(instance), actor="user:alice")
    tasks.drain()
    instance = reload(instance)
    assert instance.status == S.RUNNING, instance.status_reason
    assert (Path(machine["disk"]) / "work.txt").read_text() == "kept across pause"

    services.instance_destroy(instance=instance, actor="user:alice")
    tasks.drain()
    assert reload(instance).status == S.DESTROYED
    assert machines_labelled(devcloud, instance.machine_label) == []
    assert not Path(machine["dir"]).exists()
    assert get_provider("vast").get(instance.machine_id) is None


def test_a_vanished_offer_is_skipped_for_the_next_one(user, devcloud, tasks):
    devcloud.faults(vanish_offers=1)
    instance = create(user)
    tasks.drain()
    instance = reload(instance)
    assert instance.status == S.RUNNING, instance.status_reason
    assert len(machines_labelled(devcloud, instance.machine_label)) == 1
    renting = instance.events.filter(to_status=S.PROVISIONING).count()
    assert renting == 2  # first offer gone, second rented


def test_a_vanished_chosen_offer_fails_with_a_reason(user, devcloud, tasks):
    offer = get_provider("vast").search_offers(OfferQuery(gpu_name="RTX 4090"))[0]
    devcloud.faults(vanish_offers=1)
    instance = create(user, gpu_name="", offer_id=offer.id)
    tasks.drain()
    instance = reload(instance)
    assert instance.status == S.FAILED
    assert f"offer {offer.id} is no longer available" in instance.status_reason
    assert machines_labelled(devcloud, instance.machine_label) == []


def test_a_burst_of_429_is_absorbed(user, devcloud, tasks):
    devcloud.faults(rate_limit=3)
    instance = create(user)
    tasks.drain()
    assert reload(instance).status == S.RUNNING


def test_a_lost_create_reply_does_not_produce_a_second_machine(user, devcloud, tasks):
    devcloud.faults(lose_create_reply=1)
    instance = create(user)
    tasks.drain()
    instance = reload(instance)
    assert instance.status == S.RUNNING, instance.status_reason
    [machine] = machines_labelled(devcloud, instance.machine_label)
    assert str(machine["id"]) == instance.machine_id


def test_no_matching_offer_fails_with_a_reason(user, devcloud, tasks):
    instance = create(user, gpu_name="GTX 280")
    tasks.drain()
    instance = reload(instance)
    assert instance.status == S.FAILED
    assert "no offer matches 1× GTX 280" in instance.status_reason


def test_a_machine_that_fails_to_start_is_destroyed_and_the_reason_shown(user, devcloud, tasks):
    devcloud.faults(oci_error=1)
    instance = create(user)
    tasks.drain()
    instance = reload(instance)
    assert instance.status == S.FAILED
    assert "OCI runtime create failed" in instance.status_reason
    assert "destroyed" in instance.status_reason
    assert machines_labelled(devcloud, instance.machine_label) == []


def test_a_machine_stuck_loading_is_given_up_at_the_deadline(user, devcloud, tasks, settings):
    settings.DUMONT_BOOT_TIMEOUT = 1.0
    devcloud.faults(stuck_loading=1)
    instance = create(user)
    tasks.drain()
    instance = reload(instance)
    assert instance.status == S.FAILED
    assert "did not boot before the deadline" in instance.status_reason
    assert machines_labelled(devcloud, instance.machine_label) == []


def test_running_is_not_ready_while_ssh_does_not_answer(user, devcloud, tasks, settings):
    devcloud.faults(ssh_delay_s=1.5)  # SSH waits 1.5 s before its banner
    settings.DUMONT_SSH_TIMEOUT = 0.3  # so our handshake gives up first
    instance = create(user)
    tasks.sent.clear()
    provision.apply(args=(str(instance.id),))
    provider = get_provider("vast")

    def provider_says_running():
        return provider.get(reload(instance).machine_id).state == MachineState.RUNNING

    wait_for(provider_says_running, timeout=10, what="the provider to report running")
    assert orchestration.watch(instance.id) == settings.DUMONT_POLL_INTERVAL
    assert reload(instance).status == S.BOOTING

    settings.DUMONT_SSH_TIMEOUT = 5
    tasks.sent.clear()
    for _ in range(10):
        if orchestration.watch(instance.id) is None:
            break
    assert reload(instance).status == S.RUNNING


def test_a_machine_arriving_after_destroy_is_destroyed_on_arrival(user, devcloud, tasks, monkeypatch):
    instance = create(user)
    provider = get_provider("vast")
    real_create = provider.create

    def create_then_user_destroys(**kwargs):
        machine_id = real_create(**kwargs)
        services.instance_destroy(instance=instance, actor="user:alice")
        return machine_id

    monkeypatch.setattr(provider, "create", create_then_user_destroys)
    tasks.drain()
    instance = reload(instance)
    assert instance.status == S.DESTROYED
    assert machines_labelled(devcloud, instance.machine_label) == []


def test_no_provider_call_happens_inside_a_request(api, user, devcloud, tasks, monkeypatch):
    import requests

    calls = []
    real_send = requests.Session.send

    def record(session, request, **kwargs):
        if request.url.startswith(devcloud.url):
            calls.append(request.url)
        return real_send(session, request, **kwargs)

    monkeypatch.setattr(requests.Session, "send", record)
    created = api.post("/api/v1/instances", {"label": "x", "gpu_name": "RTX 4090"}, format="json")
    assert created.status_code == 202
    assert calls == [], "the create request itself called the provider"
    tasks.drain()
    assert calls, "the provision task should have called the provider"
    instance_id = created.json()["id"]
    calls.clear()
    assert api.post(f"/api/v1/instances/{instance_id}/pause").status_code == 202
    assert api.delete(f"/api/v1/instances/{instance_id}").status_code == 202
    assert calls == []
    tasks.drain()
    assert calls
    assert Instance.objects.get(pk=instance_id).status == S.DESTROYED

"""Each fault knob of /_devcloud/faults does what the package docstring promises."""

import time

import paramiko
import pytest
import requests

from .helpers import process_alive, run, ssh_connect, wait_for


def test_knobs_read_merge_and_reset(cloud, vast):
    initial = cloud.reset_faults()
    merged = cloud.faults(oci_error=2, boot_delay="uniform:1,2")
    assert merged["oci_error"] == 2 and merged["boot_delay"] == "uniform:1,2"
    merged = cloud.faults(time_scale=0.5)
    assert merged["oci_error"] == 2 and merged["time_scale"] == 0.5
    assert cloud.reset_faults() == initial
    assert initial["boot_delay"] == "fixed:0.1" and initial["time_scale"] == 1.0


@pytest.mark.parametrize(
    "knobs",
    [
        {"oci_error": -1},
        {"oci_error": 1.5},
        {"oci_error": True},
        {"ssh_delay_s": "x"},
        {"boot_delay": "slow"},
        {"time_scale": -2},
        {"no_such_knob": 1},
    ],
)
def test_bad_knobs_are_400_and_change_nothing(cloud, vast, knobs):
    before = cloud.reset_faults()
    status, body = cloud.api("POST", "/_devcloud/faults", {"vanish_offers": 3, **knobs})
    assert status == 400 and body["error"] == "invalid_args"
    assert cloud.api("GET", "/_devcloud/faults")[1] == before


def test_vanish_offers(vast, cloud):
    cloud.faults(vanish_offers=1)
    offer = vast.free_offer()
    gone = vast.create_reply(offer["id"])
    assert gone.status_code == 404 and gone.json()["error"] == "no_such_ask"
    assert vast.call("GET", "/api/v1/instances/").json()["instances"] == []
    assert vast.create(offer["id"])


def test_stuck_loading(vast, cloud, account_key):
    cloud.faults(stuck_loading=1)
    stuck = vast.create()
    healthy = vast.create()
    vast.wait_status(healthy, "running")  # created after the stuck one: its boot would be over
    instance = vast.instance(stuck)
    assert instance["actual_status"] == "loading"
    with pytest.raises(OSError):
        ssh_connect(instance, account_key, timeout=1)
    assert cloud.machine(stuck)["faults"] == ["stuck_loading"]


def test_exit_after_running(vast, cloud):
    cloud.faults(exit_after_running=1, exit_delay_s=0.3)
    instance_id = vast.create(onstart="exec sleep 1000")
    vast.wait_status(instance_id, "running")
    pids = wait_for(lambda: cloud.machine(instance_id)["pids"])
    exited = vast.wait_status(instance_id, "exited")
    assert exited["intended_status"] == "running"
    assert not exited["ports"]
    assert not any(process_alive(pid) for pid in pids)
    assert cloud.machine(instance_id)["ssh_listening"] is False


def test_oci_error(vast, cloud):
    cloud.faults(oci_error=1)
    instance_id = vast.create(onstart="exec sleep 1000")
    failed = vast.wait_status(instance_id, "created")
    assert "OCI runtime create failed" in failed["status_msg"]
    vast.boots_done()
    assert vast.instance(instance_id)["actual_status"] == "created"
    assert cloud.machine(instance_id)["pids"] == []


def test_rate_limit_alternates_plain_text_and_json_and_spares_admin(vast, cloud):
    cloud.faults(rate_limit=2)
    assert cloud.api("GET", "/_devcloud/machines")[0] == 200  # admin calls take no 429

    plain = vast.call("GET", "/api/v1/instances/")
    assert plain.status_code == 429 and "Retry-After" not in plain.headers
    assert plain.headers["Content-Type"].startswith("text/plain")
    assert plain.text == "Too Many Requests"
    as_json = vast.call("POST", "/api/v0/bundles/", json={})
    assert as_json.status_code == 429 and "Retry-After" not in as_json.headers
    assert "detail" in as_json.json()
    assert vast.call("GET", "/api/v1/instances/").status_code == 200


def test_lose_create_reply_creates_the_machine_anyway(vast, cloud):
    cloud.faults(lose_create_reply=2)
    with pytest.raises(requests.ConnectionError):
        vast.create_reply(label="lost-1")
    bad_gateway = vast.create_reply(label="lost-2")
    assert bad_gateway.status_code == 502
    labels = [inst["label"] for inst in vast.call("GET", "/api/v1/instances/").json()["instances"]]
    assert labels == ["lost-1", "lost-2"]
    assert vast.create_reply(label="kept").status_code == 200


def test_ssh_delay_holds_the_banner_on_new_machines(vast, cloud, account_key):
    before = vast.create()
    cloud.faults(ssh_delay_s=0.6)
    slow = vast.wait_status(vast.create(), "running")
    fast = vast.wait_status(before, "running")

    started = time.monotonic()
    with ssh_connect(slow, account_key) as client:
        assert run(client, "true")[0] == 0
    assert time.monotonic() - started >= 0.6
    with pytest.raises(paramiko.SSHException):
        ssh_connect(slow, account_key, timeout=0.2)  # banner does not come in time

    assert (cloud.machine(slow["id"])["ssh_delay_s"], cloud.machine(before)["ssh_delay_s"]) == (0.6, 0.0)
    with ssh_connect(fast, account_key):  # created before the knob: its banner is not held
        pass


def test_boot_delay_and_time_scale_apply_to_new_boots(vast, cloud):
    cloud.faults(boot_delay="fixed:100", time_scale=0.004)  # 0.4 s
    started = time.monotonic()
    instance_id = vast.create()
    assert vast.instance(instance_id)["actual_status"] == "loading"
    vast.wait_status(instance_id, "running", timeout=5)
    assert time.monotonic() - started >= 0.4  # a lower bound: a slow machine only adds to it

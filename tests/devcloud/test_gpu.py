"""Simulated GPU utilization: set by tests, read by tests or by the agent with its machine token."""

import json
import sys

import pytest
import requests

from .helpers import run, ssh_connect


def _create_with_gpus(vast, count):
    return vast.create(vast.free_offer(num_gpus={"eq": count})["id"])


def test_starts_idle_and_reads_back_what_was_set(vast, cloud):
    instance_id = _create_with_gpus(vast, 1)
    gpus = cloud.gpu(instance_id)["gpus"]
    assert [(g["index"], g["utilization"], g["memory_used_mb"]) for g in gpus] == [(0, 0, 0)]
    assert gpus[0]["memory_total_mb"] == vast.instance(instance_id)["gpu_ram"]

    cloud.set_gpu(instance_id, 37)
    assert cloud.gpu(instance_id)["gpus"][0]["utilization"] == 37
    assert cloud.gpu(instance_id)["gpus"][0]["memory_used_mb"] > 0
    assert vast.wait_status(instance_id, "running")["gpu_util"] == 37


def test_per_gpu_values_and_one_value_for_all(vast, cloud):
    instance_id = _create_with_gpus(vast, 2)
    assert [g["utilization"] for g in cloud.set_gpu(instance_id, [90, 0])["gpus"]] == [90, 0]
    assert [g["utilization"] for g in cloud.set_gpu(instance_id, 5)["gpus"]] == [5, 5]


@pytest.mark.parametrize("bad", [101, -1, "50", True, None, [], [10, 20, 30], [10, "x"]])
def test_bad_utilization_is_400(vast, cloud, bad):
    instance_id = _create_with_gpus(vast, 2)
    status, body = cloud.api("PUT", f"/_devcloud/machines/{instance_id}/gpu", {"utilization": bad})
    assert status == 400 and body["error"] == "invalid_args"


def test_unknown_machine_is_404(cloud, vast):
    status, _ = cloud.api("GET", "/_devcloud/machines/42/gpu")
    assert status == 404


def test_machine_token_reads_only_its_own_gpu(vast, cloud):
    mine, other = _create_with_gpus(vast, 1), _create_with_gpus(vast, 1)
    token = cloud.machine(mine)["token"]
    cloud.set_gpu(mine, 12)
    status, body = cloud.api("GET", f"/_devcloud/machines/{mine}/gpu", key=token)
    assert status == 200 and body["gpus"][0]["utilization"] == 12
    assert cloud.api("GET", f"/_devcloud/machines/{other}/gpu", key=token)[0] == 401
    assert cloud.api("PUT", f"/_devcloud/machines/{mine}/gpu", {"utilization": 1}, key=token)[0] == 401
    assert cloud.api("GET", "/_devcloud/machines", key=token)[0] == 401
    as_account = requests.get(f"{cloud.url}/api/v1/instances/", headers={"Authorization": f"Bearer {token}"})
    assert as_account.status_code == 401


def test_agent_on_the_machine_reads_its_gpu_from_its_environment(vast, cloud, account_key):
    instance_id = _create_with_gpus(vast, 1)
    cloud.set_gpu(instance_id, 64)
    agent = (
        "import json, os, urllib.request as u; "
        "e = os.environ; "
        "r = u.Request(e['DEVCLOUD_URL'] + '/_devcloud/machines/' + e['DEVCLOUD_MACHINE_ID'] + '/gpu', "
        "headers={'Authorization': 'Bearer ' + e['DEVCLOUD_MACHINE_TOKEN']}); "
        "print(u.urlopen(r).read().decode())"
    )
    with ssh_connect(vast.wait_status(instance_id, "running"), account_key) as client:
        status, out, err = run(client, f'{sys.executable} -c "{agent}"')
    assert status == 0, err
    assert json.loads(out)["gpus"][0]["utilization"] == 64

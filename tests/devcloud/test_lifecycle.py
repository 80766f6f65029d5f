"""create -> null -> loading -> running with real SSH; stop, start and destroy on real processes."""

import os
from pathlib import Path

import paramiko
import pytest

from .helpers import process_alive, run, ssh_connect, wait_for


def test_create_goes_through_null_and_loading_to_running(vast, cloud, account_key):
    cloud.faults(boot_delay="fixed:1.0")  # null for 0.1 s, then loading for 1 s
    offer = vast.free_offer(gpu_name={"eq": "RTX 4090"}, num_gpus={"eq": 1})
    instance_id = vast.create(offer["id"], label="dumont-1")

    first = vast.instance(instance_id)
    assert first["actual_status"] is None
    assert first["intended_status"] == "running"
    assert first["label"] == "dumont-1"
    assert first["gpu_name"] == "RTX 4090" and first["num_gpus"] == 1
    assert first["machine_id"] == offer["machine_id"]

    loading = vast.wait_status(instance_id, "loading")
    assert loading["ssh_host"] == "127.0.0.1" and loading["ssh_port"]
    assert not loading["ports"]
    with pytest.raises(OSError):  # sshd is not up while loading
        ssh_connect(loading, account_key, timeout=1)

    running = vast.wait_status(instance_id, "running")
    assert running["public_ipaddr"] != running["public_ipaddr"].strip()  # vast's trailing newline
    assert running["ports"]["22/tcp"][0]["HostPort"] == str(running["ssh_port"])
    with ssh_connect(running, account_key) as client:
        assert run(client, "echo hi") == (0, "hi\n", "")


def test_exec_reports_exit_status_stderr_and_runs_in_the_disk(vast, cloud, account_key):
    instance = vast.wait_status(vast.create(), "running")
    disk = cloud.machine(instance["id"])["disk"]
    with ssh_connect(instance, account_key) as client:
        status, out, err = run(client, 'pwd; echo "$HOME"; echo oops >&2; exit 3')
    assert status == 3
    assert out.split() == [disk, disk]
    assert err == "oops\n"


def test_stdin_upload_lands_on_the_disk(vast, cloud, account_key):
    instance = vast.wait_status(vast.create(), "running")
    payload = os.urandom(1 << 20)
    with ssh_connect(instance, account_key) as client:
        assert run(client, "cat > upload.bin && wc -c < upload.bin", stdin=payload) == (0, f"{len(payload)}\n", "")
    with open(os.path.join(cloud.machine(instance["id"])["disk"], "upload.bin"), "rb") as handle:
        assert handle.read() == payload


def test_onstart_runs_with_the_create_env_and_devcloud_variables(vast, cloud):
    instance_id = vast.create(
        onstart="env > onstart.env; exec sleep 1000",
        env={"DUMONT_TOKEN": "abc", "MODE": "a b"},
    )
    vast.wait_status(instance_id, "running")
    machine = cloud.machine(instance_id)
    env_file = os.path.join(machine["disk"], "onstart.env")
    wait_for(lambda: os.path.exists(env_file) and os.path.getsize(env_file), what="onstart.env")
    env = dict(line.split("=", 1) for line in Path(env_file).read_text().splitlines() if "=" in line)
    assert env["DUMONT_TOKEN"] == "abc" and env["MODE"] == "a b"
    assert env["DEVCLOUD_MACHINE"] == machine["marker"]
    assert env["DEVCLOUD_MACHINE_ID"] == str(instance_id)
    assert env["DEVCLOUD_MACHINE_TOKEN"] == machine["token"]
    assert env["DEVCLOUD_URL"] == cloud.url
    assert env["DUMONT_GPU_BACKEND"] == "devcloud"  # the agent reads the simulated GPU because it is told
    assert env["HOME"] == machine["disk"]
    assert wait_for(lambda: cloud.machine(instance_id)["pids"], what="onstart process")


def test_env_in_vast_cli_string_form(vast, cloud):
    instance_id = vast.create(onstart='echo "$A,$B" > ab.txt', env="-e A=1 -e B='two words' -p 8000:8000")
    vast.wait_status(instance_id, "running")
    path = os.path.join(cloud.machine(instance_id)["disk"], "ab.txt")
    assert wait_for(lambda: os.path.exists(path) and Path(path).read_text()) == "1,two words\n"


def test_stop_kills_everything_and_keeps_the_disk(vast, cloud, account_key):
    instance_id = vast.create(onstart="exec sleep 1000")
    instance = vast.wait_status(instance_id, "running")
    with ssh_connect(instance, account_key) as client:
        assert run(client, "echo kept > note.txt; setsid nohup sleep 1000 > /dev/null 2>&1 < /dev/null &")[0] == 0
    pids = wait_for(lambda: len(cloud.machine(instance_id)["pids"]) >= 2 and cloud.machine(instance_id)["pids"])

    assert vast.set_state(instance_id, "stopped").json() == {"success": True}

    stopped = vast.instance(instance_id)
    assert stopped["actual_status"] == "stopped" and stopped["intended_status"] == "stopped"
    assert not stopped["ports"]
    assert not any(process_alive(pid) for pid in pids)
    machine = cloud.machine(instance_id)
    assert machine["pids"] == [] and machine["ssh_listening"] is False
    assert Path(machine["disk"], "note.txt").read_text() == "kept\n"
    with pytest.raises(OSError):
        ssh_connect(stopped, account_key, timeout=1)


def test_start_comes_back_with_the_same_host_key_and_reruns_onstart(vast, cloud, account_key):
    instance_id = vast.create(onstart="echo boot >> boots.txt; exec sleep 1000")
    instance = vast.wait_status(instance_id, "running")
    with ssh_connect(instance, account_key) as client:
        first_key = client.get_transport().get_remote_server_key()
    vast.set_state(instance_id, "stopped")

    assert vast.set_state(instance_id, "running").json() == {"success": True}
    assert vast.instance(instance_id)["actual_status"] == "loading"
    instance = vast.wait_status(instance_id, "running")
    with ssh_connect(instance, account_key) as client:
        assert client.get_transport().get_remote_server_key() == first_key
        wait_for(lambda: run(client, "cat boots.txt")[1] == "boot\nboot\n", what="second onstart")


def test_stop_during_loading_wins_over_the_boot(vast, cloud):
    cloud.faults(boot_delay="fixed:0.4")
    instance_id = vast.create(onstart="exec sleep 1000")
    vast.wait_status(instance_id, "loading")
    vast.set_state(instance_id, "stopped")
    vast.boots_done()  # the boot the stop interrupted would have ended by now
    assert vast.instance(instance_id)["actual_status"] == "stopped"
    assert cloud.machine(instance_id)["pids"] == []


def test_destroy_removes_dir_processes_and_instance(vast, cloud, account_key):
    instance_id = vast.create(onstart="exec sleep 1000")
    instance = vast.wait_status(instance_id, "running")
    with ssh_connect(instance, account_key) as client:
        run(client, "setsid nohup sleep 1000 > /dev/null 2>&1 < /dev/null &")
    machine = wait_for(lambda: (m := cloud.machine(instance_id)) and len(m["pids"]) >= 2 and m)

    assert vast.destroy(instance_id).json() == {"success": True}

    assert vast.instance(instance_id) is None
    assert not os.path.exists(machine["dir"])
    assert not any(process_alive(pid) for pid in machine["pids"])
    assert cloud.machine(instance_id) is None
    with pytest.raises((OSError, paramiko.SSHException)):
        ssh_connect(instance, account_key, timeout=1)


def test_unknown_instances(vast):
    assert vast.instance(999) is None
    gone = vast.destroy(999)
    assert gone.status_code == 404 and gone.json()["error"] == "not_found"
    refused = vast.set_state(999, "running")
    assert refused.status_code == 200 and refused.json()["success"] is False


def test_destroyed_instance_reads_as_null_and_destroys_as_not_found(vast):
    instance_id = vast.create()
    vast.destroy(instance_id)
    assert vast.instance(instance_id) is None
    assert vast.destroy(instance_id).status_code == 404


def test_bad_state_is_invalid_args(vast):
    instance_id = vast.create()
    reply = vast.set_state(instance_id, "frozen")
    assert reply.status_code == 400 and reply.json()["error"] == "invalid_args"
    assert vast.call("PUT", f"/api/v0/instances/{instance_id}/", json={}).status_code == 400


def test_label_can_be_changed(vast):
    instance_id = vast.create(label="before")
    reply = vast.call("PUT", f"/api/v0/instances/{instance_id}/", json={"label": "after"})
    assert reply.json() == {"success": True}
    assert vast.instance(instance_id)["label"] == "after"


@pytest.mark.parametrize(
    "body",
    [{"disk": 4}, {"image": ""}, {"image": None}, {"disk": "lots"}, {"env": ["A=1"]}, {"target_state": "paused"}],
)
def test_create_validation_is_invalid_args(vast, body):
    reply = vast.create_reply(**body)
    assert reply.status_code == 400
    assert reply.json()["success"] is False and reply.json()["error"] == "invalid_args"


def test_create_on_unknown_or_rented_offer_is_no_such_ask(vast):
    assert vast.create_reply(123).json()["error"] == "no_such_ask"
    offer = vast.free_offer()
    vast.create(offer["id"])
    taken = vast.create_reply(offer["id"])
    assert taken.status_code == 404
    assert taken.json() == {"success": False, "error": "no_such_ask", "msg": taken.json()["msg"]}


def test_create_stopped_does_not_boot(vast, cloud):
    instance_id = vast.create(target_state="stopped", onstart="exec sleep 1000")
    vast.boots_done()
    instance = vast.instance(instance_id)
    assert instance["actual_status"] == "stopped" and instance["intended_status"] == "stopped"
    assert cloud.machine(instance_id)["pids"] == []


def _threads(cloud) -> int:
    with open(f"/proc/{cloud.process.pid}/status") as status:
        return int(next(line for line in status if line.startswith("Threads:")).split()[1])


def test_machines_that_come_and_go_leave_no_threads_behind(vast, cloud, account_key):
    vast.search(limit=1)  # the client's keep-alive connection has its server thread from here on
    baseline = _threads(cloud)
    instance_ids = [vast.create(onstart="exec sleep 1000") for _ in range(5)]
    for instance_id in instance_ids:
        with ssh_connect(vast.wait_status(instance_id, "running"), account_key) as client:
            run(client, "true")
    vast.set_state(instance_ids[0], "stopped")
    for instance_id in instance_ids:
        vast.destroy(instance_id)
    wait_for(lambda: _threads(cloud) <= baseline, what=f"threads back to {baseline}")

"""The machine's SSH server: keys, exec under load, SFTP, and no leaked threads."""

import threading
from pathlib import Path

import paramiko
import pytest

from devcloud.testing import new_ssh_key

from .helpers import run, ssh_connect, wait_for


@pytest.fixture
def instance(vast):
    return vast.wait_status(vast.create(), "running")


def test_password_auth_is_refused(instance):
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    with pytest.raises(paramiko.AuthenticationException):
        client.connect(
            "127.0.0.1",
            port=instance["ssh_port"],
            username="root",
            password="root",
            allow_agent=False,
            look_for_keys=False,
            timeout=5,
        )
    client.close()


def test_unknown_key_is_refused(instance):
    stranger, _ = new_ssh_key()
    with pytest.raises(paramiko.AuthenticationException):
        ssh_connect(instance, stranger)


def test_account_key_reaches_only_instances_created_after_it(vast, cloud, instance):
    late_key, line = new_ssh_key()
    assert cloud.api("POST", "/api/v0/ssh/", {"ssh_key": line})[0] == 200
    assert line in [key["key"] for key in cloud.api("GET", "/api/v0/ssh/")[1]]

    with pytest.raises(paramiko.AuthenticationException):
        ssh_connect(instance, late_key)
    newer = vast.wait_status(vast.create(), "running")
    with ssh_connect(newer, late_key) as client:
        assert run(client, "true")[0] == 0


def test_adding_the_same_account_key_twice_keeps_one(cloud):
    _, line = new_ssh_key()
    first = cloud.api("POST", "/api/v0/ssh/", {"ssh_key": line})[1]["key"]
    again = cloud.api("POST", "/api/v0/ssh/", {"ssh_key": line + " other-comment"})[1]["key"]
    assert first["id"] == again["id"]


@pytest.mark.parametrize("body, error", [({}, "no_ssh_key"), ({"ssh_key": "not a key!"}, "invalid_args")])
def test_bad_account_key_is_400(cloud, body, error):
    status, reply = cloud.api("POST", "/api/v0/ssh/", body)
    assert status == 400 and reply["error"] == error


def test_instance_key_reaches_that_instance_only(vast, instance):
    key, line = new_ssh_key()
    other = vast.wait_status(vast.create(), "running")
    reply = vast.call("POST", f"/api/v0/instances/{instance['id']}/ssh/", json={"ssh_key": line})
    assert reply.json()["success"] is True
    with ssh_connect(instance, key) as client:
        assert run(client, "echo in") == (0, "in\n", "")
    with pytest.raises(paramiko.AuthenticationException):
        ssh_connect(other, key)
    assert vast.call("POST", "/api/v0/instances/1/ssh/", json={"ssh_key": line}).status_code == 404


def test_concurrent_execs_on_one_connection(instance, account_key):
    results = {}
    with ssh_connect(instance, account_key) as client:

        def one(n):
            results[n] = run(client, f"sleep 0.2; echo {n}; exit {n % 7}")

        threads = [threading.Thread(target=one, args=(n,)) for n in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
    assert results == {n: (n % 7, f"{n}\n", "") for n in range(12)}


def test_exec_env_requests_reach_the_command(instance, account_key):
    with ssh_connect(instance, account_key) as client:
        _, out, _ = client.exec_command('echo "$GREETING"', environment={"GREETING": "hello"})
        assert out.read() == b"hello\n"


def test_background_child_does_not_hold_the_session(instance, account_key):
    with ssh_connect(instance, account_key) as client:
        assert run(client, "nohup sleep 30 & echo started")[:2] == (0, "started\n")


def test_shell_is_refused_with_a_message(instance, account_key):
    with ssh_connect(instance, account_key) as client:
        channel = client.get_transport().open_session()
        channel.get_pty()
        channel.invoke_shell()
        assert channel.recv_exit_status() == 1
        assert b"not supported" in channel.recv_stderr(1000)


def test_sftp_puts_and_gets_relative_to_the_disk(cloud, instance, account_key, tmp_path):
    local = tmp_path / "agent.py"
    local.write_text("print('agent')\n")
    with ssh_connect(instance, account_key) as client:
        sftp = client.open_sftp()
        sftp.mkdir("opt")
        sftp.put(str(local), "opt/agent.py")
        assert sftp.listdir("opt") == ["agent.py"]
        assert sftp.stat("opt/agent.py").st_size == local.stat().st_size
        sftp.get("opt/agent.py", str(tmp_path / "back.py"))
        sftp.close()
    assert (tmp_path / "back.py").read_text() == "print('agent')\n"
    assert Path(cloud.machine(instance["id"])["disk"], "opt", "agent.py").read_text() == "print('agent')\n"


def _threads(cloud) -> int:
    with open(f"/proc/{cloud.process.pid}/status") as status:
        return int(next(line for line in status if line.startswith("Threads:")).split()[1])


def test_many_execs_and_connections_leave_no_threads_behind(cloud, instance, account_key):
    baseline = _threads(cloud)
    for _ in range(3):
        with ssh_connect(instance, account_key) as client:
            for n in range(10):
                assert run(client, f"echo {n}")[1] == f"{n}\n"
    with ssh_connect(instance, account_key) as client:
        client.exec_command("sleep 30")  # the client goes away mid-command
    wait_for(lambda: _threads(cloud) <= baseline, what=f"threads back to {baseline}")

"""Activity signals, parsed from fixture text and read from files laid out like /proc and /dev."""

from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from agent.activity import (
    ActivityMonitor,
    CpuTimes,
    Login,
    busy_jupyter_kernels,
    cpu_percent,
    jupyter_runtime_dirs,
    net_bytes_per_s,
    parse_loadavg,
    parse_net_dev,
    parse_proc_stat,
    parse_utmp,
    terminal_sessions,
)

UTMP_RECORD_SIZE = 384


def utmp_record(kind: int, pid: int, line: str, user: str, host: str = "") -> bytes:
    """A glibc struct utmp written field by field at its documented offsets."""
    record = bytearray(UTMP_RECORD_SIZE)
    record[0:2] = kind.to_bytes(2, "little")
    record[4:8] = pid.to_bytes(4, "little")
    record[8:8 + len(line)] = line.encode()  # ut_line[32]
    record[44:44 + len(user)] = user.encode()  # ut_user[32], after ut_id[4]
    record[76:76 + len(host)] = host.encode()  # ut_host[256]
    return bytes(record)


def test_utmp_yields_the_logged_in_sessions_only():
    data = b"".join([
        utmp_record(2, 0, "~", "reboot"),  # BOOT_TIME
        utmp_record(7, 4242, "pts/0", "alice", "10.0.0.1"),  # USER_PROCESS
        utmp_record(8, 4300, "pts/1", ""),  # DEAD_PROCESS: logged out
        utmp_record(7, 4400, "pts/2", "root"),
    ])

    assert parse_utmp(data) == [Login("alice", "pts/0", 4242), Login("root", "pts/2", 4400)]
    assert parse_utmp(data[:-10]) == [Login("alice", "pts/0", 4242)]  # a torn last record is skipped


def test_sessions_count_live_logins_and_the_latest_keystroke(tmp_path):
    (tmp_path / "dev" / "pts").mkdir(parents=True)
    (tmp_path / "proc" / "4242").mkdir(parents=True)
    (tmp_path / "proc" / "4400").mkdir(parents=True)
    for name, typed_at in (("0", 1000.0), ("2", 1090.0), ("3", 1099.0)):
        (tmp_path / "dev" / "pts" / name).touch()
        os.utime(tmp_path / "dev" / "pts" / name, (typed_at, typed_at))
    utmp = tmp_path / "utmp"
    utmp.write_bytes(
        utmp_record(7, 4242, "pts/0", "alice")
        + utmp_record(7, 4400, "pts/2", "bob")
        + utmp_record(7, 9999, "pts/3", "gone")  # its process died without logging out
        + utmp_record(7, 4400, "pts/7", "bob")  # its terminal no longer exists
    )

    sessions = terminal_sessions(str(utmp), now=1100.0, dev_dir=str(tmp_path / "dev"), proc_dir=str(tmp_path / "proc"))

    assert sessions == (2, 10.0)
    assert terminal_sessions(str(tmp_path / "missing"), now=1100.0) == (0, None)


PROC_STAT_BEFORE = """cpu  1000 50 300 8000 100 0 50 0 0 0
cpu0 500 25 150 4000 50 0 25 0 0 0
intr 12345
"""
PROC_STAT_AFTER = """cpu  1300 50 400 8500 100 0 50 0 40 0
cpu0 650 25 200 4250 50 0 25 0 20 0
"""


def test_cpu_percent_is_busy_time_over_all_time_between_two_reads():
    before, after = parse_proc_stat(PROC_STAT_BEFORE), parse_proc_stat(PROC_STAT_AFTER)

    assert before == CpuTimes(busy=1400, total=9500)
    assert cpu_percent(before, after) == pytest.approx(100 * 400 / 900, abs=0.1)  # guest time counted once
    assert cpu_percent(after, after) == 0.0
    with pytest.raises(ValueError):
        parse_proc_stat("intr 1 2 3\n")


NET_DEV = (Path(__file__).parent / "fixtures" / "proc_net_dev.txt").read_text()  # as the kernel writes it


def test_network_rates_leave_out_loopback_and_ignore_counter_resets():
    before = parse_net_dev(NET_DEV)
    assert before == {"eth0": (1_000_000, 500_000), "docker0": (2000, 3000)}

    after = {"eth0": (1_250_000, 600_000), "docker0": (0, 0), "wg0": (10**9, 10**9)}  # reset, new
    assert net_bytes_per_s(before, after, 10.0) == (25_000.0, 10_000.0)
    assert net_bytes_per_s(before, after, 0.0) == (0.0, 0.0)


def test_load_is_the_one_minute_average():
    assert parse_loadavg("0.52 0.58 0.59 1/389 12345\n") == 0.52


def fake_proc(root: Path, *, stat: str, net: str, load: str) -> None:
    (root / "net").mkdir(parents=True, exist_ok=True)
    (root / "stat").write_text(stat)
    (root / "net" / "dev").write_text(net)
    (root / "loadavg").write_text(load)


def test_the_monitor_reports_rates_over_the_time_since_its_last_read(tmp_path):
    proc, now = tmp_path / "proc", [100.0]
    fake_proc(proc, stat=PROC_STAT_BEFORE, net=NET_DEV, load="1.50 1.00 0.50 2/100 7\n")
    monitor = ActivityMonitor(
        env={"JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")},
        proc_dir=str(proc),
        utmp_path=str(tmp_path / "utmp"),
        clock=lambda: now[0],
    )
    fake_proc(proc, stat=PROC_STAT_AFTER, net=NET_DEV.replace("1000000", "1200000"), load="2.25 1 1 1/1 1")
    now[0] = 110.0

    activity = monitor.read()

    assert activity.cpu_percent == pytest.approx(44.4, abs=0.1)
    assert (activity.net_rx_bytes_per_s, activity.net_tx_bytes_per_s) == (20_000.0, 0.0)
    assert activity.cpu_load_1m == 2.25
    assert (activity.ssh_sessions, activity.last_input_age_s, activity.jupyter_busy_kernels) == (0, None, None)


def test_the_monitor_copes_without_proc(tmp_path):
    monitor = ActivityMonitor(env={}, proc_dir=str(tmp_path / "nothing"), utmp_path=str(tmp_path / "utmp"))
    activity = monitor.read()
    assert (activity.cpu_percent, activity.cpu_load_1m, activity.net_rx_bytes_per_s) == (0.0, 0.0, 0.0)


def test_jupyter_runtime_dirs_follow_jupyters_rules(tmp_path):
    home = tmp_path / "home"
    assert jupyter_runtime_dirs({}, home) == [home / ".local/share/jupyter/runtime"]
    assert jupyter_runtime_dirs({"XDG_DATA_HOME": "/x"}, home) == [Path("/x/jupyter/runtime")]
    assert jupyter_runtime_dirs({"JUPYTER_DATA_DIR": "/d", "XDG_DATA_HOME": "/x"}, home) == [Path("/d/runtime")]
    assert jupyter_runtime_dirs({"JUPYTER_RUNTIME_DIR": "/r", "JUPYTER_DATA_DIR": "/d"}, home) == [Path("/r")]


class FakeJupyter:
    """GET /lab/api/kernels as jupyter_server answers it, behind a token."""

    def __init__(self, kernels: list[dict], token: str):
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests.append(self.path)
                if self.headers.get("Authorization") != f"token {token}":
                    self.send_response(403)
                    self.end_headers()
                    return
                body = json.dumps(kernels).encode() if self.path == "/lab/api/kernels" else b"{}"
                self.send_response(200 if self.path == "/lab/api/kernels" else 404)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.01,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/lab/"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def jupyter():
    server = FakeJupyter(
        [
            {"id": "a", "execution_state": "busy"},
            {"id": "b", "execution_state": "idle"},
            {"id": "c", "execution_state": "busy"},
        ],
        token="nb-token",
    )
    yield server
    server.close()


def test_busy_kernels_are_counted_from_the_servers_runtime_files(tmp_path, jupyter):
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    (runtime / "jpserver-100.json").write_text(json.dumps({"url": jupyter.url, "token": "nb-token", "pid": 100}))
    (runtime / "jpserver-100-open.html").write_text("<html></html>")  # not a server description

    assert busy_jupyter_kernels([runtime]) == 2
    assert jupyter.requests == ["/lab/api/kernels"]


def test_no_jupyter_server_is_none_not_zero(tmp_path, jupyter):
    runtime = tmp_path / "runtime"
    assert busy_jupyter_kernels([runtime]) is None  # no runtime dir at all
    runtime.mkdir()
    jupyter.close()  # a stale file left by a server that is gone
    (runtime / "nbserver-7.json").write_text(json.dumps({"url": jupyter.url, "token": "nb-token"}))
    (runtime / "jpserver-8.json").write_text("{half written")
    assert busy_jupyter_kernels([runtime]) is None

"""Heartbeat ingestion benchmark: the real endpoint under gunicorn on PostgreSQL.

    .venv/bin/python bench/heartbeat_bench.py [--agents 5000] [--seconds 20] [--connections 32]

Creates a scratch database (`<name>_bench`, dropped afterwards) with N instances and agent
tokens, starts gunicorn (production settings: DEBUG off; one sync worker per CPU) on loopback, and drives
POST /api/v1/agent/status with wrk (Debian package `wrk`, installed if missing), every request
a different agent sending one sample, round-robin over all agents. Prints heartbeats/s and
latency percentiles, the target (>= 1000/s, p99 < 100 ms on a 2-core machine: 5,000 machines
at a 5 s interval), and as a peer in the same run the same server answering a bare 404 (the
floor of Django + gunicorn on this machine).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LUA = r"""
local bodies, headers = {}, {}
local n = 0
function init(args)
  for line in io.lines(args[1]) do
    local token, body = line:match("^(%S+) (.*)$")
    n = n + 1
    headers[n] = {["Authorization"] = "Agent " .. token, ["Content-Type"] = "application/json"}
    bodies[n] = body
  end
  i = math.random(n)
end
function request()
  i = i % n + 1
  return wrk.format("POST", "/api/v1/agent/status", headers[i], bodies[i])
end
function done(summary, latency, requests)
  io.write(string.format("RESULT requests=%d errors=%d non2xx=%d duration_us=%d p50=%d p90=%d p99=%d max=%d\n",
    summary.requests, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max))
end
"""


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=5000)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="gunicorn worker processes")
    parser.add_argument("--worker-class", default="sync", choices=["sync", "gthread"])
    parser.add_argument("--threads", type=int, default=1, help="threads per worker (gthread)")
    parser.add_argument("--port", type=int, default=8931)
    return parser.parse_args()


def scratch_database_url() -> str:
    base = os.environ.get("DATABASE_URL", "postgres://postgres:postgres@127.0.0.1:5432/dumont")
    parsed = urlparse(base)
    if parsed.scheme not in ("postgres", "postgresql"):
        sys.exit("the benchmark needs PostgreSQL: set DATABASE_URL=postgres://...")
    return parsed._replace(path=parsed.path + "_bench").geturl()


def run(cmd, env, **kwargs):
    return subprocess.run(cmd, env=env, cwd=ROOT, check=True, **kwargs)


def prepare(env: dict, agents: int, lines_path: Path) -> None:
    """Fresh database, migrated, with `agents` running instances and their tokens."""
    name = urlparse(env["DATABASE_URL"]).path.lstrip("/")
    admin_url = urlparse(env["DATABASE_URL"])._replace(path="/postgres").geturl()
    run([sys.executable, "-c", f"""
import psycopg
with psycopg.connect({admin_url!r}, autocommit=True) as c:
    c.execute('DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    c.execute('CREATE DATABASE "{name}"')
"""], env)
    run([sys.executable, "manage.py", "migrate", "-v", "0"], env)
    run([sys.executable, "-c", f"""
import django, json, time
django.setup()
from django.contrib.auth import get_user_model
from apps.instances.models import Agent, Instance
from apps.instances.agent_services import token_digest
import secrets
user = get_user_model().objects.create_user("bench")
instances = Instance.objects.bulk_create(
    Instance(user=user, label=f"m{{i}}", image="img", status="running") for i in range({agents}))
tokens = [secrets.token_urlsafe(32) for _ in instances]
Agent.objects.bulk_create(Agent(instance=i, token_hash=token_digest(t)) for i, t in zip(instances, tokens))
with open({str(lines_path)!r}, "w") as out:
    for instance, token in zip(instances, tokens):
        body = {{"instance_id": str(instance.id), "agent_version": "bench", "seq": 1, "samples": [
            {{"at": time.time(), "gpus": [{{"index": 0, "utilization": 3.0, "memory_used_mb": 1200,
              "memory_total_mb": 24564, "power_w": 71.5, "temperature_c": 41, "processes": [4242]}}],
             "activity": {{"ssh_sessions": 1, "last_input_age_s": 420.0, "cpu_percent": 2.5,
                           "cpu_load_1m": 0.3, "net_rx_bytes_per_s": 1800, "net_tx_bytes_per_s": 900}}}}]}}
        out.write(token + " " + json.dumps(body, separators=(",", ":")) + "\\n")
"""], env)


def start_gunicorn(env: dict, port: int, args) -> subprocess.Popen:
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "dumont.wsgi", "--bind", f"127.0.0.1:{port}",
         "--workers", str(args.workers), "--worker-class", args.worker_class, "--threads", str(args.threads),
         "--backlog", "2048", "--log-level", "warning"],
        env=env, cwd=ROOT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if subprocess.run(["bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{port}"], capture_output=True).returncode == 0:
            return server
        time.sleep(0.2)
    server.kill()
    sys.exit("gunicorn did not start")


def wrk(port: int, seconds: int, connections: int, script: Path, script_args: list[str], path: str = "/") -> dict:
    out = subprocess.run(
        ["wrk", "-t", "2", "-c", str(connections), "-d", f"{seconds}s", "-s", str(script),
         f"http://127.0.0.1:{port}{path}", "--", *script_args],
        capture_output=True, text=True, check=True,
    ).stdout
    match = re.search(r"RESULT (.*)", out)
    if not match:
        sys.exit(f"wrk printed no result:\n{out}")
    fields = dict(item.split("=") for item in match.group(1).split())
    result = {key: int(value) for key, value in fields.items()}
    result["rate"] = result["requests"] / (result["duration_us"] / 1e6)
    return result


def report(name: str, r: dict) -> None:
    ms = lambda us: us / 1000  # noqa: E731
    print(f"{name:<28} {r['rate']:8.0f}/s   p50 {ms(r['p50']):6.1f} ms   p90 {ms(r['p90']):6.1f} ms   "
          f"p99 {ms(r['p99']):6.1f} ms   max {ms(r['max']):7.1f} ms   errors {r['errors']}   non-2xx {r['non2xx']}")


def main() -> None:
    args = parse_args()
    if not shutil.which("wrk"):
        subprocess.run(["bash", "-c", ". scripts/lib.sh && apt_install wrk"], cwd=ROOT, check=True)
    env = {**os.environ, "DATABASE_URL": scratch_database_url(), "DEBUG": "false",
           "SECRET_KEY": "bench-" + "x" * 50, "ALLOWED_HOSTS": "127.0.0.1", "LOG_LEVEL": "ERROR",
           "DJANGO_SETTINGS_MODULE": "dumont.settings"}
    with tempfile.TemporaryDirectory() as scratch:
        lines, script, peer_script = Path(scratch) / "agents.txt", Path(scratch) / "hb.lua", Path(scratch) / "peer.lua"
        script.write_text(LUA)
        peer_script.write_text(LUA.replace('wrk.format("POST", "/api/v1/agent/status", headers[i], bodies[i])',
                                           'wrk.format("GET", "/bench-peer-404", {}, nil)'))
        print(f"preparing {args.agents} agents …", flush=True)
        prepare(env, args.agents, lines)
        server = start_gunicorn(env, args.port, args)
        try:
            wrk(args.port, 3, args.connections, script, [str(lines)])  # warm-up: connections, caches
            heartbeats = wrk(args.port, args.seconds, args.connections, script, [str(lines)])
            peer = wrk(args.port, max(5, args.seconds // 2), args.connections, peer_script, [str(lines)])
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"\n{os.cpu_count()} CPUs, gunicorn {args.workers} {args.worker_class} workers × {args.threads} threads, "
          f"wrk {args.connections} connections, "
          f"{args.agents} agents, {args.seconds} s")
    report("heartbeats (1 sample each)", heartbeats)
    report("peer: bare 404, same server", peer)
    ok = heartbeats["rate"] >= 1000 and heartbeats["p99"] < 100_000 and not heartbeats["non2xx"]
    print(f"target >= 1000/s with p99 < 100 ms: {'met' if ok else 'NOT met'}")
    print(json.dumps({"heartbeats": heartbeats, "peer_404": peer}))


if __name__ == "__main__":
    main()

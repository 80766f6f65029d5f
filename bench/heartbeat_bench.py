"""Heartbeat ingestion benchmark: the real endpoint under gunicorn on PostgreSQL.

    .venv/bin/python bench/heartbeat_bench.py [--agents 5000] [--seconds 20] [--connections 32]
        [--compare REV [--rounds 2]]

Creates a scratch database (`<name>_bench`, dropped afterwards) with N instances and agent
tokens, starts gunicorn (production settings: DEBUG off; one sync worker per CPU) on loopback, and drives
POST /api/v1/agent/status with wrk (Debian package `wrk`, installed if missing), every request
a different agent sending one sample, round-robin over all agents. Prints heartbeats/s and
latency percentiles, the target (>= 1000/s, p99 < 100 ms on a 2-core machine: 5,000 machines
at a 5 s interval), and as a peer in the same run the same server answering a bare 404 (the
floor of Django + gunicorn on this machine).

With --compare REV the same measurement also runs against the server of git revision REV (its
tree exported to a scratch directory, the same venv, the same database: the tables did not
change names across the layered split), alternating old and new for --rounds rounds, and the
ratio of the two medians is printed.
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
    parser.add_argument("--compare", metavar="REV", help="also measure the server of this git revision")
    parser.add_argument("--rounds", type=int, default=2, help="old/new rounds with --compare")
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
from apps.agents.models import Agent
from apps.instances.models import Instance
from apps.agents.services import token_digest
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


def start_gunicorn(env: dict, port: int, args, tree: Path = ROOT) -> subprocess.Popen:
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "dumont.wsgi", "--bind", f"127.0.0.1:{port}",
         "--workers", str(args.workers), "--worker-class", args.worker_class, "--threads", str(args.threads),
         "--backlog", "2048", "--log-level", "warning"],
        env={**env, "PYTHONPATH": str(tree)}, cwd=tree,
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


def export_revision(rev: str, into: Path) -> Path:
    """The tree of git revision `rev`, written to `into` (nothing of it is committed)."""
    into.mkdir()
    archive = subprocess.run(["git", "archive", rev], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def measure(env: dict, args, tree: Path, script: Path, lines: Path, *, peer_script: Path | None = None):
    server = start_gunicorn(env, args.port, args, tree)
    try:
        wrk(args.port, 3, args.connections, script, [str(lines)])  # warm-up: connections, caches
        heartbeats = wrk(args.port, args.seconds, args.connections, script, [str(lines)])
        peer = wrk(args.port, max(5, args.seconds // 2), args.connections, peer_script, [str(lines)]) \
            if peer_script else None
    finally:
        server.terminate()
        server.wait(timeout=30)
    return heartbeats, peer


def median_rate(runs: list[dict]) -> float:
    rates = sorted(run["rate"] for run in runs)
    middle = len(rates) // 2
    return rates[middle] if len(rates) % 2 else (rates[middle - 1] + rates[middle]) / 2


def main() -> None:
    args = parse_args()
    if not shutil.which("wrk"):
        subprocess.run(["bash", "-c", ". scripts/lib.sh && apt_install wrk"], cwd=ROOT, check=True)
    env = {**os.environ, "DATABASE_URL": scratch_database_url(), "DEBUG": "false", "SECURE_SSL_REDIRECT": "false",
           "SECRET_KEY": "bench-" + "x" * 50, "ALLOWED_HOSTS": "127.0.0.1", "LOG_LEVEL": "ERROR",
           "DJANGO_SETTINGS_MODULE": "dumont.settings"}
    with tempfile.TemporaryDirectory() as scratch:
        lines, script, peer_script = Path(scratch) / "agents.txt", Path(scratch) / "hb.lua", Path(scratch) / "peer.lua"
        script.write_text(LUA)
        peer_script.write_text(LUA.replace('wrk.format("POST", "/api/v1/agent/status", headers[i], bodies[i])',
                                           'wrk.format("GET", "/bench-peer-404", {}, nil)'))
        old_tree = export_revision(args.compare, Path(scratch) / "old") if args.compare else None
        print(f"preparing {args.agents} agents …", flush=True)
        prepare(env, args.agents, lines)
        heartbeats, peer = measure(env, args, ROOT, script, lines, peer_script=peer_script)
        new_runs, old_runs = [heartbeats], []
        for _ in range(args.rounds if old_tree else 0):
            old_runs.append(measure(env, args, old_tree, script, lines)[0])
            if len(new_runs) < args.rounds:
                new_runs.append(measure(env, args, ROOT, script, lines)[0])
    print(f"\n{os.cpu_count()} CPUs, gunicorn {args.workers} {args.worker_class} workers × {args.threads} threads, "
          f"wrk {args.connections} connections, "
          f"{args.agents} agents, {args.seconds} s")
    for number, run in enumerate(new_runs, 1):
        report(f"heartbeats, this tree #{number}", run)
    for number, run in enumerate(old_runs, 1):
        report(f"heartbeats, {args.compare} #{number}", run)
    report("peer: bare 404, same server", peer)
    ok = heartbeats["rate"] >= 1000 and heartbeats["p99"] < 100_000 and not heartbeats["non2xx"]
    print(f"target >= 1000/s with p99 < 100 ms: {'met' if ok else 'NOT met'}")
    if old_runs:
        ratio = median_rate(new_runs) / median_rate(old_runs)
        print(f"this tree / {args.compare} (median heartbeats/s): {ratio:.3f}"
              f" ({'within' if ratio >= 0.9 else 'NOT within'} 10%)")
    print(json.dumps({"heartbeats": new_runs, "old": old_runs, "peer_404": peer}))


if __name__ == "__main__":
    main()

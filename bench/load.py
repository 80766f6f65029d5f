"""Load: 1,000 agents heartbeating and 50 users on the pages and the API, together, for 10 minutes.

    .venv/bin/python bench/load.py [--agents 1000] [--users 50] [--seconds 600]
        [--agent-interval 10] [--user-interval 5] [--workers 4]

The stack is make run's, on PostgreSQL: gunicorn for the web (DEBUG off, as in production; sync
workers, 2 per CPU, so that a slow page does not hold a heartbeat up), a
Celery worker and beat (the hibernation tick, the reconciler and the rest run over every
instance as they would), Redis, devcloud as the provider. A scratch database (`<name>_load`,
dropped afterwards) holds the users, each with agents/users running instances whose agents
heartbeat every --agent-interval seconds (the agent's default, 10 s; busy GPUs: nothing
hibernates). Each user sends, every --user-interval seconds (an open instance page polls its
agent panel every 5 s), one request of a browser tab and a script in turn: the instance list
page, an instance's page and its HTMX row, the savings page, and the API's instance list,
instance detail, snapshots and savings.

The load is open: every request is due at a fixed time, and its latency counts from then (a slow
server cannot slow the clients down and hide its queue). Prints per route: requests, errors,
p50/p90/p99/max; heartbeats/s; and the targets: 0 errors, heartbeat p99 under 100 ms.
"""

from __future__ import annotations

import argparse
import heapq
import http.client
import json
import os
import queue
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.heartbeat_bench import run, start_gunicorn

USER_ROUTES = ("page: instance list", "page: instance", "page: instance row (htmx)", "page: savings",
               "api: instances", "api: instance", "api: snapshots", "api: savings")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=600)
    parser.add_argument("--warmup", type=int, default=10, help="seconds of load before measuring")
    parser.add_argument("--agent-interval", type=float, default=10.0)
    parser.add_argument("--user-interval", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=16, help="client threads (connections)")
    parser.add_argument("--workers", type=int, default=2 * (os.cpu_count() or 1), help="gunicorn worker processes")
    parser.add_argument("--worker-class", default="sync", choices=["sync", "gthread"])
    parser.add_argument("--threads", type=int, default=1, help="threads per gunicorn worker (gthread)")
    parser.add_argument("--port", type=int, default=8932)
    parser.add_argument("--devcloud-port", type=int, default=8933)
    return parser.parse_args()


def scratch_env(args) -> dict:
    base = urlparse(os.environ.get("DATABASE_URL", "postgres://postgres:postgres@127.0.0.1:5432/dumont"))
    if base.scheme not in ("postgres", "postgresql"):
        sys.exit("the benchmark needs PostgreSQL: set DATABASE_URL=postgres://...")
    devcloud_key = "load-" + "k" * 24
    return {**os.environ, "DATABASE_URL": base._replace(path=base.path + "_load").geturl(),
            "REDIS_URL": os.environ.get("LOAD_REDIS_URL", "redis://127.0.0.1:6379/12"),
            "DEBUG": "false", "SECURE_SSL_REDIRECT": "false", "SESSION_COOKIE_SECURE": "false",
            "CSRF_COOKIE_SECURE": "false", "SECRET_KEY": "load-" + "x" * 50, "ALLOWED_HOSTS": "127.0.0.1",
            "LOG_LEVEL": "WARNING", "DJANGO_SETTINGS_MODULE": "dumont.settings",
            "VAST_API_URL": f"http://127.0.0.1:{args.devcloud_port}", "VAST_API_KEY": devcloud_key,
            "DUMONT_SNAPSHOT_MASTER_KEY": "4c" * 32,
            "DUMONT_SNAPSHOT_S3_ACCESS_KEY": "load", "DUMONT_SNAPSHOT_S3_SECRET_KEY": "load-secret",
            "DUMONT_SNAPSHOT_CREDENTIALS": "shared", "DUMONT_AGENT_INTERVAL": str(args.agent_interval)}


PREPARE = r"""
import json, secrets, sys, time
import django
django.setup()
from django.contrib.auth import get_user_model
from django.contrib.sessions.backends.db import SessionStore
from rest_framework_simplejwt.tokens import AccessToken
from apps.agents.models import Agent
from apps.agents.services import token_digest
from apps.instances.models import Instance
from datetime import timedelta

agents, users, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
User = get_user_model()
people = [User.objects.create_user(f"load{n}") for n in range(users)]
instances = Instance.objects.bulk_create(
    Instance(user=people[n % users], label=f"m{n}", image="img", status="running", gpu_name="RTX 4090",
             price_per_hour="0.40") for n in range(agents))
tokens = [secrets.token_urlsafe(32) for _ in instances]
Agent.objects.bulk_create(Agent(instance=i, token_hash=token_digest(t), status="healthy")
                          for i, t in zip(instances, tokens))
mine = {person.pk: [] for person in people}
for instance in instances:
    mine.setdefault(instance.user_id, []).append(str(instance.id))
plan = {"agents": [], "users": []}
for instance, token in zip(instances, tokens):
    plan["agents"].append({"token": token, "instance_id": str(instance.id)})
for person in people:
    session = SessionStore()
    session["_auth_user_id"] = str(person.pk)
    session["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
    session["_auth_user_hash"] = person.get_session_auth_hash()
    session.create()
    token = AccessToken.for_user(person)
    token.set_exp(lifetime=timedelta(hours=6))
    plan["users"].append({"session": session.session_key, "jwt": str(token), "instances": mine[person.pk]})
json.dump(plan, open(out, "w"))
"""


def prepare(env: dict, args, plan_path: Path) -> dict:
    name = urlparse(env["DATABASE_URL"]).path.lstrip("/")
    admin_url = urlparse(env["DATABASE_URL"])._replace(path="/postgres").geturl()
    drop_database(env, admin_url, name)
    run([sys.executable, "-c", f"""
import psycopg
with psycopg.connect({admin_url!r}, autocommit=True) as c:
    c.execute('CREATE DATABASE "{name}"')
"""], env)
    run([sys.executable, "manage.py", "migrate", "-v", "0"], env)
    run([sys.executable, "-c", PREPARE, str(args.agents), str(args.users), str(plan_path)], env)
    return json.loads(plan_path.read_text())


def drop_database(env: dict, admin_url: str, name: str) -> None:
    run([sys.executable, "-c", f"""
import psycopg
with psycopg.connect({admin_url!r}, autocommit=True) as c:
    c.execute('DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
"""], env)


def heartbeat(agent: dict, seq: int) -> tuple[str, str, dict, bytes]:
    body = {"instance_id": agent["instance_id"], "agent_version": "load", "seq": seq, "samples": [
        {"at": time.time(), "gpus": [{"index": 0, "utilization": 87.0, "memory_used_mb": 20100,
                                      "memory_total_mb": 24564, "power_w": 301.5, "temperature_c": 71,
                                      "processes": [4242]}],
         "activity": {"ssh_sessions": 1, "last_input_age_s": 30.0, "cpu_percent": 35.0, "cpu_load_1m": 1.3,
                      "net_rx_bytes_per_s": 1800, "net_tx_bytes_per_s": 900}}]}
    return ("heartbeat", "POST /api/v1/agent/status",
            {"Authorization": f"Agent {agent['token']}", "Content-Type": "application/json"},
            json.dumps(body, separators=(",", ":")).encode())


def user_request(user: dict, turn: int, rng: random.Random) -> tuple[str, str, dict, bytes | None]:
    route = USER_ROUTES[turn % len(USER_ROUTES)]
    if not user["instances"]:
        route = USER_ROUTES[0]  # a user without instances sees the list
    instance = rng.choice(user["instances"]) if user["instances"] else ""
    page = {"Cookie": f"sessionid={user['session']}"}
    api = {"Authorization": f"Bearer {user['jwt']}"}
    target = {
        "page: instance list": ("GET /", page),
        "page: instance": (f"GET /instances/{instance}", page),
        "page: instance row (htmx)": (f"GET /instances/{instance}/row", {**page, "HX-Request": "true"}),
        "page: savings": ("GET /savings", page),
        "api: instances": ("GET /api/v1/instances", api),
        "api: instance": (f"GET /api/v1/instances/{instance}", api),
        "api: snapshots": ("GET /api/v1/snapshots", api),
        "api: savings": ("GET /api/v1/metrics/savings/real", api),
    }[route]
    return route, target[0], target[1], None


class Recorder:
    def __init__(self, measure_from: float):
        self.measure_from = measure_from
        self.lock = threading.Lock()
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.errors: dict[str, list[str]] = defaultdict(list)

    def record(self, route: str, due: float, ok: bool, detail: str) -> None:
        if due < self.measure_from:
            return
        with self.lock:
            self.latencies[route].append(time.monotonic() - due)
            if not ok:
                self.errors[route].append(detail)


def client(port: int, work: queue.Queue, recorder: Recorder) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    while True:
        item = work.get()
        if item is None:
            return
        due, (route, request_line, headers, body) = item
        method, path = request_line.split(" ", 1)
        try:
            connection.request(method, path, body=body, headers=headers)
            reply = connection.getresponse()
            reply.read()
            ok, detail = 200 <= reply.status < 300, f"{reply.status} {request_line}"
            if reply.getheader("Connection", "").lower() == "close":
                connection.close()
        except (OSError, http.client.HTTPException) as exc:
            ok, detail = False, f"{type(exc).__name__}: {exc} ({request_line})"
            connection.close()
        recorder.record(route, due, ok, detail)


def drive(args, plan: dict) -> tuple[Recorder, float]:
    """Every agent and user on its own clock, spread over the first interval; requests handed to
    the client threads when due."""
    rng = random.Random(7)
    start = time.monotonic()
    recorder = Recorder(start + args.warmup)
    work: queue.Queue = queue.Queue()
    threads = [threading.Thread(target=client, args=(args.port, work, recorder), daemon=True)
               for _ in range(args.clients)]
    for thread in threads:
        thread.start()
    due: list[tuple[float, int, str, int]] = []  # (when, tie-break, kind, index)
    for n in range(len(plan["agents"])):
        due.append((start + rng.uniform(0, args.agent_interval), len(due), "agent", n))
    for n in range(len(plan["users"])):
        due.append((start + rng.uniform(0, args.user_interval), len(due), "user", n))
    heapq.heapify(due)
    turns = [0] * (len(plan["agents"]) + len(plan["users"]))
    end = start + args.warmup + args.seconds
    late = 0.0
    while due and due[0][0] < end:
        when, tie, kind, n = heapq.heappop(due)
        wait = when - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        else:
            late = max(late, -wait)
        turns[tie] += 1
        if kind == "agent":
            work.put((when, heartbeat(plan["agents"][n], turns[tie])))
            heapq.heappush(due, (when + args.agent_interval, tie, kind, n))
        else:
            work.put((when, user_request(plan["users"][n], turns[tie], rng)))
            heapq.heappush(due, (when + args.user_interval, tie, kind, n))
    for _ in threads:
        work.put(None)
    for thread in threads:
        thread.join(timeout=60)
    return recorder, late


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] if ordered else float("nan")


def report(args, recorder: Recorder, late: float) -> bool:
    print(f"\n{os.cpu_count()} CPUs; gunicorn {args.workers} {args.worker_class} workers × {args.threads} threads, "
          f"a Celery worker and beat, PostgreSQL, Redis; {args.agents} agents every {args.agent_interval:g} s, "
          f"{args.users} users every {args.user_interval:g} s, {args.seconds} s measured after {args.warmup} s")
    print(f"{'route':<28} {'requests':>9} {'errors':>7} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    total_errors = 0
    for route in ("heartbeat", *USER_ROUTES):
        values = recorder.latencies.get(route, [])
        errors = len(recorder.errors.get(route, []))
        total_errors += errors
        ms = [1000 * v for v in values]
        print(f"{route:<28} {len(values):>9} {errors:>7} {percentile(ms, 50):>8.1f} {percentile(ms, 90):>8.1f} "
              f"{percentile(ms, 99):>8.1f} {max(ms, default=float('nan')):>8.1f}")
    beats = len(recorder.latencies.get("heartbeat", []))
    print(f"heartbeats/s: {beats / args.seconds:.1f}; user requests/s: "
          f"{sum(len(recorder.latencies.get(r, [])) for r in USER_ROUTES) / args.seconds:.1f}; "
          f"the client's own scheduler fell behind by at most {1000 * late:.0f} ms")
    for route, errors in recorder.errors.items():
        print(f"  {route}: first errors: {errors[:3]}")
    p99 = percentile([1000 * v for v in recorder.latencies.get("heartbeat", [])], 99)
    ok = total_errors == 0 and p99 < 100
    print(f"targets (0 errors; heartbeat p99 < 100 ms): {'met' if ok else 'NOT met'} "
          f"({total_errors} errors, heartbeat p99 {p99:.1f} ms)")
    return ok


def main() -> None:
    args = parse_args()
    env = scratch_env(args)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        env["DUMONT_VAR_DIR"] = str(scratch / "var")
        print(f"preparing {args.users} users with {args.agents} running instances …", flush=True)
        plan = prepare(env, args, scratch / "plan.json")
        logs = open(scratch / "stack.log", "w")
        background = [
            subprocess.Popen([sys.executable, "-m", "devcloud", "--host", "127.0.0.1", "--port",
                              str(args.devcloud_port), "--state-dir", str(scratch / "devcloud"),
                              "--api-key", env["VAST_API_KEY"]], cwd=ROOT, env=env, stdout=logs, stderr=logs),
            subprocess.Popen([sys.executable, "-m", "celery", "-A", "dumont", "worker", "--beat",
                              "--schedule", str(scratch / "beat"), "--concurrency", "2", "--loglevel", "WARNING"],
                             cwd=ROOT, env=env, stdout=logs, stderr=logs),
        ]
        server = start_gunicorn(env, args.port, args)
        try:
            print(f"load for {args.warmup + args.seconds} s …", flush=True)
            recorder, late = drive(args, plan)
        finally:
            for process in (server, *background):
                process.terminate()
            for process in (server, *background):
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
            admin_url = urlparse(env["DATABASE_URL"])._replace(path="/postgres").geturl()
            drop_database(env, admin_url, urlparse(env["DATABASE_URL"]).path.lstrip("/"))
        ok = report(args, recorder, late)
        stack_log = (scratch / "stack.log").read_text(errors="replace")
        tracebacks = stack_log.count("Traceback")
        print(f"worker, beat and devcloud log: {tracebacks} tracebacks")
        if tracebacks:
            print(stack_log[-3000:])
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

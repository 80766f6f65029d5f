"""Race benchmark: N races and N single starts against devcloud, through real Celery workers.

    .venv/bin/python bench/race_bench.py [--races 100] [--singles 100] [--time-scale 0.05]
        [--concurrency 4] [--workers 2]

devcloud runs with its default boot delay (lognormal, median 60 s, p90 180 s) and ~10% of
machines that never become ready or exit, time-scaled by --time-scale; Dumont's own windows
(the 90 s round, the 15 min single-start boot timeout) are scaled the same way. A scratch
database (`<name>_racebench`, dropped afterwards), Celery workers and beat (the reconciler) run
as separate processes. Races run with injected API errors (429s, lost create replies, offers
gone) and one worker is killed with SIGKILL halfway through; a new one takes its place.

Prints, for race and single start, time to ready (request -> instance running) p50/p90/max in
real seconds and at full scale; for races the orchestration overhead (winner's SSH handshake ->
instance running), the loser clean-up time (winner -> last other machine destroyed), the extra
machine-seconds paid for the losers, and the machines left over once every instance is
destroyed. Needs PostgreSQL (DATABASE_URL) and Redis (REDIS_URL; its database is flushed).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--races", type=int, default=100)
    parser.add_argument("--singles", type=int, default=None, help="default: as many as races")
    parser.add_argument("--time-scale", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=4, help="instances starting at once")
    parser.add_argument("--workers", type=int, default=2, help="Celery worker processes (4 threads each)")
    parser.add_argument("--poll", type=float, default=0.1, help="provider poll interval, s (race and single)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-kill", action="store_true", help="do not kill a worker during the races")
    return parser.parse_args()


def scratch_env(scratch: Path) -> dict:
    base = os.environ.get("DATABASE_URL", "postgres://postgres:postgres@127.0.0.1:5432/dumont")
    parsed = urlparse(base)
    if parsed.scheme not in ("postgres", "postgresql"):
        sys.exit("the benchmark needs PostgreSQL: set DATABASE_URL=postgres://...")
    return {
        **os.environ,
        "DATABASE_URL": parsed._replace(path=parsed.path + "_racebench").geturl(),
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15"),
        "DEBUG": "true",
        "DUMONT_VAR_DIR": str(scratch / "var"),
        "DUMONT_AGENT_ENABLED": "false",
        "LOG_LEVEL": "WARNING",
        "DJANGO_SETTINGS_MODULE": "dumont.settings",
    }


def windows(args) -> dict:
    """Dumont's time windows at the benchmark's time scale; provider polling at --poll."""
    scale = args.time_scale
    return {
        "DUMONT_RACE_ROUND_TIMEOUT": str(90 * scale),
        "DUMONT_BOOT_TIMEOUT": str(15 * 60 * scale),
        "DUMONT_RACE_POLL_INTERVAL": str(args.poll),
        "DUMONT_POLL_INTERVAL": str(args.poll),
        "DUMONT_RACE_LEASE": "2",
        "DUMONT_RECONCILE_INTERVAL": "1",
        "DUMONT_RECONCILE_GRACE": "2",
        "DUMONT_PROVIDER_RETRY_DELAY": "0.2",
        "DUMONT_SSH_TIMEOUT": "5",
    }


def prepare_database(env: dict) -> None:
    name = urlparse(env["DATABASE_URL"]).path.lstrip("/")
    admin_url = urlparse(env["DATABASE_URL"])._replace(path="/postgres").geturl()
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], env=env, cwd=ROOT, check=True)


def drop_database(env: dict) -> None:
    import psycopg

    name = urlparse(env["DATABASE_URL"]).path.lstrip("/")
    admin_url = urlparse(env["DATABASE_URL"])._replace(path="/postgres").geturl()
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Processes:
    """Celery workers and beat, each with its log in the scratch directory."""

    def __init__(self, env: dict, logs: Path):
        self.env, self.logs = env, logs
        self.workers: list[subprocess.Popen] = []
        self.beat: subprocess.Popen | None = None

    def start_worker(self) -> subprocess.Popen:
        number = len(self.workers) + 1
        log = open(self.logs / f"worker{number}.log", "w")
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "dumont", "worker", "--pool", "threads", "--concurrency", "4",
             "--loglevel", "WARNING", "--without-heartbeat", "--without-gossip", "--without-mingle",
             "-n", f"bench{number}@%h"],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )
        self.workers.append(worker)
        return worker

    def start_beat(self) -> None:
        log = open(self.logs / "beat.log", "w")
        self.beat = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "dumont", "beat", "--loglevel", "WARNING",
             "-s", str(self.logs / "beat-schedule")],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )

    def stop(self) -> None:
        for process in [*self.workers, self.beat]:
            if process and process.poll() is None:
                process.terminate()
        for process in [*self.workers, self.beat]:
            if process:
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


def run_batch(user, count: int, strategy: str, args, *, on_start=None) -> list:
    """Start `count` instances, at most --concurrency at a time; each is destroyed as soon as it
    is running (or has failed), so the offers stay available for the next ones."""
    from apps.instances import services
    from apps.instances.models import Instance

    started, in_flight = [], []
    while len(started) < count or in_flight:
        settled = Instance.objects.filter(pk__in=[i.pk for i in in_flight], status__in=["running", "failed"])
        for instance in settled:
            services.instance_destroy(instance=instance, actor="user:bench")
        done = {instance.pk for instance in settled}
        in_flight = [i for i in in_flight if i.pk not in done]
        while len(in_flight) < args.concurrency and len(started) < count:
            if on_start:
                on_start(len(started))
            instance = services.instance_create(
                user=user, actor="user:bench", label=f"{strategy}-{len(started)}", image="img", disk_gb=16,
                gpu_name="RTX 4090", strategy=strategy,
            )
            started.append(instance)
            in_flight.append(instance)
        time.sleep(0.05)
    return started


def destroy_all(instances) -> None:
    from apps.instances import services
    from apps.instances.models import Instance

    for instance in Instance.objects.filter(pk__in=[i.pk for i in instances]).exclude(status="destroyed"):
        services.instance_destroy(instance=instance, actor="user:bench")
    deadline = time.monotonic() + 120
    while Instance.objects.filter(pk__in=[i.pk for i in instances]).exclude(status="destroyed").exists():
        if time.monotonic() > deadline:
            raise SystemExit("instances not destroyed after 120 s")
        time.sleep(0.1)


def time_to_ready(instance) -> float:
    """Request -> running, seconds; infinite for one that failed."""
    event = instance.events.filter(to_status="running").first()
    return (event.created_at - instance.created_at).total_seconds() if event else math.inf


def race_figures(instances) -> dict:
    from apps.races.models import Race

    races = list(Race.objects.filter(instance__in=instances).prefetch_related("candidates"))
    overhead, cleanup, late = [], [], 0
    stages = {"pickup and search": [], "create call": [], "boot (polled)": [], "SSH handshake": []}
    for race in races:
        if race.ready_at is None:
            continue
        overhead.append((race.running_at - race.ready_at).total_seconds())
        winner = next(c for c in race.candidates.all() if c.pk == race.winner_id)
        round_start = min(c.create_requested_at for c in race.candidates.all() if c.round == winner.round)
        stages["pickup and search"].append((round_start - race.started_at).total_seconds())
        stages["create call"].append((winner.created_at - winner.create_requested_at).total_seconds())
        stages["boot (polled)"].append((winner.running_at - winner.created_at).total_seconds())
        stages["SSH handshake"].append((winner.ssh_ready_at - winner.running_at).total_seconds())
        losers = [c for c in race.candidates.all() if c.pk != race.winner_id and c.machine_id]
        if any(c.destroyed_at is None for c in losers):
            late += 1
            continue
        last = max((c.destroyed_at for c in losers), default=race.ready_at)
        cleanup.append(max(0.0, (last - race.ready_at).total_seconds()))
    candidates = [c for race in races for c in race.candidates.all()]
    return {
        "races": len(races),
        "resumed": sum(r.claims > 1 for r in races),
        "won": sum(r.status == "won" for r in races),
        "rounds": {n: sum(r.round == n for r in races) for n in (1, 2, 3)},
        "machines": len(candidates),
        "overhead": overhead,
        "stages": stages,
        "cleanup": cleanup,
        "cleanup_incomplete": late,
        "loser_seconds": sum(r.loser_seconds for r in races),
        "loser_cost": float(sum(r.loser_cost for r in races)),
        "failures": [r.result for r in races if r.status != "won"],
    }


def describe(name: str, values: list[float], scale: float) -> str:
    def show(value: float) -> str:
        return "failed" if math.isinf(value) else f"{value:6.2f} s (≈{value / scale:5.0f} s full scale)"

    finite = [v for v in values if math.isfinite(v)]
    return (f"{name:<13} p50 {show(percentile(values, 0.5))}   p90 {show(percentile(values, 0.9))}   "
            f"max ready {show(max(finite)) if finite else '—'}   not ready {len(values) - len(finite)}/{len(values)}")


def main() -> None:
    args = parse_args()
    singles = args.races if args.singles is None else args.singles
    scratch = Path(tempfile.mkdtemp(prefix="racebench-"))
    env = {**scratch_env(scratch), **windows(args)}
    from devcloud.testing import run_devcloud

    print(f"scratch dir {scratch}", flush=True)
    with run_devcloud(scratch / "devcloud", boot_delay="lognormal:median=60,p90=180", time_scale=args.time_scale,
                      fail_rate=0.1, offers=1200, seed=args.seed, startup_timeout=60) as cloud:
        env.update(VAST_API_URL=cloud.url, VAST_API_KEY=cloud.api_key)
        os.environ.update(env)
        prepare_database(env)
        import django
        import redis

        django.setup()
        from apps.providers.ssh import control_plane_key

        control_plane_key()  # one key file for every process, made before any of them starts
        redis.Redis.from_url(env["REDIS_URL"]).flushdb()
        processes = Processes(env, scratch)
        try:
            for _ in range(args.workers):
                processes.start_worker()
            processes.start_beat()
            results = bench(args, singles, cloud, processes)
        finally:
            processes.stop()
            from django.db import connections

            connections.close_all()
            drop_database(env)
    report(args, results)


def bench(args, singles: int, cloud, processes: Processes) -> dict:
    from django.contrib.auth import get_user_model

    from apps.instances.models import Instance
    from apps.races.models import StrayMachine

    user = get_user_model().objects.create_user("bench")
    time.sleep(3)  # workers and beat up

    print(f"{singles} single starts …", flush=True)
    single = run_batch(user, singles, "single", args)
    destroy_all(single)
    single_ready = [time_to_ready(i) for i in Instance.objects.filter(pk__in=[i.pk for i in single])]

    killed = {}

    def on_start(number: int) -> None:
        if number % 10 == 5:  # API errors: three 429s, a lost create reply, an offer gone
            cloud.faults(rate_limit=3, lose_create_reply=1, vanish_offers=1)
        if number == args.races // 2 and not args.no_kill and not killed:
            time.sleep(0.3)  # let the worker be in the middle of its races
            victim = processes.workers[0]
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            killed["at"] = number
            processes.start_worker()
            print(f"  killed a worker (SIGKILL) at race {number}; started another", flush=True)

    print(f"{args.races} races …", flush=True)
    raced = run_batch(user, args.races, "race", args, on_start=on_start)
    cloud.reset_faults()
    race_ready = [time_to_ready(i) for i in Instance.objects.filter(pk__in=[i.pk for i in raced])]
    destroy_all(raced)  # waits for every destroy, the killed worker's too (the reconciler resends them)
    # Clean-up is measured once every race's worker has let go (the killed one's are resumed).
    from apps.races.models import Race

    deadline = time.monotonic() + 60
    while Race.objects.filter(instance__in=raced, lease_until__isnull=False).exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(4)  # two reconciler passes (grace 2 s) for anything a dead worker left
    return {
        "single_ready": single_ready,
        "race_ready": race_ready,
        "figures": race_figures(raced),
        "killed_at": killed.get("at"),
        "left_over": len(cloud.machines()),
        "strays_destroyed": StrayMachine.objects.filter(destroyed_at__isnull=False).count(),
    }


def report(args, r: dict) -> None:
    f, scale = r["figures"], args.time_scale
    print(f"\n{os.cpu_count()} CPUs; devcloud lognormal median 60 s p90 180 s, ~10% never ready, time scale {scale}; "
          f"{args.concurrency} starts at once, {args.workers} workers, poll {args.poll} s")
    print(describe("single start", r["single_ready"], scale))
    print(describe("race", r["race_ready"], scale))
    p50_single, p50_race = percentile(r["single_ready"], 0.5), percentile(r["race_ready"], 0.5)
    print(f"race p50 / single p50 = {p50_race / p50_single:.2f}")
    print(f"races: {f['races']}, won {f['won']}, decided in round 1/2/3: "
          f"{f['rounds'][1]}/{f['rounds'][2]}/{f['rounds'][3]}, {f['machines']} machines started")
    print("winner's stages, p50: " + ", ".join(
        f"{name} {percentile(values, 0.5):.2f} s" for name, values in f["stages"].items()))
    print(f"overhead (winner SSH ready -> instance running): p50 {percentile(f['overhead'], 0.5) * 1000:.0f} ms, "
          f"max {max(f['overhead']) * 1000:.0f} ms")
    print(f"loser clean-up (winner -> last loser destroyed): p50 {percentile(f['cleanup'], 0.5):.2f} s, "
          f"p90 {percentile(f['cleanup'], 0.9):.2f} s, max {max(f['cleanup']):.2f} s; "
          f"races with a loser destroyed later by the reconciler: {f['cleanup_incomplete']}")
    print(f"extra machine-seconds paid for racing: {f['loser_seconds']:.0f} s real "
          f"(≈{f['loser_seconds'] / scale / 3600:.1f} machine-hours at full scale), ${f['loser_cost']:.4f} real "
          f"(≈${f['loser_cost'] / scale:.2f} at full scale), {f['loser_seconds'] / max(1, f['races']):.2f} s a race")
    for reason in f["failures"]:
        print(f"race not won: {reason}")
    print(f"worker killed at race {r['killed_at']}, races it held resumed by another worker: {f['resumed']}; machines left over once every instance is destroyed: "
          f"{r['left_over']}; stray machines destroyed by the reconciler: {r['strays_destroyed']}")
    print(json.dumps({k: v for k, v in r.items() if k not in ("single_ready", "race_ready", "figures")}))


if __name__ == "__main__":
    main()

"""Chaos soak: workspaces hibernate and wake for N minutes while random faults hit the stack.

    .venv/bin/python bench/chaos_soak.py [--minutes 10] [--workspaces 2] [--seed 1]

Runs tests/chaos/test_soak.py on make test's parts (PostgreSQL, Redis, SeaweedFS with scoped
keys, devcloud, a web server and a Celery worker with its beat, real agents over SSH). Every 2
to 12 s one part is broken for 1 to 8 s: PostgreSQL or the S3 store killed (connections reset,
new ones refused) or hung (nothing moves), Redis or devcloud's API killed, the worker and its
beat SIGKILLed. Each workspace gets new files after every wake. At the end every fault is healed
and the counts printed: hibernations, wakes, faults by kind, and the ones that must be 0:
instances not recovered, failed, machines leaked, machines destroyed without a verified snapshot,
snapshots wrong or lost (each verified snapshot is restored and compared).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--workspaces", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "soak.json"
        env = {
            "DEBUG": "true",
            "DATABASE_URL": "postgres://postgres:postgres@127.0.0.1:5432/dumont_soak",
            "REDIS_URL": "redis://127.0.0.1:6379/11",
            "DUMONT_VAR_DIR": str(ROOT / "var" / "test"),
            "DUMONT_AGENT_UPLOAD_DEPENDENCIES": "true",
            **os.environ,
            "DUMONT_CHAOS_SOAK_SECONDS": str(args.minutes * 60),
            "DUMONT_CHAOS_SOAK_WORKSPACES": str(args.workspaces),
            "DUMONT_CHAOS_SOAK_SEED": str(args.seed),
            "DUMONT_CHAOS_SOAK_REPORT": str(report),
        }
        Path(env["DUMONT_VAR_DIR"]).mkdir(parents=True, exist_ok=True)
        print(f"soak: {args.minutes:g} min, {args.workspaces} workspaces, seed {args.seed} …", flush=True)
        result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                 "tests/chaos/test_soak.py", "-x"], cwd=ROOT, env=env)
        if not report.exists():
            sys.exit(f"the soak did not finish (pytest exit {result.returncode})")
        counts = json.loads(report.read_text())
    print()
    for key, value in counts.items():
        print(f"{key:<48} {value}")
    sys.exit(result.returncode)


if __name__ == "__main__":
    main()

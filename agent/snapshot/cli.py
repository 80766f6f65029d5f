"""`python -m agent.snapshot create DIR | restore ID DIR | list | verify ID |
forget --keep-last N | gc [--keep-last N]` (also `python -m agent snapshot ...`).

Settings come from the environment: DUMONT_S3_ENDPOINT, DUMONT_S3_BUCKET, DUMONT_S3_PREFIX,
DUMONT_S3_ACCESS_KEY, DUMONT_S3_SECRET_KEY, DUMONT_SNAPSHOT_KEY (64 hex digits), optionally
DUMONT_S3_REGION and DUMONT_SNAPSHOT_PARALLEL. Each command prints one JSON object on stdout
(progress lines go to stderr). Exit status: 0 done, 1 the snapshot engine failed (the message
names the file and object), 2 bad settings or arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from . import codec
from .config import config_from_env
from .create import LOCK_WAIT_S, snapshot_create
from .errors import ConfigError, SnapshotError
from .gc import GRACE_S, snapshot_forget, snapshot_gc
from .repo import Repository
from .restore import snapshot_restore, snapshot_verify

EXIT_FAILED = 1
EXIT_CONFIG = 2


def main(argv: list | None = None) -> int:
    return run(parser().parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """Run parsed arguments (from `parser()` or from subcommands mounted by `add_commands`)."""
    try:
        repo = Repository(config_from_env(dict(os.environ)))
    except ConfigError as exc:
        print(f"dumont snapshot: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        result = args.run(repo, args)
    except SnapshotError as exc:
        print(f"dumont snapshot {args.snapshot_command} failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="python -m agent.snapshot", description="Dumont workspace snapshots.")
    commands = root.add_subparsers(dest="snapshot_command", required=True, metavar="COMMAND")
    add_commands(commands)
    return root


def add_commands(commands) -> None:
    """Also usable by the agent's top-level CLI to mount these under `snapshot`."""
    create = commands.add_parser("create", help="snapshot a directory")
    create.add_argument("directory")
    create.add_argument("--level", type=int, default=codec.DEFAULT_LEVEL, help="zstd level (default 3)")
    create.add_argument("--rehash", action="store_true", help="re-read files unchanged since the last snapshot")
    create.add_argument("--progress", action="store_true", help="print progress lines on stderr")
    create.add_argument("--lock-wait", type=_seconds, default=LOCK_WAIT_S, metavar="SECONDS",
                        help=f"wait this long for a running gc or forget (default {LOCK_WAIT_S})")
    create.set_defaults(run=_create)
    restore = commands.add_parser("restore", help="restore a snapshot (ID or 'latest') into a new directory")
    restore.add_argument("id")
    restore.add_argument("directory")
    restore.add_argument("--progress", action="store_true", help="print progress lines on stderr")
    restore.set_defaults(run=_restore)
    listing = commands.add_parser("list", help="list snapshots, oldest first")
    listing.set_defaults(run=_list)
    verify = commands.add_parser("verify", help="download and check every object of a snapshot")
    verify.add_argument("id")
    verify.add_argument("--progress", action="store_true", help="print progress lines on stderr")
    verify.set_defaults(run=_verify)
    forget = commands.add_parser("forget", help="delete all snapshots but the newest N (their data stays until gc)")
    _add_retention(forget, required=True)
    forget.set_defaults(run=_forget)
    gc = commands.add_parser("gc", help="delete the objects no snapshot references (forgetting first with --keep-last)")
    _add_retention(gc, required=False)
    gc.add_argument("--grace", type=_seconds, default=GRACE_S, metavar="SECONDS",
                    help=f"never delete objects written less than this long ago (default {GRACE_S})")
    gc.set_defaults(run=_gc)


def _add_retention(command, *, required: bool) -> None:
    command.add_argument("--keep-last", type=_positive, required=required, metavar="N",
                         help="keep the newest N snapshots")
    command.add_argument("--per-host", action="store_true", help="keep the newest N of each host")
    command.add_argument("--wait", type=_seconds, default=0.0, metavar="SECONDS",
                         help="wait this long for snapshots being written to finish (default: refuse at once)")


def _create(repo: Repository, args) -> dict:
    return snapshot_create(repo, args.directory, level=args.level, use_parent=not args.rehash,
                           progress=_printer(args), lock_wait_s=args.lock_wait).to_dict()


def _restore(repo: Repository, args) -> dict:
    return snapshot_restore(repo, args.id, args.directory, progress=_printer(args)).to_dict()


def _verify(repo: Repository, args) -> dict:
    return snapshot_verify(repo, args.id, progress=_printer(args))


def _forget(repo: Repository, args) -> dict:
    return snapshot_forget(repo, keep_last=args.keep_last, per_host=args.per_host, wait_s=args.wait)


def _gc(repo: Repository, args) -> dict:
    return snapshot_gc(repo, keep_last=args.keep_last, per_host=args.per_host, grace_s=args.grace,
                       wait_s=args.wait).to_dict()


def _list(repo: Repository, args) -> dict:
    snapshots = []
    for manifest in reversed(repo.recent_manifests(count=len(repo.snapshot_ids()))):
        snapshots.append({"id": manifest.id, "created": manifest.created, "source": manifest.source,
                          "host": manifest.host, **manifest.stats})
    return {"snapshots": snapshots}


def _printer(args):
    if not args.progress:
        return None
    return lambda report: print(json.dumps(report), file=sys.stderr, flush=True)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text}")
    return value

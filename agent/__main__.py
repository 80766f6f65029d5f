"""`python -m agent run` / `dumont-agent run`: the agent on a GPU machine.

Exit status: 0 stopped by a stop_agent command (or SIGTERM/SIGINT), 2 bad configuration, 3 the control
plane rejected the token (the instance is gone), 4 the control plane was out of reach for
longer than --protect-after and the agent protected the workspace.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

from . import __version__
from .activity import ActivityMonitor
from .client import ControlPlane
from .commands import CommandRunner, Journal
from .config import Config, ConfigError, add_run_arguments, load_config
from .gpu import GpuMonitor, open_gpu_monitor
from .protect import protect_workspace
from .runner import EXIT_CONFIG, EXIT_STOPPED, Runner, Sampler, Timing

log = logging.getLogger("dumont.agent")
WARM_UP_JOIN_S = 30.0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["snapshot"]:  # the engine parses its own arguments, --help included
        return _snapshot(argv[1:])
    args = _parser().parse_args(argv)
    _log_to_stderr()
    env = dict(os.environ)
    try:
        config = load_config(args, env)
        _make_state_dir(config)
        gpu = open_gpu_monitor(config.gpu_backend, env, config.interval_s)
    except ConfigError as exc:
        log.error("cannot start: %s", exc)
        return EXIT_CONFIG
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _exit_on_signal)
    warm_up = threading.Thread(target=_warm_snapshot_engine, name="warm-up", daemon=True)
    warm_up.start()
    try:
        return _runner(config, gpu, env).run()
    finally:
        gpu.close()
        # An agent that exits at once (its token refused) must not leave the warm-up thread in
        # the middle of importing a C extension: the interpreter's shutdown would abort the
        # process (SIGABRT, "exception not rethrown") instead of exiting with its status.
        warm_up.join(timeout=WARM_UP_JOIN_S)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dumont-agent", description="Dumont's agent for a GPU machine.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser("run", help="report this machine to the control plane and run its commands")
    add_run_arguments(run)
    snapshot = commands.add_parser(
        "snapshot", help="create, restore, list and verify workspace snapshots (the [snapshot] extra)",
        add_help=False,
    )
    snapshot.add_argument("snapshot_args", nargs=argparse.REMAINDER)
    return parser


def _snapshot(argv: list[str]) -> int:
    """`snapshot ...` is the snapshot engine's own CLI; imported only when used, because it
    needs the [snapshot] extra (zstandard, cryptography) that a heartbeat-only agent goes without."""
    try:
        from .snapshot.cli import main as snapshot_main
    except ImportError as exc:
        print(f"dumont-agent snapshot: the snapshot engine is not installed ({exc}); "
              "install dumont-agent[snapshot]", file=sys.stderr)
        return EXIT_CONFIG
    return snapshot_main(argv)


def _warm_snapshot_engine() -> None:
    """Import the snapshot engine (zstandard, cryptography, http.client, numpy: a few hundred ms
    from a cold disk) and start the fork server its restores take worker processes from, while
    the first heartbeat is on its way: on a woken machine that heartbeat brings the restore
    command, and the restore should not wait for either. Without the [snapshot] extra there is
    nothing to warm."""
    try:
        from agent import snapshot  # the package imports the whole engine
    except ImportError:
        return
    snapshot.warm_up()


def _log_to_stderr() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s dumont-agent %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)


def _make_state_dir(config: Config) -> None:
    try:
        config.state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the state dir {config.state_dir}: {exc}") from None


def _runner(config: Config, gpu: GpuMonitor, env: dict[str, str]) -> Runner:
    log.info(
        "dumont-agent %s starting: instance %s, control plane %s, interval %g s, GPU readings from %s, "
        "protecting the workspace after %g s out of reach",
        __version__,
        config.instance_id,
        config.url,
        config.interval_s,
        gpu.name,
        config.protect_after_s,
    )
    return Runner(
        instance_id=config.instance_id,
        control_plane=ControlPlane(config.url, config.token, timeout_s=min(10.0, max(1.0, config.interval_s))),
        sampler=Sampler(gpu, ActivityMonitor(env=env)),
        commands=CommandRunner(Journal(config.state_dir / "commands.json")),
        timing=Timing(interval_s=config.interval_s, protect_after_s=config.protect_after_s),
        protect=lambda: protect_workspace(env),
    )


def _exit_on_signal(signum, frame) -> None:
    log.info("%s: stopping", signal.Signals(signum).name)
    sys.exit(EXIT_STOPPED)


if __name__ == "__main__":
    sys.exit(main())

"""`python -m devcloud`: serve the emulated vast.ai API until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import signal
import sys
import threading

from . import admin_api, vast_api
from .cloud import Cloud, clean_state_dir
from .delays import DEFAULT_SPEC, BootClock
from .faults import DEFAULT_FAIL_RATE, Faults, parse_fail_rate
from .http import App, DevcloudHTTPServer

logger = logging.getLogger("devcloud")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m devcloud", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--state-dir", required=True, help="machines live in STATE_DIR/machines/<id>/")
    parser.add_argument("--api-key", default=os.environ.get("DEVCLOUD_API_KEY"), help="default: $DEVCLOUD_API_KEY")
    parser.add_argument(
        "--boot-delay",
        default=DEFAULT_SPEC,
        help=f"fixed:S | uniform:LO,HI | lognormal:median=M,p90=P (default {DEFAULT_SPEC})",
    )
    parser.add_argument("--time-scale", type=float, default=1.0, help="multiplies every boot delay")
    parser.add_argument("--seed", type=int, default=1, help="seeds the offer catalog, boot delays and faults")
    parser.add_argument(
        "--fail-rate",
        type=float,
        default=DEFAULT_FAIL_RATE,
        help=f"share of new machines that never become ready or exit (default {DEFAULT_FAIL_RATE})",
    )
    parser.add_argument("--offers", type=int, default=40, help="offers in the catalog (default 40)")
    parser.add_argument(
        "--log-level", default=os.environ.get("DEVCLOUD_LOG_LEVEL", "INFO"), help="default: $DEVCLOUD_LOG_LEVEL or INFO"
    )
    args = parser.parse_args(argv)
    if not args.api_key:
        parser.error("--api-key (or DEVCLOUD_API_KEY) is required")
    try:
        args.clock = BootClock(args.boot_delay, args.time_scale, args.seed)
        parse_fail_rate(args.fail_rate)
    except ValueError as exc:
        parser.error(str(exc))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if logger.getEffectiveLevel() > logging.DEBUG:
        # paramiko logs a traceback for every client that connects and leaves without SSH
        # (port probes, handshakes refused): noise here.
        logging.getLogger("paramiko").setLevel(logging.CRITICAL)

    run_id = secrets.token_hex(6)
    clean_state_dir(args.state_dir, run_id)
    faults = Faults(args.clock, fail_rate=args.fail_rate, seed=args.seed)
    cloud = Cloud(state_dir=args.state_dir, run_id=run_id, faults=faults, seed=args.seed, offer_count=args.offers)
    app = App(api_key=args.api_key, faults=faults)
    vast_api.install(app, cloud, faults)
    admin_api.install(app, cloud, faults)
    server = DevcloudHTTPServer((args.host, args.port), app)
    cloud.url = f"http://{args.host}:{server.server_address[1]}"

    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    logger.info("run %s, state in %s", run_id, os.path.abspath(args.state_dir))
    print(f"devcloud ready {cloud.url}", flush=True)

    while not stopping.wait(0.5):
        pass
    logger.info("stopping: killing machine processes")
    server.shutdown()
    server.server_close()
    cloud.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())

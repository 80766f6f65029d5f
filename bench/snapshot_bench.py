"""Snapshot engine benchmark: Dumont's engine against restic, same workspace, same S3 server.

    .venv/bin/python bench/snapshot_bench.py [--size 1G] [--rounds 3] [--own-s3] [--drop all] [--ours cli]
    make bench-snapshot ARGS="--size 7G"          (installs Debian's restic when missing)

Builds a GPU-like workspace of `--size` bytes in a scratch directory: 6/7 bf16 weights with a
trained-like spread (normal(0, 0.02) truncated to bf16) in `*.safetensors` shards, 1/7 copies
of this venv's site-packages (many small files). Then, against one SeaweedFS (the one answering
on 127.0.0.1:8333, else, or with --own-s3, a `weed mini` started here on free ports and stopped
at the end), runs and times, caches dropped before each phase when the kernel allows it (the
page cache: file data and directory blocks come from the disk; with --drop all also the cached
inodes and names, as right after a reboot, which a machine that has been running does not see):

  ours    full snapshot, incremental snapshot after a 1% change, restore: by default in one
          long-lived process that has imported the engine, as the agent runs its commands
          (--ours cli: `python -m agent.snapshot`, one cold process per command)
  restic  init + backup, backup after the same change, restore + sync (`-o s3.connections=N`)

The 1% change overwrites 1 MiB regions in two of the eight shards and appends to 20 small
files. Restores run `--rounds` times per tool, alternating which goes first; the best of each
counts. Every restore is checked against the changed workspace (sha256 of every file, outside
the timings). Prints seconds, MB/s and CPU seconds per phase (the tool's processes, and the
S3 server's when it was started here), stored bytes, the ratios and their targets (restic
restore / ours >= 2; ours full / ours incremental >= 10), then one JSON line. Each tool
writes under its own fresh prefix; both are deleted at the end.

Restored trees are kept until the end when the disk has room: ext4 skips inodes freed in the
last minute (five while their table block is dirty) when it allocates new ones, so creating a
tree right after deleting one costs several times the CPU, which no restore on a fresh
machine pays. Without room, each round's trees are deleted and the next round waits that
minute out.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import botocore.config
from botocore import UNSIGNED
from botocore.exceptions import BotoCoreError, ClientError

ROOT = Path(__file__).resolve().parents[1]
MiB = 1024 * 1024
BUCKET = "dumont-bench"
SHARED_S3 = ("127.0.0.1", 8333)
OWN_S3_PORT = 8334  # preferred port of the server this benchmark starts, when free
WEIGHTS_SHARE = 6 / 7  # MEASURED.md's workspace: 6 GiB weights + 1 GiB venv
SHARDS = 8
VENV_FILE_MAX = 16 * MiB  # leaves out playwright's 150 MB node binary: the venv is the small files
CHANGE_SHARE = 0.01
CHANGE_REGION = 1 * MiB
CHANGED_SHARDS = 2
CHANGED_SMALL_FILES = 20
RECENTLY_FREED_S = 65  # ext4 passes over inodes freed less than 60 s ago (once their table block is clean)
RESTIC_INSTALL = "apt-get install -y restic   (or: make bench-snapshot)"


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=parse_size, default=parse_size("1G"), help="workspace size: 1G, 700M, 7G")
    parser.add_argument("--parallel", type=int, default=32, help="our connections and threads, restic's s3.connections")
    parser.add_argument("--scratch", default=None, help="directory for the workspace and restores (default: $TMPDIR)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="restores of each tool, in alternating order; the best counts (default 3)")
    parser.add_argument("--own-s3", action="store_true",
                        help="start a private weed mini even when 127.0.0.1:8333 answers (steadier timings)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--ours", choices=("agent", "cli"), default="agent",
                        help="run our engine in one warm process, as the agent does (default), or a CLI process per phase")
    parser.add_argument("--drop", choices=tuple(DROPS), default="pagecache",
                        help="before each phase drop the page cache (file data, directory blocks: default), or "
                             "all: also the kernel's cached inodes and names, as after a reboot")
    parser.add_argument("--engine-worker", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args()


def parse_size(text: str) -> int:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]?)i?B?", text.strip(), re.IGNORECASE)
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 1G, 700M)")
    power = " KMGT".index(match.group(2).upper() or " ")
    return int(float(match.group(1)) * 1024 ** power)


# --- the workspace ------------------------------------------------------------------------------


class Bf16Source:
    """Random bf16 with the exponent distribution of normal(0, 0.02) and uniform mantissas, at
    C speed without numpy: a random byte picks (sign, exponent) through 256-entry translate
    tables, so exponents are quantized to 1/128 of probability. Matches an exact sample's zstd
    ratio (1.28 plain, 1.41 byte-grouped at level 3)."""

    def __init__(self, sigma: float = 0.02):
        exponents = _exponent_slots(sigma)
        self._high = bytes((u >> 7) << 7 | exponents[u & 127] >> 1 for u in range(256))
        self._low_exponent_bit = bytes((exponents[u & 127] & 1) << 7 for u in range(256))
        self._mantissa_masks: dict = {}

    def generate(self, nbytes: int) -> bytes:
        count = nbytes // 2
        picks = os.urandom(count)
        mask = self._mantissa_masks.setdefault(count, int.from_bytes(b"\x7f" * count, "little"))
        mantissas = int.from_bytes(os.urandom(count), "little") & mask
        low = (int.from_bytes(picks.translate(self._low_exponent_bit), "little") | mantissas).to_bytes(count, "little")
        out = bytearray(2 * count)
        out[0::2] = low  # little-endian: mantissa byte first, then sign and exponent
        out[1::2] = picks.translate(self._high)
        return bytes(out)


def _exponent_slots(sigma: float) -> list:
    """128 bf16 exponents whose frequencies follow |normal(0, sigma)| (largest remainder)."""
    def mass(lo: float, hi: float) -> float:
        return math.erf(hi / (sigma * math.sqrt(2))) - math.erf(lo / (sigma * math.sqrt(2)))
    quotas = {0: mass(0, 2.0 ** -126)}
    quotas.update({e: mass(2.0 ** (e - 127), 2.0 ** (e - 126)) for e in range(1, 255)})
    total = sum(quotas.values())
    quotas = {e: q / total * 128 for e, q in quotas.items()}
    slots = {e: int(q) for e, q in quotas.items()}
    for e in sorted(quotas, key=lambda e: quotas[e] - slots[e], reverse=True)[: 128 - sum(slots.values())]:
        slots[e] += 1
    return [e for e in sorted(slots) for _ in range(slots[e])]


def write_safetensors(path: Path, size: int, source: Bf16Source, shard: int) -> None:
    """A safetensors file of about `size` bytes: 8-byte header length, JSON header, bf16 tensors."""
    columns = 2048
    rows_total = max(1, (size - 4096) // (2 * columns))
    header, offset, layer = {"__metadata__": {"format": "pt"}}, 0, 0
    while rows_total > 0:
        rows = min(rows_total, 5632)
        name = f"model.layers.{shard * 1000 + layer}.mlp.up_proj.weight"
        header[name] = {"dtype": "BF16", "shape": [rows, columns], "data_offsets": [offset, offset + 2 * rows * columns]}
        offset += 2 * rows * columns
        rows_total -= rows
        layer += 1
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as out:
        out.write(len(text).to_bytes(8, "little") + text)
        left = offset
        while left:
            block = source.generate(min(left, 4 * MiB))
            out.write(block)
            left -= len(block)


def copy_venv(destination: Path, budget: int) -> int:
    """Copies of this venv's site-packages (files up to VENV_FILE_MAX) until `budget` bytes."""
    site = Path(sysconfig.get_paths()["purelib"])
    copied, copy_index = 0, 0
    while copied < budget:
        copy_index += 1
        before = copied
        for directory, dirnames, filenames in os.walk(site):
            dirnames.sort()
            relative = Path(directory).relative_to(site)
            target_dir = destination / f"venv-{copy_index}" / "lib" / "python3" / "site-packages" / relative
            target_dir.mkdir(parents=True, exist_ok=True)
            for name in sorted(filenames):
                source = Path(directory) / name
                if source.is_symlink() or not source.is_file() or source.stat().st_size > VENV_FILE_MAX:
                    continue
                shutil.copy2(source, target_dir / name)
                copied += source.stat().st_size
                if copied >= budget:
                    return copied
        if copied == before:
            sys.exit(f"{site} has no files to copy")
    return copied


def build_workspace(workspace: Path, size: int) -> dict:
    source = Bf16Source()
    weights_bytes = int(size * WEIGHTS_SHARE)
    (workspace / "model").mkdir(parents=True)
    for shard in range(SHARDS):
        path = workspace / "model" / f"model-{shard + 1:05d}-of-{SHARDS:05d}.safetensors"
        write_safetensors(path, weights_bytes // SHARDS, source, shard)
    venv_bytes = copy_venv(workspace, size - weights_bytes)
    files, total = tree_totals(workspace)
    return {"files": files, "bytes": total, "weights_bytes": total - venv_bytes, "venv_bytes": venv_bytes}


def tree_totals(root: Path) -> tuple:
    files = total = 0
    for directory, _dirs, names in os.walk(root):
        for name in names:
            files += 1
            total += os.lstat(os.path.join(directory, name)).st_size
    return files, total


def change_one_percent(workspace: Path, total: int, rng: random.Random) -> dict:
    """Overwrite 1 MiB regions of new weights in some shards, append to some small files."""
    budget = int(total * CHANGE_SHARE)
    shards = sorted((workspace / "model").glob("*.safetensors"))[:CHANGED_SHARDS]
    source, written = Bf16Source(), 0
    regions = max(1, int(budget * 0.9) // CHANGE_REGION)
    for index in range(regions):
        shard = shards[index % len(shards)]
        size = shard.stat().st_size
        offset = rng.randrange(4096, size - CHANGE_REGION) & ~1
        with open(shard, "r+b") as file:
            file.seek(offset)
            file.write(source.generate(CHANGE_REGION))
        written += CHANGE_REGION
    small = sorted(p for p in workspace.glob("venv-1/**/*.py") if p.stat().st_size < 64 * 1024)
    picked = rng.sample(small, min(CHANGED_SMALL_FILES, len(small)))
    extra = max(1, (budget - written) // max(1, len(picked)))
    for path in picked:
        with open(path, "ab") as file:
            file.write(b"# edited\n" + os.urandom(extra // 2).hex().encode()[:extra] + b"\n")
        written += extra
    changed_bytes = sum(p.stat().st_size for p in shards + picked)
    return {"bytes_written": written, "files": len(shards) + len(picked), "files_bytes": changed_bytes}


def tree_digest(root: Path) -> dict:
    """Relative path -> sha256 of every file, link target of every symlink, "dir" for directories."""
    digest = {}
    for directory, dirnames, filenames in os.walk(root):
        relative = os.path.relpath(directory, root)
        for name in dirnames:
            digest[os.path.normpath(os.path.join(relative, name))] = "dir"
        for name in filenames:
            path = os.path.join(directory, name)
            key = os.path.normpath(os.path.join(relative, name))
            if os.path.islink(path):
                digest[key] = "link:" + os.readlink(path)
                continue
            hasher = hashlib.sha256()
            with open(path, "rb") as file:
                while block := file.read(4 * MiB):
                    hasher.update(block)
            digest[key] = hasher.hexdigest()
    return digest


def check_same(expected: dict, restored: Path, who: str) -> None:
    actual = tree_digest(restored)
    if actual != expected:
        missing = sorted(set(expected) - set(actual))[:5]
        extra = sorted(set(actual) - set(expected))[:5]
        differ = sorted(k for k in set(expected) & set(actual) if expected[k] != actual[k])[:5]
        sys.exit(f"{who}'s restore differs from the workspace: missing {missing}, extra {extra}, differ {differ}")


# --- the S3 server --------------------------------------------------------------------------------


class S3:
    """The endpoint both tools use, with credentials; `anonymous` when the server has no
    identities configured (restic's signed uploads are refused by such a SeaweedFS)."""

    def __init__(self, endpoint: str, access_key: str, secret_key: str, process=None, data_dir=None):
        self.endpoint, self.access_key, self.secret_key = endpoint, access_key, secret_key
        self.process, self.data_dir = process, data_dir
        self.client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=access_key,
                                   aws_secret_access_key=secret_key, region_name="us-east-1",
                                   config=botocore.config.Config(s3={"addressing_style": "path"}))
        self.anonymous = False

    def ready(self) -> bool:
        try:
            self.client.head_bucket(Bucket=BUCKET)
            return True
        except ClientError:
            try:
                self.client.create_bucket(Bucket=BUCKET)
                return True
            except (ClientError, BotoCoreError):
                return False
        except BotoCoreError:
            return False

    def detect_anonymous(self) -> None:
        unsigned = boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                                config=botocore.config.Config(signature_version=UNSIGNED))
        try:
            unsigned.list_objects_v2(Bucket=BUCKET, MaxKeys=1)
            self.anonymous = True
        except (ClientError, BotoCoreError):
            self.anonymous = False

    def stored_bytes(self, prefix: str) -> tuple:
        count = total = 0
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
            for item in page.get("Contents", []):
                count += 1
                total += item["Size"]
        return count, total

    def delete_prefix(self, prefix: str) -> None:
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:
                self.client.delete_objects(Bucket=BUCKET, Delete={"Objects": keys, "Quiet": True})

    def cpu_s(self) -> float | None:
        """CPU seconds the server has used, when it is the one started here."""
        if self.process is None:
            return None
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.process is None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        shutil.rmtree(self.data_dir, ignore_errors=True)


def answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def free_ports(count: int, preferred: int) -> list:
    """`preferred` (when free) then ports the kernel picks, all held open together so they differ."""
    sockets, ports = [], []
    try:
        for index in range(count):
            sock = socket.socket()
            try:
                sock.bind(("127.0.0.1", preferred if index == 0 else 0))
            except OSError:
                sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
            ports.append(sock.getsockname()[1])
    finally:
        for sock in sockets:
            sock.close()
    return ports


def connect_s3(scratch: Path, *, own: bool) -> S3:
    access_key = os.environ.get("AWS_ACCESS_KEY_ID", "dumont-bench")
    secret_key = os.environ.get("AWS_SECRET_ACCESS_KEY", "dumont-bench-secret")
    if not own and answers(*SHARED_S3):
        s3 = S3(f"http://{SHARED_S3[0]}:{SHARED_S3[1]}", access_key, secret_key)
        if not s3.ready():
            sys.exit(f"{s3.endpoint} answers but does not let this benchmark use bucket {BUCKET}")
        s3.detect_anonymous()
        return s3
    weed = shutil.which("weed") or str(Path(sys.executable).with_name("weed"))
    data_dir = Path(tempfile.mkdtemp(prefix="seaweedfs-", dir=scratch))
    s3_port, *others = free_ports(10, OWN_S3_PORT)
    ports = dict(zip(["s3.port.grpc", "master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
                      "filer.port", "filer.port.grpc", "admin.port", "admin.port.grpc"], others))
    flags = [f"-{name}={port}" for name, port in ports.items()]
    # Credentials in its environment give it an identity: both tools sign their requests, as with R2.
    env = {**os.environ, "AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": secret_key}
    with open(data_dir / "weed.log", "wb") as log:
        process = subprocess.Popen(
            [weed, "mini", f"-dir={data_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-master.telemetry=false",
             f"-s3.port={s3_port}", *flags, "-webdav=false", "-admin.ui=false", "-s3.port.iceberg=0",
             "-s3.port.lance=0", f"-s3.localSocket={data_dir / 's3.sock'}",
             f"-filer.localSocket={data_dir / 'filer.sock'}"],  # not left behind in /tmp
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
    s3 = S3(f"http://127.0.0.1:{s3_port}", access_key, secret_key, process, data_dir)
    deadline = time.monotonic() + 90
    while not s3.ready():
        if process.poll() is not None or time.monotonic() > deadline:
            log_tail = (data_dir / "weed.log").read_text(errors="replace")[-2000:]
            s3.stop()
            sys.exit(f"weed mini did not answer S3 requests on port {s3_port}:\n{log_tail}")
        time.sleep(0.5)
    return s3


# --- the tools --------------------------------------------------------------------------------


DROPS = {"pagecache": "1", "all": "3"}  # /proc/sys/vm/drop_caches values


def drop_caches(what: str = "pagecache") -> bool:
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as control:
            control.write(DROPS[what] + "\n")
        return True
    except OSError:
        return False


@dataclass
class Timing:
    seconds: float  # wall clock
    cpu_s: float  # user + system CPU of the tool's processes
    output: dict = field(default_factory=dict)  # what the tool reported, for ours
    server_cpu_s: float | None = None  # the S3 server's CPU meanwhile, when it is ours to watch

    def then(self, other: Timing) -> Timing:
        return Timing(self.seconds + other.seconds, self.cpu_s + other.cpu_s, {**self.output, **other.output})


def timed(command: list, env: dict, cwd: Path | None = None) -> Timing:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
    elapsed = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    output = json.loads(done.stdout) if done.stdout.startswith("{") else {}
    return Timing(elapsed, cpu, output)


class Ours:
    """Our engine, configured through the environment like an agent's: either a CLI process
    per phase (`python -m agent.snapshot`), or commands sent to one long-lived worker process
    that imported the engine once, as the agent runs snapshot and restore commands."""

    def __init__(self, s3: S3, prefix: str, parallel: int, mode: str):
        self.mode = mode
        self.env = {**os.environ, "DUMONT_S3_ENDPOINT": s3.endpoint, "DUMONT_S3_BUCKET": BUCKET,
                    "DUMONT_S3_PREFIX": prefix, "DUMONT_S3_ACCESS_KEY": s3.access_key,
                    "DUMONT_S3_SECRET_KEY": s3.secret_key, "DUMONT_S3_REGION": "us-east-1",
                    "DUMONT_SNAPSHOT_KEY": os.urandom(32).hex(), "DUMONT_SNAPSHOT_PARALLEL": str(parallel)}
        self.worker = None
        if mode == "agent":
            self.worker = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--engine-worker"],
                                           env=self.env, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                           text=True)
            ready = self.worker.stdout.readline()
            if not ready.startswith("ready"):
                sys.exit(f"the engine worker did not start: {ready!r}")

    def create(self, workspace: Path) -> Timing:
        if self.worker:
            return self._command("create", str(workspace))
        return timed([sys.executable, "-m", "agent.snapshot", "create", str(workspace)], self.env, ROOT)

    def restore(self, target: Path) -> Timing:
        if self.worker:
            return self._command("restore", str(target))
        return timed([sys.executable, "-m", "agent.snapshot", "restore", "latest", str(target)], self.env, ROOT)

    def _command(self, op: str, path: str) -> Timing:
        started = time.monotonic()
        self.worker.stdin.write(json.dumps({"op": op, "path": path}) + "\n")
        self.worker.stdin.flush()
        reply = json.loads(self.worker.stdout.readline() or '{"error": "the engine worker died"}')
        elapsed = time.monotonic() - started
        if "error" in reply:
            sys.exit(f"ours {op} failed: {reply['error']}")
        return Timing(elapsed, reply["cpu_s"], reply["result"])

    def close(self) -> None:
        if self.worker:
            self.worker.stdin.close()
            self.worker.wait(timeout=30)


def engine_worker() -> None:
    """--engine-worker: import the engine once, then run one command per stdin line, replying
    with its result and the CPU seconds it took (every thread of this process, and of the
    worker processes a restore forks)."""
    sys.path.insert(0, str(ROOT))
    from agent.snapshot import Repository, config_from_env, snapshot_create, snapshot_restore, warm_up

    warm_up()  # as the agent does at start
    print("ready", flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        before = _cpu_seconds()
        try:
            repo = Repository(config_from_env(dict(os.environ)))
            if command["op"] == "create":
                result = snapshot_create(repo, command["path"]).to_dict()
            else:
                result = snapshot_restore(repo, "latest", command["path"]).to_dict()
        except Exception as exc:  # reported to the benchmark, which stops
            print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
            continue
        cpu = _cpu_seconds() - before
        print(json.dumps({"result": result, "cpu_s": cpu}), flush=True)


def _cpu_seconds() -> float:
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


class Restic:
    def __init__(self, s3: S3, prefix: str, connections: int, cache: Path):
        self.cache = cache
        self.base = ["restic", "-r", f"s3:{s3.endpoint}/{BUCKET}/{prefix.rstrip('/')}", "-o",
                     f"s3.connections={connections}", "--cache-dir", str(cache), "--quiet"]
        self.env = {key: value for key, value in os.environ.items()
                    if key not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
        self.env["RESTIC_PASSWORD"] = "dumont-bench"
        if not s3.anonymous:
            self.env.update(AWS_ACCESS_KEY_ID=s3.access_key, AWS_SECRET_ACCESS_KEY=s3.secret_key)

    def init_and_backup(self, workspace: Path) -> Timing:
        return timed([*self.base, "init"], self.env).then(self.backup(workspace))

    def backup(self, workspace: Path) -> Timing:
        return timed([*self.base, "backup", "."], self.env, workspace)

    def restore(self, target: Path) -> Timing:
        """`restore` then a `sync`: restic leaves its writes in the page cache, ours flushes."""
        shutil.rmtree(self.cache, ignore_errors=True)  # a fresh machine restores without a cache
        restored = timed([*self.base, "restore", "latest", "--target", str(target)], self.env)
        started = time.monotonic()
        os.sync()
        sync_s = time.monotonic() - started
        return restored.then(Timing(sync_s, 0.0, {"sync_s": sync_s}))


def restic_version() -> str:
    if not shutil.which("restic"):
        sys.exit(f"restic is not installed; install it with: {RESTIC_INSTALL}")
    return subprocess.run(["restic", "version"], capture_output=True, text=True, check=True).stdout.strip()


# --- the run ------------------------------------------------------------------------------------


def phase_line(name: str, timing: Timing, nbytes: int, note: str = "") -> str:
    rate = nbytes / timing.seconds / 1e6
    server = f"  server CPU {timing.server_cpu_s:5.2f} s" if timing.server_cpu_s is not None else ""
    return f"  {name:<34} {timing.seconds:7.2f} s {rate:7.1f} MB/s  CPU {timing.cpu_s:6.2f} s{server}  {note}"


def main() -> None:
    args = parse_args()
    if args.engine_worker:
        engine_worker()
        return
    version = restic_version()
    scratch = Path(tempfile.mkdtemp(prefix="dumont-snapshot-bench-", dir=args.scratch))
    run_prefix = f"bench-{uuid.uuid4().hex[:12]}/"
    workspace = scratch / "workspace"
    s3 = None
    try:
        print(f"building a {args.size / 2**30:.2f} GiB workspace in {workspace} …", flush=True)
        started = time.monotonic()
        shape = build_workspace(workspace, args.size)
        print(f"  {shape['files']} files, {shape['bytes'] / 1e6:.0f} MB: {shape['weights_bytes'] / 1e6:.0f} MB bf16 "
              f"weights in {SHARDS} shards, {shape['venv_bytes'] / 1e6:.0f} MB of venv "
              f"({time.monotonic() - started:.0f} s)", flush=True)
        s3 = connect_s3(scratch, own=args.own_s3)
        anonymous = " (no identities: restic runs unsigned)" if s3.anonymous else ""
        print(f"S3: {s3.endpoint}{' (started here)' if s3.process else ''}{anonymous}, "
              f"bucket {BUCKET}, prefix {run_prefix}", flush=True)
        ours = Ours(s3, run_prefix + "ours/", args.parallel, args.ours)
        restic = Restic(s3, run_prefix + "restic", args.parallel, scratch / "restic-cache")
        try:
            results = measure(ours, restic, s3, workspace, scratch, shape, random.Random(args.seed), args.rounds,
                              args.drop)
        finally:
            ours.close()
        stored = {tool: s3.stored_bytes(f"{run_prefix}{tool}/") for tool in ("ours", "restic")}
        report(args, version, shape, results, stored)
    finally:
        if s3 is not None:
            if s3.process is None:
                s3.delete_prefix(run_prefix)
            s3.stop()
        shutil.rmtree(scratch, ignore_errors=True)


def measure(ours: Ours, restic: Restic, s3: S3, workspace: Path, scratch: Path, shape: dict, rng: random.Random,
            rounds: int, drop: str) -> dict:
    results: dict = {"page_cache_dropped": [], "ours_restore": [], "restic_restore": []}

    def phase(name: str, run) -> Timing:
        results["page_cache_dropped"].append(drop_caches(drop))
        server_before = s3.cpu_s()
        timing = run()
        if server_before is not None:
            timing.server_cpu_s = s3.cpu_s() - server_before
        print(f"  {name}: {timing.seconds:.2f} s", flush=True)
        return timing

    results["ours_full"] = phase("ours full", lambda: ours.create(workspace))
    results["restic_full"] = phase("restic init + backup", lambda: restic.init_and_backup(workspace))
    results["change"] = change_one_percent(workspace, shape["bytes"], rng)
    results["ours_incremental"] = phase("ours incremental", lambda: ours.create(workspace))
    results["restic_incremental"] = phase("restic incremental", lambda: restic.backup(workspace))
    expected = tree_digest(workspace)
    keep = shutil.disk_usage(scratch).free > 2 * rounds * shape["bytes"] * 1.2 + 2 * 2**30
    results["restored_trees_kept"] = keep
    if not keep:
        print(f"  (no room to keep {2 * rounds} restored trees: each round deletes its trees, then waits "
              f"{RECENTLY_FREED_S} s for ext4 to stop skipping the freed inodes)", flush=True)
    for round_index in range(rounds):
        # Alternating order, so that whatever the previous phase left behind (dirty pages,
        # a busy journal) does not always fall on the same tool.
        tools = [(ours, "ours"), (restic, "restic")][:: 1 if round_index % 2 == 0 else -1]
        for tool, name in tools:
            target = scratch / f"restore-{name}-{round_index}"
            results[f"{name}_restore"].append(phase(f"{name} restore", lambda: tool.restore(target)))
            check_same(expected, target, name)
        if not keep:
            for _tool, name in tools:
                shutil.rmtree(scratch / f"restore-{name}-{round_index}")
            if round_index < rounds - 1:
                os.sync()
                time.sleep(RECENTLY_FREED_S)
    return results


def report(args, version: str, shape: dict, results: dict, stored: dict) -> None:
    size, change = shape["bytes"], results["change"]
    best = {name: min(results[f"{name}_restore"], key=lambda timing: timing.seconds) for name in ("ours", "restic")}
    phases = {"ours": {"full": results["ours_full"], "incremental": results["ours_incremental"], "restore": best["ours"]},
              "restic": {"full": results["restic_full"], "incremental": results["restic_incremental"],
                         "restore": best["restic"]}}
    ratios = {
        "restic_restore_over_ours": best["restic"].seconds / best["ours"].seconds,
        "ours_full_over_incremental": results["ours_full"].seconds / results["ours_incremental"].seconds,
        "restic_full_over_ours_full": results["restic_full"].seconds / results["ours_full"].seconds,
        "restic_incremental_over_ours": results["restic_incremental"].seconds / results["ours_incremental"].seconds,
    }
    dropped = results["page_cache_dropped"]
    drops = "yes" if all(dropped) else ("no (not permitted)" if not any(dropped) else "partly")
    if all(dropped):
        drops += " (and cached inodes and names)" if args.drop == "all" else " (cached inodes and names kept)"
    how = "one warm process, as the agent" if args.ours == "agent" else "a CLI process per phase"
    print(f"\n{os.cpu_count()} CPUs (load average {os.getloadavg()[1]:.1f} over the last 5 min); workspace "
          f"{size / 1e6:.0f} MB in {shape['files']} files; ours runs in {how}, parallel {args.parallel}; restic -o "
          f"s3.connections={args.parallel}; {version.split(' compiled')[0]}; page cache dropped before each phase: {drops}; "
          f"restored trees kept until the end: {'yes' if results['restored_trees_kept'] else 'no'}")
    print(f"1% change: {change['bytes_written'] / 1e6:.1f} MB written into {change['files']} files "
          f"({change['files_bytes'] / 1e6:.0f} MB of files to re-read)")
    full, incremental = results["ours_full"], results["ours_incremental"]
    print("ours")
    print(phase_line("full snapshot", full, size, f"uploaded {full.output['uploaded_bytes'] / 1e6:.0f} MB"))
    print(phase_line("incremental snapshot (1% changed)", incremental, size,
                     f"{incremental.output['reused_files']} files not read, "
                     f"{incremental.output['new_bytes'] / 1e6:.1f} MB new"))
    print(phase_line(f"restore, best of {args.rounds}", best["ours"], size, _rounds(results["ours_restore"])))
    print(_stored_line(stored["ours"], size))
    print("restic")
    print(phase_line("init + backup", results["restic_full"], size))
    print(phase_line("backup (1% changed)", results["restic_incremental"], size))
    print(phase_line(f"restore + sync, best of {args.rounds}", best["restic"], size,
                     f"{_rounds(results['restic_restore'])}, sync {best['restic'].output['sync_s']:.2f} s"))
    print(_stored_line(stored["restic"], size))
    print("ratios")
    print(f"  restic restore / ours restore       {ratios['restic_restore_over_ours']:6.2f}   target >= 2: "
          f"{'met' if ratios['restic_restore_over_ours'] >= 2 else 'NOT met'}")
    print(f"  ours full / ours incremental        {ratios['ours_full_over_incremental']:6.2f}   target >= 10: "
          f"{'met' if ratios['ours_full_over_incremental'] >= 10 else 'NOT met'}")
    print(f"  restic backup / ours full           {ratios['restic_full_over_ours_full']:6.2f}")
    print(f"  restic backup / ours incremental    {ratios['restic_incremental_over_ours']:6.2f}")
    print(json.dumps({
        "cpus": os.cpu_count(), "workspace": shape, "ours_mode": args.ours, "parallel": args.parallel,
        "rounds": args.rounds,
        "change": change, "page_cache_dropped": all(dropped), "dropped": args.drop,
        "restic_version": version.split()[1],
        **{tool: {**{phase: _timing_json(timing) for phase, timing in phases[tool].items()},
                  "restores_s": [round(timing.seconds, 3) for timing in results[f"{tool}_restore"]],
                  "stored_bytes": stored[tool][1], "objects": stored[tool][0]}
           for tool in ("ours", "restic")},
        "ratios": {name: round(value, 2) for name, value in ratios.items()},
    }))


def _rounds(timings: list) -> str:
    return "rounds: " + " ".join(f"{timing.seconds:.2f}" for timing in timings)


def _stored_line(stored: tuple, size: int) -> str:
    objects, nbytes = stored
    return f"  stored {nbytes / 1e6:.0f} MB in {objects} objects (ratio {size / nbytes:.2f})"


def _timing_json(timing: Timing) -> dict:
    data = {"s": round(timing.seconds, 3), "cpu_s": round(timing.cpu_s, 3)}
    if timing.server_cpu_s is not None:
        data["server_cpu_s"] = round(timing.server_cpu_s, 3)
    return data


if __name__ == "__main__":
    main()

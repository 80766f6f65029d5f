"""The machine table and every machine's lifecycle.

One lock (`_lock`) guards the table, the offers and the account keys; it is never held while
sleeping, starting processes or touching sockets. Lifecycle side effects of one machine are
serialized by that machine's `ops_lock` (always taken before `_lock`), and each start, stop and
destroy bumps the machine's generation so a boot thread of an older one quietly gives up.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import subprocess
import threading
import time

from . import catalog, procs
from .faults import Faults, MachineFaults
from .machine import OCI_ERROR_MSG, CreateRequest, Machine, MachineHost
from .ssh import SSHServer, free_port, load_or_create_host_key, public_key_blob

logger = logging.getLogger(__name__)

# Share of the boot delay spent with actual_status null ("provisioning") before "loading".
PROVISIONING_FRACTION = 0.1
FIRST_INSTANCE_ID = 20_000_001


class OfferUnavailable(Exception):
    """No such offer, or it is rented."""


class UnknownMachine(Exception):
    pass


class Cloud:
    def __init__(self, *, state_dir: str, run_id: str, faults: Faults, seed: int, offer_count: int = catalog.OFFER_COUNT):
        self.state_dir = os.path.abspath(state_dir)
        self.machines_dir = os.path.join(self.state_dir, "machines")
        self.run_id = run_id
        self.faults = faults
        self.url = ""  # set once the HTTP server listens; machines get it as DEVCLOUD_URL
        self._lock = threading.Lock()
        self._offers = {offer["id"]: offer for offer in catalog.generate_offers(seed, offer_count)}
        self._machines: dict[int, Machine] = {}
        self._destroyed: list[dict] = []  # what tests check: which machine went, when
        self._account_keys: list[dict] = []
        self._id_file = os.path.join(self.state_dir, "next_instance_id")
        self._id_file_lock = threading.Lock()
        self._next_id = _read_int(self._id_file, FIRST_INSTANCE_ID)

    # --- offers and account keys -------------------------------------------------------------

    def search_offers(self, query: dict) -> list[dict]:
        with self._lock:
            offers = [dict(offer) for offer in self._offers.values()]
        return catalog.search(offers, query)

    def account_keys(self) -> list[dict]:
        with self._lock:
            return [{k: v for k, v in key.items() if k != "blob"} for key in self._account_keys]

    def add_account_key(self, line: str) -> dict:
        """Raises ValueError on a line that is not an OpenSSH public key."""
        blob = _key_blob(line)
        with self._lock:
            for key in self._account_keys:
                if key["blob"] == blob:
                    return {k: v for k, v in key.items() if k != "blob"}
            key = {
                "id": len(self._account_keys) + 1,
                "user_id": 1,
                "key": line.strip(),
                "public_key": line.strip(),
                "created_at": _iso_now(),
                "deleted_at": None,
                "blob": blob,
            }
            self._account_keys.append(key)
        return {k: v for k, v in key.items() if k != "blob"}

    def add_instance_key(self, machine_id: int, line: str) -> None:
        blob = _key_blob(line)
        self._machine(machine_id).host.authorize(blob)

    # --- instances ---------------------------------------------------------------------------

    def create(self, offer_id: int, request: CreateRequest, profile: MachineFaults | None = None) -> int:
        """`profile`: this machine's faults (machine_profiles knob); else drawn from the knobs."""
        with self._lock:
            offer = self._offers.get(offer_id)
            if offer is None or offer["rented"]:
                raise OfferUnavailable(offer_id)
            offer.update(rented=True, rentable=False)  # reserved, so a concurrent create gets 404
            machine_id = self._next_id
            self._next_id += 1
            offer_copy = dict(offer)
            key_blobs = [key["blob"] for key in self._account_keys]
        self._save_next_id()
        try:
            machine = self._prepare_machine(machine_id, offer_copy, request, key_blobs, profile)
        except Exception:
            self._release_offer(offer_id)
            raise
        with self._lock:
            self._machines[machine_id] = machine
            if request.target_state == "stopped":
                machine.intended_status = machine.actual_status = "stopped"
            else:
                self._begin_boot(machine, provisioning=True)
        logger.info("created machine %s from offer %s (%s)", machine_id, offer_id, request.label)
        return machine_id

    def instance(self, machine_id: int) -> dict | None:
        with self._lock:
            machine = self._machines.get(machine_id)
            return machine.api_view() if machine else None

    def instance_page(self, after_id: int, limit: int) -> tuple[list[dict], int | None, int]:
        """Instances with id > after_id, ordered by id; returns (page, last id if more, total)."""
        with self._lock:
            ids = sorted(self._machines)
            rest = [machine_id for machine_id in ids if machine_id > after_id]
            page = [self._machines[machine_id].api_view() for machine_id in rest[:limit]]
        more = len(rest) > limit
        return page, (page[-1]["id"] if more else None), len(ids)

    def set_state(self, machine_id: int, state: str) -> None:
        machine = self._machine(machine_id)
        if state == "running":
            self._start(machine)
        else:
            self._stop(machine)

    def set_label(self, machine_id: int, label: str) -> None:
        machine = self._machine(machine_id)
        with self._lock:
            machine.request.label = label

    def destroy(self, machine_id: int) -> None:
        machine = self._machine(machine_id)
        with machine.ops_lock:
            with self._lock:
                if machine.destroyed:
                    raise UnknownMachine(machine_id)
                machine.destroyed = True
                cancel = self._end_generation(machine)
                del self._machines[machine_id]
                self._destroyed.append({"id": machine_id, "label": machine.request.label,
                                        "destroyed_at": time.time()})
            self._teardown(machine, cancel)
            shutil.rmtree(machine.dir, ignore_errors=True)
        self._release_offer(machine.offer["id"])
        logger.info("destroyed machine %s", machine_id)

    # --- admin -------------------------------------------------------------------------------

    def admin_machines(self) -> list[dict]:
        pids: dict[str, list[int]] = {}
        for pid, value in procs.marked_processes():
            pids.setdefault(value, []).append(pid)
        with self._lock:
            machines = sorted(self._machines.values(), key=lambda machine: machine.id)
            return [machine.admin_view(sorted(pids.get(machine.host.marker, []))) for machine in machines]

    def admin_destroyed(self) -> list[dict]:
        """Every machine destroyed since devcloud started, oldest first, with the Unix time."""
        with self._lock:
            return [dict(entry) for entry in self._destroyed]

    def gpu(self, machine_id: int) -> dict:
        machine = self._machine(machine_id)
        with self._lock:
            return machine.gpu_view()

    def set_gpu(self, machine_id: int, utilization: list[float]) -> dict:
        """`utilization` has one value per GPU, or a single value for all of them."""
        machine = self._machine(machine_id)
        with self._lock:
            count = len(machine.gpu_util)
            if len(utilization) == 1:
                utilization = utilization * count
            if len(utilization) != count:
                raise ValueError(f"machine {machine_id} has {count} GPUs, got {len(utilization)} values")
            machine.gpu_util = list(utilization)
            return machine.gpu_view()

    def machine_token_matches(self, machine_id: int, token: str) -> bool:
        with self._lock:
            machine = self._machines.get(machine_id)
            return machine is not None and secrets.compare_digest(machine.token, token)

    def shutdown(self) -> None:
        """Kill every machine's processes and SSH server; the disks stay for inspection."""
        with self._lock:
            machines = list(self._machines.values())
        for machine in machines:
            with machine.ops_lock:
                with self._lock:
                    cancel = self._end_generation(machine)
                self._teardown(machine, cancel)

    # --- lifecycle ---------------------------------------------------------------------------

    def _prepare_machine(
        self, machine_id: int, offer: dict, request: CreateRequest, key_blobs: list[bytes],
        profile: MachineFaults | None,
    ) -> Machine:
        machine_dir = os.path.join(self.machines_dir, str(machine_id))
        disk = os.path.join(machine_dir, "disk")
        os.makedirs(disk)
        token = secrets.token_urlsafe(24)
        marker = procs.marker(self.run_id, machine_id)
        host = MachineHost(
            disk=disk,
            user_env=request.env,
            marker=marker,
            fixed_env={
                procs.MARKER_VAR: marker,
                "DEVCLOUD_URL": self.url,
                "DEVCLOUD_MACHINE_ID": str(machine_id),
                "DEVCLOUD_MACHINE_TOKEN": token,
                # The agent reads the simulated GPU only when told to (agent/gpu.py).
                "DUMONT_GPU_BACKEND": "devcloud",
            },
        )
        for blob in key_blobs:
            host.authorize(blob)
        machine = Machine(
            id=machine_id,
            offer=offer,
            request=request,
            dir=machine_dir,
            token=token,
            faults=self.faults.for_new_machine(profile),
            host=host,
            host_key=load_or_create_host_key(os.path.join(machine_dir, "ssh_host_ed25519_key")),
            ssh_port=free_port(),
            gpu_util=[0.0] * offer["num_gpus"],
        )
        _write_json(os.path.join(machine_dir, "machine.json"), _metadata(machine))
        return machine

    def _start(self, machine: Machine) -> None:
        with machine.ops_lock, self._lock:
            if machine.destroyed:
                raise UnknownMachine(machine.id)
            on_its_way = machine.actual_status in (None, "loading", "running")
            if machine.intended_status == "running" and on_its_way:
                return
            machine.intended_status = "running"
            self._begin_boot(machine, provisioning=False)

    def _stop(self, machine: Machine) -> None:
        with machine.ops_lock:
            with self._lock:
                if machine.destroyed:
                    raise UnknownMachine(machine.id)
                machine.intended_status = "stopped"
                cancel = self._end_generation(machine)
            self._teardown(machine, cancel)
            with self._lock:
                machine.actual_status = "stopped"
                machine.status_msg = ""

    def _begin_boot(self, machine: Machine, *, provisioning: bool) -> None:
        """Caller holds _lock. The boot itself runs on its own thread."""
        cancel = self._end_generation(machine)
        if cancel is not None:
            cancel.set()
        machine.cancel_boot = threading.Event()
        machine.boots += 1
        machine.actual_status = None if provisioning else "loading"
        machine.status_msg = "" if provisioning else f"Pulling {machine.request.image}"
        delay_s = machine.faults.boot_delay_s
        if delay_s is None:
            delay_s = self.faults.clock.sample_seconds()
        args = (machine, machine.generation, machine.cancel_boot, delay_s, provisioning)
        threading.Thread(target=self._boot, args=args, name=f"boot-{machine.id}", daemon=True).start()

    def _boot(
        self, machine: Machine, generation: int, cancel: threading.Event, delay_s: float, provisioning: bool
    ) -> None:
        if provisioning:
            if cancel.wait(delay_s * PROVISIONING_FRACTION):
                return
            if not self._set_status(machine, generation, "loading", f"Pulling {machine.request.image}"):
                return
        if cancel.wait(delay_s):
            return
        faults = machine.faults
        if faults.stuck_loading:
            return
        if faults.oci_error:
            self._set_status(machine, generation, "created", OCI_ERROR_MSG)
            return
        running = self._go_running(machine, generation)
        if running and faults.exit_after_running and not cancel.wait(faults.exit_delay_s):
            self._exit(machine, generation)

    def _set_status(self, machine: Machine, generation: int, status: str, message: str) -> bool:
        with self._lock:
            if machine.generation != generation:
                return False
            machine.actual_status = status
            machine.status_msg = message
            return True

    def _go_running(self, machine: Machine, generation: int) -> bool:
        with machine.ops_lock:
            with self._lock:
                if machine.generation != generation:
                    return False
                preferred_port = machine.ssh_port
            server = SSHServer(
                host_key=machine.host_key,
                host=machine.host,
                is_authorized=machine.host.is_authorized,
                banner_delay_s=machine.faults.ssh_delay_s,
                name=str(machine.id),
            )
            machine.host.open()
            port = server.start(preferred_port)
            with self._lock:
                machine.ssh, machine.ssh_port = server, port
                machine.actual_status = "running"
                machine.status_msg = f"success, running {machine.request.image}/ssh"
                machine.running_since = time.time()
            self._run_onstart(machine)
        return True

    def _exit(self, machine: Machine, generation: int) -> None:
        """The container dies on its own (fault): processes gone, intended_status unchanged."""
        with machine.ops_lock:
            with self._lock:
                if machine.generation != generation:
                    return
            self._teardown(machine, None)
            self._set_status(machine, generation, "exited", "Exited (137)")

    def _run_onstart(self, machine: Machine) -> None:
        if not machine.request.onstart:
            return
        with open(machine.onstart_log, "ab") as log:
            log.write(f"--- devcloud: onstart, boot {machine.boots}, {_iso_now()}\n".encode())
            log.flush()
            process = machine.host.spawn(machine.request.onstart, stdout=log, stderr=subprocess.STDOUT)
        threading.Thread(target=self._reap_onstart, args=(machine, process), daemon=True).start()

    def _reap_onstart(self, machine: Machine, process: subprocess.Popen) -> None:
        code = process.wait()
        machine.host.untrack(process)
        try:
            with open(machine.onstart_log, "ab") as log:
                log.write(f"--- devcloud: onstart exited with {code}\n".encode())
        except OSError:
            pass  # the machine was destroyed meanwhile

    def _end_generation(self, machine: Machine) -> threading.Event | None:
        """Caller holds _lock. Invalidate the running boot; returns its cancel event."""
        machine.generation += 1
        cancel, machine.cancel_boot = machine.cancel_boot, None
        return cancel

    def _teardown(self, machine: Machine, cancel: threading.Event | None) -> None:
        """Caller holds machine.ops_lock, not _lock. SSH first, so nothing new starts."""
        if cancel is not None:
            cancel.set()
        with self._lock:
            server, machine.ssh = machine.ssh, None
            machine.running_since = None
        if server is not None:
            server.stop()
        machine.host.kill_all()

    def _machine(self, machine_id: int) -> Machine:
        with self._lock:
            machine = self._machines.get(machine_id)
        if machine is None:
            raise UnknownMachine(machine_id)
        return machine

    def _release_offer(self, offer_id: int) -> None:
        with self._lock:
            self._offers[offer_id].update(rented=False, rentable=True)

    def _save_next_id(self) -> None:
        with self._id_file_lock:
            with self._lock:
                next_id = self._next_id
            _write_json(self._id_file, next_id)


def clean_state_dir(state_dir: str, run_id: str) -> None:
    """Remove what a previous run left: its machines' processes and directories."""
    os.makedirs(state_dir, exist_ok=True)
    run_file = os.path.join(state_dir, "run.json")
    try:
        with open(run_file) as handle:
            previous = json.load(handle)
    except (OSError, ValueError):
        previous = {}
    if isinstance(previous, dict) and previous.get("run_id"):
        prefix = f"{previous['run_id']}:"
        killed = procs.kill_marked(lambda value: value.startswith(prefix))
        if killed:
            logger.warning("killed %d processes left by the previous run %s", killed, previous["run_id"])
    shutil.rmtree(os.path.join(state_dir, "machines"), ignore_errors=True)
    os.makedirs(os.path.join(state_dir, "machines"))
    _write_json(run_file, {"run_id": run_id, "pid": os.getpid(), "started_at": _iso_now()})


def _key_blob(line: object) -> bytes:
    blob = public_key_blob(line) if isinstance(line, str) else None
    if blob is None:
        raise ValueError("ssh_key must be an OpenSSH public key: '<type> <base64> [comment]'")
    return blob


def _metadata(machine: Machine) -> dict:
    return {
        "id": machine.id,
        "label": machine.request.label,
        "image": machine.request.image,
        "offer_id": machine.offer["id"],
        "marker": machine.host.marker,
        "created_at": machine.created_at,
    }


def _write_json(path: str, value: object) -> None:
    temporary = f"{path}.tmp"
    with open(temporary, "w") as handle:
        json.dump(value, handle)
    os.replace(temporary, path)


def _read_int(path: str, default: int) -> int:
    try:
        with open(path) as handle:
            return int(json.load(handle))
    except (OSError, ValueError, TypeError):
        return default


def _iso_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

"""Commands from the control plane: acknowledged, run once in a worker thread, reported.

The control plane puts a command in every heartbeat reply until the agent acknowledges it, so
one id can arrive several times. A journal in the state dir remembers each id and its final
update; an id seen before is never run again, even after the agent restarts: its stored final
update is sent again instead.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Optional

from . import wire
from .protect import DEFAULT_WORKSPACE

log = logging.getLogger("dumont.agent")

JOURNAL_SIZE = 500  # ids remembered; the control plane stops re-delivering long before this
MAX_UPDATES_PER_HEARTBEAT = 100  # what wire.Heartbeat.from_dict accepts
ECHO_MAX_DELAY_S = 60.0

Progress = Callable[[dict], None]
Handler = Callable[[wire.Command, Progress], Optional[dict]]  # Optional: Python 3.9 machines


class CommandFailed(Exception):
    """A handler's way to fail a command with a readable error."""


def echo(command: wire.Command, progress: Progress) -> dict:
    """Answers its arguments; `delay_s` makes it a long command, for tests of the machinery."""
    delay_s = min(float(command.args.get("delay_s") or 0), ECHO_MAX_DELAY_S)
    if delay_s > 0:
        steps = 4
        for step in range(1, steps + 1):
            time.sleep(delay_s / steps)
            progress({"step": step, "steps": steps})
    return command.args


def stop_agent(command: wire.Command, progress: Progress) -> dict:
    return {"stopping": True}  # the runner exits once this result has been delivered


def _repository_and_workspace(command: wire.Command):
    """The repository from the command's `repository` settings (sent by the control plane at
    delivery), falling back to the agent's environment; the workspace directory with ~ expanded."""
    try:
        from .snapshot import Repository, config_from_env
        from .snapshot.errors import SnapshotError
    except ImportError as exc:
        raise CommandFailed(f"the snapshot engine is not installed on this machine ({exc}); "
                            "install the agent with its [snapshot] extra") from None
    settings = {**os.environ, **{k: str(v) for k, v in (command.args.get("repository") or {}).items()}}
    try:
        repo = Repository(config_from_env(settings))
    except SnapshotError as exc:
        raise CommandFailed(f"snapshot settings: {exc}") from None
    workspace = os.path.expanduser(str(command.args.get("workspace") or settings.get("DUMONT_WORKSPACE")
                                       or DEFAULT_WORKSPACE))
    return repo, workspace


def snapshot(command: wire.Command, progress: Progress) -> dict:
    """Snapshot the workspace; the result is the engine's CreateResult."""
    from .snapshot import SnapshotError, snapshot_create

    repo, workspace = _repository_and_workspace(command)
    if not os.path.isdir(workspace):
        raise CommandFailed(f"the workspace {workspace} is not a directory on this machine")
    try:
        return snapshot_create(repo, workspace, progress=progress).to_dict()
    except SnapshotError as exc:
        raise CommandFailed(f"snapshot of {workspace}: {exc}") from None


def restore(command: wire.Command, progress: Progress) -> dict:
    """Restore a snapshot (`snapshot`: its id, default the newest) into the workspace, which must
    not exist or be empty; a failed restore leaves WORKSPACE.dumont-partial behind, never a
    half-written workspace."""
    from .snapshot import SnapshotError, snapshot_restore

    repo, workspace = _repository_and_workspace(command)
    snapshot_id = str(command.args.get("snapshot") or "latest")
    try:
        return snapshot_restore(repo, snapshot_id, workspace, progress=progress).to_dict()
    except SnapshotError as exc:
        raise CommandFailed(f"restore of {snapshot_id} into {workspace}: {exc}") from None


HANDLERS: dict[str, Handler] = {
    "echo": echo,
    "stop_agent": stop_agent,
    "snapshot": snapshot,
    "restore": restore,
}


class Journal:
    """Command id -> final update (None while it runs), kept in a JSON file in the state dir."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self._entries: dict[str, dict | None] = self._load()

    def seen(self, command_id: str) -> bool:
        with self._lock:
            return command_id in self._entries

    def final(self, command_id: str) -> wire.CommandUpdate | None:
        with self._lock:
            entry = self._entries.get(command_id)
        return wire.CommandUpdate.from_dict(entry) if entry else None

    def started(self, command_id: str) -> None:
        self._write(command_id, None)

    def finished(self, update: wire.CommandUpdate) -> None:
        self._write(update.id, asdict(update))

    def _write(self, command_id: str, entry: dict | None) -> None:
        with self._lock:
            self._entries.pop(command_id, None)  # re-inserted last: the newest survive pruning
            self._entries[command_id] = entry
            for old_id in list(self._entries)[:-JOURNAL_SIZE]:
                del self._entries[old_id]
            try:
                temporary = self.path.with_suffix(".tmp")
                temporary.write_text(json.dumps(self._entries))
                os.replace(temporary, self.path)  # a crash mid-write leaves the previous journal whole
            except OSError as exc:
                # A full disk (the workspace filled it) must not stop the agent; this process still
                # remembers every id, only a restart could forget it.
                log.warning("command journal %s not saved (%s); a restart could run command %s again",
                            self.path, exc, command_id)

    def _load(self) -> dict[str, dict | None]:
        try:
            entries = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("command journal %s is unreadable (%s); starting a new one", self.path, exc)
            return {}
        if not isinstance(entries, dict):
            return {}
        return {command_id: entry for command_id, entry in entries.items() if entry is None or _is_update(entry)}


def _is_update(entry: object) -> bool:
    try:
        wire.CommandUpdate.from_dict(entry)
    except wire.WireError:
        return False
    return True


class Outbox:
    """Command updates waiting for a heartbeat, in order. Updates taken for a heartbeat leave
    only once that heartbeat got a reply; otherwise they go out with the next one."""

    def __init__(self):
        self._lock = threading.Lock()
        self._updates: list[wire.CommandUpdate] = []
        self._in_flight = 0

    def put(self, update: wire.CommandUpdate) -> None:
        with self._lock:
            if update.status == "running":  # only the newest progress of a command matters
                waiting = self._updates[self._in_flight:]
                self._updates[self._in_flight:] = [
                    old for old in waiting if not (old.id == update.id and old.status == "running")
                ]
            self._updates.append(update)

    def take(self, limit: int) -> list[wire.CommandUpdate]:
        with self._lock:
            self._in_flight = min(limit, len(self._updates))
            return self._updates[: self._in_flight]

    def delivered(self) -> None:
        with self._lock:
            del self._updates[: self._in_flight]
            self._in_flight = 0

    def undelivered(self) -> None:
        with self._lock:
            self._in_flight = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._updates)


class CommandRunner:
    """Accepts commands from heartbeat replies and runs them one at a time in a worker thread,
    so heartbeats go on while a long command (a snapshot) runs."""

    def __init__(self, journal: Journal, handlers: dict[str, Handler] | None = None):
        self.journal = journal
        self.outbox = Outbox()
        self.stop_requested = threading.Event()  # set once stop_agent's success is in the outbox
        self._handlers = HANDLERS if handlers is None else handlers
        self._accepted: set[str] = set()  # ids queued or running in this process
        self._queue: queue.Queue[wire.Command] = queue.Queue()
        threading.Thread(target=self._work, name="commands", daemon=True).start()

    def receive(self, commands: list[wire.Command]) -> None:
        for command in commands:
            self._receive(command)

    def _receive(self, command: wire.Command) -> None:
        if command.id in self._accepted:
            return  # our acknowledgement is still on its way
        final = self.journal.final(command.id)
        if final is not None:
            log.info("command %s (%s) was done before; sending its result again", command.id, command.kind)
            self.outbox.put(final)
        elif self.journal.seen(command.id):
            self._finish(
                command,
                wire.CommandUpdate(
                    id=command.id,
                    status="failed",
                    error="the agent stopped while running this command; it is not run twice",
                ),
            )
        else:
            log.info("command %s (%s) received: acknowledging and queueing it", command.id, command.kind)
            self.journal.started(command.id)
            self._accepted.add(command.id)
            self.outbox.put(wire.CommandUpdate(id=command.id, status="acknowledged"))
            self._queue.put(command)

    def _work(self) -> None:
        while True:
            command = self._queue.get()
            self._finish(command, self._run(command))
            self._accepted.discard(command.id)

    def _run(self, command: wire.Command) -> wire.CommandUpdate:
        handler = self._handlers.get(command.kind)
        if handler is None:
            known = ", ".join(sorted(self._handlers))
            error = f"unknown command kind {command.kind!r}; this agent runs {known}"
            return wire.CommandUpdate(id=command.id, status="failed", error=error)
        log.info("command %s (%s) running", command.id, command.kind)
        self.outbox.put(wire.CommandUpdate(id=command.id, status="running"))

        def progress(report: dict) -> None:
            self.outbox.put(wire.CommandUpdate(id=command.id, status="running", progress=report))

        try:
            result = handler(command, progress)
        except CommandFailed as exc:
            return wire.CommandUpdate(id=command.id, status="failed", error=str(exc))
        except Exception as exc:  # a bug in a handler fails its command, not the agent
            log.exception("command %s (%s) crashed", command.id, command.kind)
            return wire.CommandUpdate(id=command.id, status="failed", error=f"{type(exc).__name__}: {exc}")
        return wire.CommandUpdate(id=command.id, status="succeeded", result=result or {})

    def _finish(self, command: wire.Command, update: wire.CommandUpdate) -> None:
        # Journal first: once the update can be sent, a restart must not run the command again.
        self.journal.finished(update)
        self.outbox.put(update)
        outcome = update.error or "done"
        log.info("command %s (%s) %s: %s", command.id, command.kind, update.status, outcome)
        if command.kind == "stop_agent" and update.status == "succeeded":
            self.stop_requested.set()

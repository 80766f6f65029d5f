"""The agent's snapshot and restore commands: the repository settings come with the command (as
the control plane sends them at delivery), progress goes out through the command channel."""

from __future__ import annotations

import pytest

from agent import wire
from agent.commands import CommandFailed, restore, snapshot
from tests.snapshot.trees import describe, every_kind_tree


def repository_args(config) -> dict:
    storage = config.storage
    return {"DUMONT_S3_ENDPOINT": storage.endpoint, "DUMONT_S3_BUCKET": storage.bucket,
            "DUMONT_S3_PREFIX": storage.prefix, "DUMONT_S3_ACCESS_KEY": storage.access_key,
            "DUMONT_S3_SECRET_KEY": storage.secret_key, "DUMONT_S3_REGION": storage.region,
            "DUMONT_SNAPSHOT_KEY": config.key.hex(), "DUMONT_SNAPSHOT_PARALLEL": "4"}


def test_snapshot_then_restore_through_commands_reproduces_the_workspace(snapshot_config, tmp_path, monkeypatch):
    source = every_kind_tree(tmp_path / "workspace")
    monkeypatch.setenv("HOME", str(tmp_path))
    reports: list[dict] = []
    taken = snapshot(wire.Command(id="c1", kind="snapshot",
                                  args={"repository": {**repository_args(snapshot_config),
                                                       "DUMONT_WORKSPACE": "~/workspace"}}), reports.append)
    assert taken["files"] > 0 and taken["id"]
    assert reports and reports[-1]["bytes"] == reports[-1]["total_bytes"] == taken["bytes"]

    restored = restore(wire.Command(id="c2", kind="restore",
                                    args={"snapshot": taken["id"], "workspace": str(tmp_path / "back"),
                                          "repository": repository_args(snapshot_config)}), reports.append)
    assert restored["id"] == taken["id"] and restored["bytes"] == taken["bytes"]
    assert describe(tmp_path / "back") == describe(source)


def test_restore_refuses_a_workspace_that_holds_files(snapshot_config, tmp_path):
    source = every_kind_tree(tmp_path / "workspace")
    args = {"repository": repository_args(snapshot_config), "workspace": str(source)}
    snapshot(wire.Command(id="c1", kind="snapshot", args=args), lambda report: None)
    with pytest.raises(CommandFailed, match="not an empty directory"):
        restore(wire.Command(id="c2", kind="restore", args=args), lambda report: None)


def test_missing_settings_and_workspace_are_named(snapshot_config, tmp_path, monkeypatch):
    for name in ("DUMONT_S3_ENDPOINT", "DUMONT_SNAPSHOT_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(CommandFailed, match="DUMONT_S3_ENDPOINT"):
        snapshot(wire.Command(id="c1", kind="snapshot", args={"workspace": str(tmp_path)}), lambda r: None)
    args = {"repository": repository_args(snapshot_config), "workspace": str(tmp_path / "absent")}
    with pytest.raises(CommandFailed, match="absent is not a directory"):
        snapshot(wire.Command(id="c2", kind="snapshot", args=args), lambda r: None)

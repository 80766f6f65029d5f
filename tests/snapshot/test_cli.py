from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from .trees import describe, every_kind_tree

ROOT = Path(__file__).resolve().parents[2]


def _run(config, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ,
               DUMONT_S3_ENDPOINT=config.storage.endpoint, DUMONT_S3_BUCKET=config.storage.bucket,
               DUMONT_S3_PREFIX=config.storage.prefix, DUMONT_S3_ACCESS_KEY=config.storage.access_key,
               DUMONT_S3_SECRET_KEY=config.storage.secret_key, DUMONT_SNAPSHOT_KEY=config.key.hex(),
               DUMONT_SNAPSHOT_PARALLEL="4")
    return subprocess.run([sys.executable, "-m", "agent.snapshot", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def test_cli_creates_lists_verifies_and_restores(snapshot_config, tmp_path):
    source = every_kind_tree(tmp_path / "workspace")

    created = _run(snapshot_config, "create", str(source))
    snapshot_id = json.loads(created.stdout)["id"]
    listed = json.loads(_run(snapshot_config, "list").stdout)
    verified = json.loads(_run(snapshot_config, "verify", snapshot_id).stdout)
    restored = _run(snapshot_config, "restore", snapshot_id, str(tmp_path / "restored"))

    assert [item["id"] for item in listed["snapshots"]] == [snapshot_id]
    assert verified["verified"] is True
    assert restored.returncode == 0, restored.stderr
    assert describe(tmp_path / "restored") == describe(source)


def test_cli_reports_missing_settings_with_exit_status_2(tmp_path):
    result = subprocess.run([sys.executable, "-m", "agent.snapshot", "list"], cwd=ROOT, capture_output=True,
                            text=True, env={"PATH": os.environ["PATH"]}, timeout=60, check=False)

    assert result.returncode == 2
    assert "DUMONT_S3_ENDPOINT" in result.stderr and "DUMONT_SNAPSHOT_KEY" in result.stderr


def test_cli_failed_restore_exits_1_naming_the_object(snapshot_config, repo, tmp_path):
    source = every_kind_tree(tmp_path / "workspace")
    snapshot_id = json.loads(_run(snapshot_config, "create", str(source)).stdout)["id"]
    manifest = repo.load_manifest(snapshot_id)
    victim = manifest.blobs[manifest.files()["models/big.bin"].blobs[0]].object
    repo.storage.delete(victim)

    result = _run(snapshot_config, "restore", snapshot_id, str(tmp_path / "restored"))

    assert result.returncode == 1
    assert repo.storage.key(victim) in result.stderr and "models/big.bin" in result.stderr


def test_the_agent_cli_hands_snapshot_commands_to_the_engine():
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-m", "agent", "snapshot", "list"], capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin"}, cwd=root)
    assert result.returncode == 2
    assert "missing settings: DUMONT_S3_ENDPOINT" in result.stderr

"""An agent cut off from the control plane snapshots the workspace itself."""

from agent.protect import protect_workspace
from agent.snapshot.restore import snapshot_restore

from .trees import describe, every_kind_tree


def _env(config, workspace) -> dict:
    storage = config.storage
    return {
        "DUMONT_WORKSPACE": str(workspace), "DUMONT_S3_ENDPOINT": storage.endpoint,
        "DUMONT_S3_BUCKET": storage.bucket, "DUMONT_S3_PREFIX": storage.prefix,
        "DUMONT_S3_ACCESS_KEY": storage.access_key, "DUMONT_S3_SECRET_KEY": storage.secret_key,
        "DUMONT_S3_REGION": storage.region, "DUMONT_SNAPSHOT_KEY": config.key.hex(),
    }


def test_protection_snapshots_the_workspace_restorably(tmp_path, snapshot_config, repo):
    workspace = every_kind_tree(tmp_path / "workspace")
    assert protect_workspace(_env(snapshot_config, workspace)) is True
    snapshot_restore(repo, "latest", str(tmp_path / "back"))
    assert describe(tmp_path / "back") == describe(workspace)


def test_protection_without_settings_says_why(tmp_path, caplog):
    (tmp_path / "workspace").mkdir()
    assert protect_workspace({"DUMONT_WORKSPACE": str(tmp_path / "workspace")}) is False
    assert "missing settings: DUMONT_S3_ENDPOINT" in caplog.text

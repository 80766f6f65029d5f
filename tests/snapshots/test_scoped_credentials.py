"""Scoped storage credentials against a SeaweedFS that checks keys (tests/s3.py `scoped_s3`):
each machine's key reaches only its own workspace's prefix, deletes nothing there but its
locks, and stops working when its machine goes or its grant expires. The bucket's keys never
leave the control plane."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from agent.snapshot import StorageConfig, snapshot_create, snapshot_restore
from agent.snapshot.config import config_from_env
from agent.snapshot.errors import StorageError
from agent.snapshot.repo import Repository
from agent.snapshot.storage import Storage
from apps.instances import services as instance_services
from apps.instances.models import Instance, InstanceStatus
from apps.snapshots import grants
from apps.snapshots import services as snapshot_services
from apps.snapshots.credentials import IamIssuer, principal_for
from apps.snapshots.models import StorageGrant
from tests.s3 import BUCKET

S = InstanceStatus
pytestmark = pytest.mark.django_db


@pytest.fixture
def scoped(settings, scoped_s3):
    settings.DUMONT_SNAPSHOT_CREDENTIALS = "scoped"
    settings.DUMONT_SNAPSHOT_S3_ENDPOINT = settings.DUMONT_SNAPSHOT_IAM_ENDPOINT = scoped_s3.endpoint
    settings.DUMONT_SNAPSHOT_S3_BUCKET = BUCKET
    settings.DUMONT_SNAPSHOT_S3_REGION = "us-east-1"
    settings.DUMONT_SNAPSHOT_S3_PREFIX = f"scoped-{uuid.uuid4().hex[:8]}/"
    settings.DUMONT_SNAPSHOT_S3_ACCESS_KEY = scoped_s3.access_key
    settings.DUMONT_SNAPSHOT_S3_SECRET_KEY = scoped_s3.secret_key
    settings.DUMONT_SNAPSHOT_MASTER_KEY = "cd" * 32
    settings.DUMONT_SNAPSHOT_PARALLEL = 4
    return scoped_s3


def installed(user, label: str) -> tuple[Instance, dict]:
    """A running instance and the storage settings its agent is installed with."""
    instance = Instance.objects.create(user=user, label=label, image="img", status=S.RUNNING,
                                       machine_id=f"m-{label}")
    return instance, snapshot_services.machine_env(instance)


def storage_of(env: dict, *, prefix: str | None = None) -> Storage:
    """A machine's view of storage: its keys, its prefix unless another is named."""
    return Storage(StorageConfig(
        endpoint=env["DUMONT_S3_ENDPOINT"], bucket=env["DUMONT_S3_BUCKET"], region="us-east-1",
        prefix=env["DUMONT_S3_PREFIX"] if prefix is None else prefix,
        access_key=env["DUMONT_S3_ACCESS_KEY"], secret_key=env["DUMONT_S3_SECRET_KEY"],
    ))


def denied(call, code: str = "AccessDenied") -> str:
    """The store answers 403 with `code`: AccessDenied for a key outside its scope,
    InvalidAccessKeyId for a key that was revoked."""
    with pytest.raises(StorageError) as refused:
        call()
    assert code in str(refused.value), refused.value
    return str(refused.value)


def revoked(call) -> str:
    return denied(call, "InvalidAccessKeyId")


def test_a_machines_key_reaches_only_its_own_workspace_and_deletes_nothing_but_its_locks(user, scoped):
    a, a_env = installed(user, "a")
    b, b_env = installed(user, "b")
    assert a_env["DUMONT_S3_ACCESS_KEY"] not in (scoped.access_key, b_env["DUMONT_S3_ACCESS_KEY"])
    assert scoped.secret_key not in a_env.values()  # the bucket's keys stay on the control plane
    own = storage_of(a_env)
    own.put("data/x", b"a's bytes")
    assert own.get("data/x") == b"a's bytes"
    assert [name for name, _ in own.list("")] == ["data/x"]
    storage_of(b_env).put("data/y", b"b's bytes")

    others = storage_of(a_env, prefix=b_env["DUMONT_S3_PREFIX"])
    denied(lambda: others.get("data/y"))
    denied(lambda: list(others.list("")))
    denied(lambda: others.put("data/z", b"overwrite"))
    denied(lambda: others.delete("data/y"))
    denied(lambda: list(storage_of(a_env, prefix="").list("")))  # nor the bucket as a whole
    denied(lambda: own.delete("data/x"))  # deleting is the control plane's (garbage collection)
    own.put("locks/mine", b"{}")
    own.delete("locks/mine")  # a snapshot releases its own lock

    assert storage_of(b_env).get("data/y") == b"b's bytes"
    assert own.get("data/x") == b"a's bytes"


def test_snapshot_and_restore_work_with_the_machines_own_key(user, scoped, tmp_path):
    instance, env = installed(user, "work")
    workspace = tmp_path / "workspace"
    (workspace / "models").mkdir(parents=True)
    (workspace / "models" / "weights.bin").write_bytes(bytes(range(256)) * 4096)
    (workspace / "notes.txt").write_text("kept")
    repo = Repository(config_from_env(env))
    created = snapshot_create(repo, str(workspace))
    snapshot_restore(Repository(config_from_env(env)), created.id, str(tmp_path / "restored"))
    assert (tmp_path / "restored" / "notes.txt").read_text() == "kept"
    assert (tmp_path / "restored" / "models" / "weights.bin").read_bytes() == bytes(range(256)) * 4096


def test_a_key_stops_working_once_its_instance_is_destroyed(user, scoped, tasks,
                                                            django_capture_on_commit_callbacks):
    instance, env = installed(user, "gone")
    storage_of(env).put("data/x", b"x")
    instance_services.instance_transition(instance_id=instance.pk, to=S.DESTROYING, actor="user:alice")
    with django_capture_on_commit_callbacks(execute=True):
        instance_services.instance_record_destroyed(instance_id=instance.pk)
    assert tasks.names() == ["snapshots.grants_revoke"]
    tasks.drain()
    revoked(lambda: storage_of(env).get("data/x"))
    grant = StorageGrant.objects.get(instance=instance)
    assert grant.revoked_at is not None and "destroyed" in grant.revoke_reason
    users = [user["UserName"] for user in IamIssuer().client.list_users()["Users"]]
    assert principal_for(instance.id) not in users  # the workspace's user is gone from the store too


def test_a_key_stops_working_after_it_expires_and_the_live_machine_gets_a_new_one(user, scoped):
    instance, env = installed(user, "late")
    StorageGrant.objects.filter(instance=instance).update(expires_at=timezone.now() - timedelta(seconds=1))
    report = grants.grants_maintain()
    assert report["revoked"] == 1 and report["issued"] == 1
    revoked(lambda: storage_of(env).put("data/x", b"x"))
    fresh = grants.grant_for_delivery(instance_id=instance.pk)
    assert fresh is not None and fresh.access_key != env["DUMONT_S3_ACCESS_KEY"]
    args = snapshot_services.delivery_args(instance.pk, "snapshot", {"snapshot": "s"})
    storage_of(args["repository"]).put("data/x", b"x")  # a storage command carries the new key


def test_a_live_machines_grant_is_renewed_before_it_expires(user, scoped, settings):
    instance, env = installed(user, "long")
    soon = timezone.now() + timedelta(seconds=settings.DUMONT_SNAPSHOT_CREDENTIALS_TTL / 4)
    StorageGrant.objects.filter(instance=instance).update(expires_at=soon)
    assert grants.grants_maintain()["renewed"] == 1
    grant = StorageGrant.objects.get(instance=instance)
    assert grant.revoked_at is None and grant.expires_at > soon
    storage_of(env).put("data/x", b"still mine")


def test_a_reinstall_replaces_the_previous_key(user, scoped):
    instance, first = installed(user, "again")
    second = snapshot_services.machine_env(instance)  # the agent installed again (a resume)
    revoked(lambda: storage_of(first).put("data/x", b"x"))
    storage_of(second).put("data/x", b"x")


def test_storage_commands_carry_the_machines_key_never_the_buckets(user, scoped):
    instance, env = installed(user, "cmd")
    repository = snapshot_services.delivery_args(instance.pk, "snapshot", {"snapshot": "s"})["repository"]
    assert repository["DUMONT_S3_ACCESS_KEY"] == env["DUMONT_S3_ACCESS_KEY"]
    assert scoped.access_key not in repository.values() and scoped.secret_key not in repository.values()
    StorageGrant.objects.filter(instance=instance).update(revoked_at=timezone.now())
    bare = snapshot_services.delivery_args(instance.pk, "snapshot", {})["repository"]
    assert "DUMONT_S3_ACCESS_KEY" not in bare and "DUMONT_S3_SECRET_KEY" not in bare  # the agent keeps its own


def test_operators_see_grants_but_never_their_secret(user, scoped, admin_client):
    instance, env = installed(user, "seen")
    page = admin_client.get("/admin/snapshots/storagegrant/").content.decode()
    assert env["DUMONT_S3_ACCESS_KEY"] in page and env["DUMONT_S3_SECRET_KEY"] not in page
    grant = StorageGrant.objects.get(instance=instance)
    detail = admin_client.get(f"/admin/snapshots/storagegrant/{grant.pk}/change/").content.decode()
    assert env["DUMONT_S3_SECRET_KEY"] not in detail

"""Every write about machines' storage credentials (DUMONT_SNAPSHOT_CREDENTIALS=scoped).

A machine gets a grant when its agent is installed (receivers.install_env, in the install
task): a key of its own, scoped to its workspace's prefix (credentials.py). The grant is what
its agent's environment and its storage commands carry; the bucket's keys never leave the
control plane. It is revoked at the store when its machine stops, is given back or destroyed
(receivers, on the instance's transitions), when a newer grant replaces it, and when it outlives
`expires_at` without renewal. The beat (`grants_maintain`) renews the grants of machines still
running and revokes the rest, so a revocation the store refused is tried again.

Calls to the store happen here, in tasks, outside any transaction; the reads in
`grant_for_delivery` touch only the database (a heartbeat is served with it).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db.models import Exists, OuterRef
from django.utils import timezone

from apps.instances.models import Instance, InstanceStatus

from .credentials import CredentialsUnavailable, issuer, principal_for
from .keys import open_secret, seal_secret
from .models import StorageGrant, Workspace

log = logging.getLogger(__name__)
S = InstanceStatus

# The instance has a machine whose agent may use its grant; or its machine stopped or went.
MACHINE_UP = frozenset({S.RUNNING, S.HIBERNATING, S.WAKING})
MACHINE_GONE = frozenset({S.PAUSED, S.HIBERNATED, S.DESTROYED, S.FAILED})


def scoped() -> bool:
    return settings.DUMONT_SNAPSHOT_CREDENTIALS == "scoped"


def _ttl() -> timedelta:
    return timedelta(seconds=settings.DUMONT_SNAPSHOT_CREDENTIALS_TTL)


def grant_issue(*, instance: Instance, workspace: Workspace) -> StorageGrant:
    """A new key for the instance's machine; the instance's older grants are revoked (their
    agent was replaced: a reinstall kills it, another machine stopped first). Raises
    CredentialsUnavailable when the store refuses."""
    issued = issuer().issue(principal=principal_for(instance.id), prefix=workspace.prefix)
    grant = StorageGrant.objects.create(
        instance=instance, machine_id=instance.machine_id, principal=principal_for(instance.id),
        access_key=issued.access_key, sealed_secret=seal_secret(issued.access_key, issued.secret),
        expires_at=timezone.now() + _ttl(),
    )
    for older in live_grants(instance_id=instance.id).exclude(pk=grant.pk):
        grant_revoke(grant=older, reason="replaced by a newer grant for the instance's machine")
    log.info("instance %s: storage key %s issued for machine %s", instance.id, grant.access_key,
             instance.machine_id or "-")
    return grant


def grant_keys(grant: StorageGrant) -> tuple[str, str]:
    return grant.access_key, open_secret(grant.access_key, grant.sealed_secret)


def live_grants(*, instance_id):
    return StorageGrant.objects.filter(instance_id=instance_id, revoked_at__isnull=True)


def grant_for_delivery(*, instance_id) -> StorageGrant | None:
    """The grant a storage command of the instance carries: its machine's, not expired."""
    instance = Instance.objects.filter(pk=instance_id).only("machine_id").first()
    if instance is None:
        return None
    return (live_grants(instance_id=instance_id).filter(machine_id=instance.machine_id, expires_at__gt=timezone.now())
            .order_by("-issued_at").first())


def grant_revoke(*, grant: StorageGrant, reason: str) -> bool:
    """Revoke at the store, then record it. False when the store refused (the beat retries)."""
    try:
        issuer().revoke(principal=grant.principal, access_key=grant.access_key)
    except CredentialsUnavailable as exc:
        log.warning("storage key %s: %s", grant.access_key, exc)
        StorageGrant.objects.filter(pk=grant.pk).update(revoke_error=str(exc)[:2000])
        return False
    StorageGrant.objects.filter(pk=grant.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now(), revoke_reason=reason, revoke_error="")
    return True


def grants_revoke_for(*, instance_id, reason: str) -> int:
    """The instance's machine stopped or went: every grant of it is revoked; a destroyed
    instance's user goes from the store too."""
    revoked = sum(grant_revoke(grant=grant, reason=reason) for grant in live_grants(instance_id=instance_id))
    instance = Instance.objects.filter(pk=instance_id).only("status").first()
    if instance is not None and instance.status == S.DESTROYED and not live_grants(instance_id=instance_id).exists():
        try:
            issuer().forget(principal=principal_for(instance_id))
        except CredentialsUnavailable as exc:
            log.warning("instance %s: %s", instance_id, exc)
    return revoked


def grants_maintain() -> dict:
    """Periodic: renew the grants of machines still up, revoke those that expired or whose
    machine is gone (and revocations the store refused before), and issue one to a machine that
    has none (the store was down at its install, or its grant expired unrenewed)."""
    now = timezone.now()
    report = {"renewed": 0, "revoked": 0, "failed": 0, "issued": 0}
    for grant in StorageGrant.objects.filter(revoked_at__isnull=True).select_related("instance"):
        instance = grant.instance
        machine_up = instance.status in MACHINE_UP and instance.machine_id == grant.machine_id
        if machine_up and grant.expires_at > now:
            if grant.expires_at - now < _ttl() / 2:
                StorageGrant.objects.filter(pk=grant.pk).update(expires_at=now + _ttl())
                report["renewed"] += 1
            continue
        reason = "expired" if machine_up else f"its machine is gone (instance {instance.status})"
        report["revoked" if grant_revoke(grant=grant, reason=reason) else "failed"] += 1
    for instance in _machines_without_a_grant(now):
        try:
            grant_issue(instance=instance, workspace=instance.workspace)
            report["issued"] += 1
        except CredentialsUnavailable as exc:
            log.warning("instance %s: %s", instance.pk, exc)
            report["failed"] += 1
    return report


def _machines_without_a_grant(now):
    covered = StorageGrant.objects.filter(instance=OuterRef("pk"), machine_id=OuterRef("machine_id"),
                                          revoked_at__isnull=True, expires_at__gt=now)
    return (Instance.objects.filter(status__in=MACHINE_UP, workspace__isnull=False).exclude(machine_id="")
            .exclude(Exists(covered)).select_related("workspace"))

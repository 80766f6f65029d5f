"""Install the agent on a running machine over SSH and start it, detached.

Steps, each named in the failure reason when it fails: connect (pinned host key), upload the
wheel (and, for machines without a package index, its dependencies' wheels) and the agent's
config over SFTP, pip-install into ~/.dumont/lib, start the agent with setsid/nohup. The agent
then has DUMONT_AGENT_FIRST_HEARTBEAT_TIMEOUT to say hello.
"""

from __future__ import annotations

import logging
import shlex
from dataclasses import dataclass
from datetime import timedelta

import paramiko
from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from apps.instances.models import Instance, InstanceStatus
from apps.providers.ssh import HostKeyChanged, SshNotReady, ssh_exec, ssh_session
from dumont.dispatch import send
from dumont.locks import single_flight

from . import services
from .dist import AgentBuildError, agent_wheel, dependency_wheels
from .hooks import install_env
from .models import Agent, AgentStatus

log = logging.getLogger(__name__)

REMOTE_DIR = ".dumont"  # relative to the SSH user's home

# Runs on the machine. Picks a Python 3.9+, installs the wheel into a private directory (with
# NVML bindings from PyPI when the machine has an NVIDIA GPU), stops an older agent, starts the
# new one detached from the SSH session.
INSTALL_SCRIPT = r"""
set -eu
cd "$HOME/{dir}"
PY=""
for candidate in python3 /usr/bin/python3 /opt/conda/bin/python3 /usr/local/bin/python3; do
  if "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 9))' 2>/dev/null; then
    PY=$(command -v "$candidate"); break
  fi
done
[ -n "$PY" ] || {{ echo "no Python 3.9+ found on the machine" >&2; exit 10; }}
rm -rf lib.new
EXTRAS=snapshot
if command -v nvidia-smi >/dev/null 2>&1 || [ -e /dev/nvidia0 ]; then EXTRAS=nvml,snapshot; fi
INDEX=""
if [ -d wheels ]; then INDEX="--no-index --find-links wheels"; fi  # uploaded: no package index needed
"$PY" -m pip install -q --disable-pip-version-check $INDEX --target lib.new "dist/{wheel}[$EXTRAS]" >&2
rm -rf lib && mv lib.new lib
if [ -f agent.pid ]; then kill "$(cat agent.pid)" 2>/dev/null || true; fi
set -a; . ./agent.env; set +a
WORKSPACE="${{DUMONT_WORKSPACE:-/workspace}}"
WORKSPACE="${{WORKSPACE/#\~/$HOME}}"
# Where the user works, and what snapshots save.
mkdir -p "$WORKSPACE" 2>/dev/null || echo "cannot create the workspace $WORKSPACE; snapshots will fail" >&2
PYTHONPATH="$HOME/{dir}/lib" setsid nohup "$PY" -m agent run >> agent.log 2>&1 < /dev/null &
echo $! > agent.pid
echo "started agent pid $(cat agent.pid) with $PY"
"""


class InstallFailed(Exception):
    pass


def agent_env(instance: Instance, token: str) -> str:
    values = {
        "DUMONT_URL": settings.DUMONT_AGENT_CONTROL_URL,
        "DUMONT_INSTANCE_ID": str(instance.id),
        "DUMONT_AGENT_TOKEN": token,
        "DUMONT_AGENT_INTERVAL": f"{settings.DUMONT_AGENT_INTERVAL:g}",
        "DUMONT_WORKSPACE": settings.DUMONT_WORKSPACE_PATH,
        # Where the agent snapshots the workspace on its own when the control plane stays out of
        # reach (agent/protect.py), from apps.snapshots (hooks.py).
        **install_env(instance),
    }
    return "".join(f"{name}={shlex.quote(value)}\n" for name, value in values.items())


def install(instance_id) -> None:
    """Orchestration step: install and start the agent on a running instance. One install at a
    time per instance (a retried one and one the beat sent again would trip over each other's
    files on the machine); a second one while the first runs does nothing."""
    with single_flight(f"agents.install.{instance_id}", ttl=settings.DUMONT_AGENT_INSTALL_TIMEOUT + 60) as mine:
        if not mine:
            log.info("instance %s: an agent install is already under way", instance_id)
            return
        _install(instance_id)


def _install(instance_id) -> None:
    # Waking: a new machine for a hibernated workspace, whose agent restores the snapshot.
    instance = Instance.objects.filter(pk=instance_id, status__in=(InstanceStatus.RUNNING, InstanceStatus.WAKING)).first()
    if instance is None:
        return
    agent = Agent.objects.filter(pk=instance.pk).first()
    if agent is not None and _runs_on_this_machine(agent, instance):
        # Installed on this machine already (a copy of this task ran first, or this one is a
        # retry of an install that did start the agent): another install would kill that agent,
        # maybe in the middle of a restore.
        log.info("instance %s: the agent is installed on this machine already", instance.id)
        return
    token = services.agent_install_begin(instance_id=instance.id)
    try:
        _install_over_ssh(instance, token)
    except InstallFailed as exc:
        log.warning("instance %s: agent install failed: %s", instance.id, exc)
        services.agent_install_failed(instance_id=instance.id, reason=str(exc))
        return
    services.agent_install_started(instance_id=instance.id)


def _runs_on_this_machine(agent: Agent, instance: Instance) -> bool:
    """The agent was started, or has reported, since this machine arrived."""
    arrived = instance.status_changed_at
    if agent.status == AgentStatus.WAITING:
        return bool(agent.installed_at and agent.installed_at >= arrived)
    if agent.status in (AgentStatus.HEALTHY, AgentStatus.SILENT):
        return any(at and at >= arrived for at in (agent.installed_at, agent.last_heartbeat_at))
    return False


def _install_over_ssh(instance: Instance, token: str) -> None:
    try:
        wheel = agent_wheel()
        dependencies = dependency_wheels() if settings.DUMONT_AGENT_UPLOAD_DEPENDENCIES else []
    except AgentBuildError as exc:
        raise InstallFailed(f"build: {exc}") from None
    timeout = settings.DUMONT_AGENT_INSTALL_TIMEOUT
    try:
        with ssh_session(instance.ssh_host, instance.ssh_port, pinned_host_key=instance.ssh_host_key) as ssh:
            _upload(ssh, wheel, dependencies, agent_env(instance, token))
            script = INSTALL_SCRIPT.format(dir=REMOTE_DIR, wheel=wheel.name)
            status, out, err = ssh_exec(ssh, f"bash -c {shlex.quote(script)}", timeout=timeout)
    except HostKeyChanged as exc:
        raise InstallFailed(f"connect: refused, host key changed: {exc}") from None
    except (SshNotReady, paramiko.SSHException, OSError) as exc:
        raise InstallFailed(f"connect: {exc or type(exc).__name__}") from None
    if status != 0:
        raise InstallFailed(f"install: exit status {status}: {(err or out).strip()[-1500:]}")
    log.info("instance %s: %s", instance.id, out.strip())


def _upload(ssh: paramiko.SSHClient, wheel, dependencies: list, env_text: str) -> None:
    try:
        with ssh.open_sftp() as sftp:
            for path in (REMOTE_DIR, f"{REMOTE_DIR}/dist", *([f"{REMOTE_DIR}/wheels"] if dependencies else [])):
                try:
                    sftp.mkdir(path, mode=0o700)
                except OSError:
                    pass  # already there
            sftp.put(str(wheel), f"{REMOTE_DIR}/dist/{wheel.name}")
            present = set(sftp.listdir(f"{REMOTE_DIR}/wheels")) if dependencies else set()
            for dependency in dependencies:
                if dependency.name not in present:  # a reinstall uploads only what changed
                    sftp.put(str(dependency), f"{REMOTE_DIR}/wheels/{dependency.name}")
            with sftp.open(f"{REMOTE_DIR}/agent.env", "w") as handle:
                handle.chmod(0o600)  # the token lives here
                handle.write(env_text)
    except (paramiko.SSHException, OSError) as exc:
        raise InstallFailed(f"upload: {exc or type(exc).__name__}") from None


def expect_heartbeat(instance_id) -> None:
    """Orchestration step: fail an agent that never said hello, with the end of its log."""
    agent = Agent.objects.select_related("instance").filter(pk=instance_id, status=AgentStatus.WAITING).first()
    if agent is None:
        return
    services.agent_expect_heartbeat(instance_id=instance_id, log_tail=_log_tail(agent.instance))


def _log_tail(instance: Instance) -> str:
    try:
        with ssh_session(instance.ssh_host, instance.ssh_port, pinned_host_key=instance.ssh_host_key) as ssh:
            _, out, _ = ssh_exec(ssh, f"tail -n 15 $HOME/{REMOTE_DIR}/agent.log", timeout=settings.DUMONT_SSH_TIMEOUT)
            return out.strip()
    except Exception as exc:  # a diagnosis must never hide the failure it explains
        return f"(could not read the agent log: {exc})"


# --- work lost with a worker ---------------------------------------------------------------------


@dataclass
class Requeued:
    installs: int = 0
    hello_checks: int = 0


def requeue_stalled() -> Requeued:
    """Periodic (beat): agent work that died with its worker, or was never sent (the broker was
    down when the machine came up), is sent again.

    A machine that should have an agent (a running instance, or a wake restoring its snapshot
    onto a race's winner) but has none installed, or whose install outlived
    DUMONT_AGENT_INSTALL_TIMEOUT, gets its install again (safe to repeat: one install runs at a
    time, and one that finds the agent installed on this machine does nothing). An agent waiting for its first heartbeat past
    DUMONT_AGENT_FIRST_HEARTBEAT_TIMEOUT gets the check that fails it, with its log.
    """
    report = Requeued()
    if not settings.DUMONT_AGENT_ENABLED:
        return report
    now = timezone.now()
    grace = timedelta(seconds=settings.DUMONT_RECONCILE_GRACE)
    S = InstanceStatus
    wants_agent = Q(status=S.RUNNING) | Q(status=S.WAKING, deadline_at__isnull=True)
    machines = Instance.objects.filter(wants_agent).exclude(machine_id="").exclude(ssh_host="")
    never = Q(agent__isnull=True) | Q(agent__status=AgentStatus.NOT_INSTALLED)
    stuck = Q(agent__status=AgentStatus.INSTALLING,
              agent__install_started_at__lt=now - grace - timedelta(seconds=settings.DUMONT_AGENT_INSTALL_TIMEOUT))
    lost = (never & Q(status_changed_at__lt=now - grace)) | stuck
    for instance_id in machines.filter(lost).values_list("pk", flat=True):
        send("agents.install", instance_id)
        report.installs += 1
    silent_since = now - grace - timedelta(seconds=settings.DUMONT_AGENT_FIRST_HEARTBEAT_TIMEOUT)
    for instance_id in Agent.objects.filter(status=AgentStatus.WAITING, installed_at__lt=silent_since).values_list(
            "pk", flat=True):
        send("agents.expect_heartbeat", instance_id)
        report.hello_checks += 1
    return report

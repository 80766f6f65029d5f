"""The agent panel on the instance page, its polling partial, and the agent admin."""

from __future__ import annotations

import re
from dataclasses import asdict
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from agent import wire
from apps.agents.models import Agent, AgentCommand, AgentSample, AgentStatus, CommandStatus
from apps.agents.services import agent_token_issue
from apps.instances.models import Instance, InstanceStatus
from apps.web.sparkline import sparkline

S = InstanceStatus
HTMX = {"HTTP_HX_REQUEST": "true"}
NVML_FAILURE = "NVML: Unknown Error (GPU is lost)"


@pytest.fixture
def instance(user) -> Instance:
    return Instance.objects.create(user=user, label="box", image="img", gpu_name="RTX 4090", status=S.RUNNING)


def gpu(utilization: float, index: int = 0) -> wire.GpuSample:
    return wire.GpuSample(index=index, utilization=utilization, memory_used_mb=18342, memory_total_mb=24564,
                          power_w=312.4, temperature_c=71, processes=[4242, 4243])


def record_samples(instance: Instance, readings: list[float | str], **activity) -> Agent:
    """A healthy agent whose recent samples read `readings`: a number is a utilization, a string an NVML error."""
    now = timezone.now()
    samples = []
    for slot, reading in enumerate(readings):
        at = now - timedelta(seconds=10 * (len(readings) - slot))
        failed = isinstance(reading, str)
        sample = wire.Sample(at=at.timestamp(), gpus=[] if failed else [gpu(reading)],
                             gpu_error=reading if failed else None, activity=wire.Activity(**activity))
        AgentSample.objects.create(
            instance=instance, slot=slot, at=at, gpu_util_max=sample.max_gpu_utilization,
            gpu_error=sample.gpu_error or "", data=asdict(sample),
        )
        samples.append(sample)
    return Agent.objects.create(
        instance=instance, status=AgentStatus.HEALTHY, version="0.3.1", last_heartbeat_at=now,
        samples_received=len(samples), latest=asdict(samples[-1]),
    )


def page_of(browser: Client, instance: Instance) -> str:
    response = browser.get(reverse("instances:detail", args=[instance.id]))
    assert response.status_code == 200
    return response.content.decode()


def agent_panel(page: str) -> str:
    match = re.search(r'<section id="agent-panel".*?</section>', page, re.DOTALL)
    assert match, "no agent panel on the page"
    return match.group(0)


def gpu_part(page: str) -> str:
    match = re.search(r'<div class="agent-gpu">.*?<div class="agent-activity">', page, re.DOTALL)
    assert match, "no GPU part in the agent panel"
    return match.group(0)


def visible_text(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def path_points(html: str) -> list[str]:
    path = re.search(r'<path class="sparkline-line" d="([^"]*)"', html)
    assert path, "no sparkline path"
    return re.findall(r"[ML][\d.]+,[\d.]+", path.group(1))


# --- access -------------------------------------------------------------------------------------


def test_anonymous_agent_partial_is_sent_to_login(client, instance):
    response = client.get(reverse("instances:agent", args=[instance.id]))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize("name", ["instances:detail", "instances:agent"])
def test_other_users_agent_panel_is_404(browser, other_user, name):
    theirs = Instance.objects.create(user=other_user, label="theirs", image="img", status=S.RUNNING)
    record_samples(theirs, [50.0])
    assert browser.get(reverse(name, args=[theirs.id])).status_code == 404


# --- health ---------------------------------------------------------------------------------------


def test_panel_shows_status_version_and_heartbeat_age(browser, instance):
    agent = record_samples(instance, [40.0])
    Agent.objects.filter(pk=agent.pk).update(last_heartbeat_at=timezone.now() - timedelta(seconds=7))
    panel = agent_panel(page_of(browser, instance))
    assert '<span class="badge badge-healthy">healthy</span>' in panel
    assert "0.3.1" in panel
    age = re.search(r'last heartbeat\s*<time datetime="[^"]+"[^>]*>(\d+) s ago</time>', panel)
    assert age, "heartbeat age missing"
    assert 7 <= int(age.group(1)) <= 9
    assert ' late"' not in panel


def test_silent_agent_is_a_warning_with_its_reason(browser, instance):
    agent = record_samples(instance, [40.0])
    Agent.objects.filter(pk=agent.pk).update(
        status=AgentStatus.SILENT, error="no heartbeat for more than 60 s",
        last_heartbeat_at=timezone.now() - timedelta(minutes=5),
    )
    panel = agent_panel(page_of(browser, instance))
    assert "badge-silent" in panel and "stopped reporting" in panel
    assert "no heartbeat for more than 60 s" in panel
    assert re.search(r'class="small late"[^>]*>\s*last heartbeat\s*<time[^>]*>5 min ago', panel)


def test_failed_install_shows_its_error(browser, instance):
    Agent.objects.create(instance=instance, status=AgentStatus.FAILED,
                         error="no heartbeat within 120 s of starting; agent log ends with:\nImportError: pynvml")
    panel = agent_panel(page_of(browser, instance))
    assert "badge-failed" in panel
    assert "ImportError: pynvml" in panel
    assert "No samples yet." in panel


def test_instance_without_agent_shows_not_installed(browser, instance):
    panel = agent_panel(page_of(browser, instance))
    assert '<span class="badge badge-not_installed">not installed</span>' in panel
    assert "The agent is not installed" in panel
    assert "<svg" not in panel and "last heartbeat" not in panel


# --- GPU ------------------------------------------------------------------------------------------


def test_sparkline_has_one_point_per_sample(browser, instance):
    record_samples(instance, [10.0, 55.0, 90.0, 30.0, 72.0])
    gpu_html = gpu_part(page_of(browser, instance))
    assert len(path_points(gpu_html)) == 5
    assert "sparkline-gap" not in gpu_html
    assert '<span class="gpu-now">72 %</span>' in gpu_html


def test_gpu_error_is_a_gap_and_an_error_never_zero(browser, instance):
    record_samples(instance, [10.0, 20.0, NVML_FAILURE, 30.0, NVML_FAILURE], cpu_percent=37.5)
    gpu_html = gpu_part(page_of(browser, instance))
    points = path_points(gpu_html)
    assert len(points) == 3
    assert [point[0] for point in points] == ["M", "L", "M"], "the line stops at the failed sample"
    assert gpu_html.count('class="sparkline-gap"') == 2
    assert f"GPU readings failed: {NVML_FAILURE}" in gpu_html
    assert "no reading" in gpu_html
    assert not re.search(r"\b0 %", visible_text(gpu_html))


def test_latest_reading_per_gpu(browser, instance):
    record_samples(instance, [64.0])
    text = visible_text(gpu_part(page_of(browser, instance)))
    assert "0 64 % 18342 / 24564 MiB 312 W 71 °C 2" in text


def test_panel_reads_what_a_real_heartbeat_stored(browser, instance):
    now = timezone.now().timestamp()
    heartbeat = wire.Heartbeat(instance_id=str(instance.id), agent_version="0.3.1", seq=1, samples=[
        wire.Sample(at=now - 20, gpus=[gpu(45.0)]),
        wire.Sample(at=now - 10, gpu_error=NVML_FAILURE),
        wire.Sample(at=now, gpus=[gpu(88.0), gpu(12.0, index=1)], activity=wire.Activity(ssh_sessions=1)),
    ])
    agent_api = APIClient()
    agent_api.credentials(HTTP_AUTHORIZATION=f"Agent {agent_token_issue(instance=instance)}")
    assert agent_api.post("/api/v1/agent/status", heartbeat.to_dict(), format="json").status_code == 200
    page = page_of(browser, instance)
    gpu_html = gpu_part(page)
    assert [point[0] for point in path_points(gpu_html)] == ["M", "M"]
    assert '<span class="gpu-now">88 %</span>' in gpu_html
    assert "SSH 1 session" in visible_text(agent_panel(page))


# --- activity -------------------------------------------------------------------------------------


def test_activity_signals_render_in_human_units(browser, instance):
    record_samples(instance, [5.0], ssh_sessions=2, last_input_age_s=42.0, jupyter_busy_kernels=3,
                   cpu_load_1m=3.17, cpu_percent=37.5, net_rx_bytes_per_s=1_500_000, net_tx_bytes_per_s=2048)
    text = visible_text(agent_panel(page_of(browser, instance)))
    assert "SSH 2 sessions · input 42 s ago" in text
    assert "Jupyter 3 busy kernels" in text
    assert "CPU 38 % · load 3.17" in text
    assert "Network ↓ 1.4 MB/s · ↑ 2.0 KB/s" in text


def test_activity_without_jupyter_says_so(browser, instance):
    record_samples(instance, [5.0], last_input_age_s=7200.0)
    text = visible_text(agent_panel(page_of(browser, instance)))
    assert "Jupyter no Jupyter" in text
    assert "input 2 h ago" in text


# --- commands -------------------------------------------------------------------------------------


def test_commands_show_status_attempts_progress_and_errors(browser, instance):
    record_samples(instance, [5.0])
    AgentCommand.objects.create(instance=instance, kind="snapshot", status=CommandStatus.RUNNING, attempts=2,
                                actor="user:alice", progress={"bytes": 3_000, "total_bytes": 12_000})
    AgentCommand.objects.create(instance=instance, kind="restore", status=CommandStatus.FAILED, attempts=1,
                                actor="user:alice", error="s3: 403 Forbidden", finished_at=timezone.now())
    panel = agent_panel(page_of(browser, instance))
    assert '<progress value="3000" max="12000">' in panel
    assert "badge-running" in panel and "badge-failed" in panel
    assert "s3: 403 Forbidden" in panel
    commands = panel.split("<h3>Commands</h3>", 1)[1]
    rows = re.findall(r"<tr>\s*<td class=\"mono\">(\w+)</td>.*?<td class=\"num\">(\d+)</td>", commands, re.DOTALL)
    assert rows == [("restore", "1"), ("snapshot", "2")], "newest first, with attempts"


# --- polling --------------------------------------------------------------------------------------


def test_panel_of_running_instance_polls_every_5s(browser, instance):
    record_samples(instance, [5.0])
    response = browser.get(reverse("instances:agent", args=[instance.id]), **HTMX)
    assert response.status_code == 200
    opening = response.content.decode().lstrip().split(">", 1)[0]
    assert opening.startswith('<section id="agent-panel"')
    assert f'hx-get="{reverse("instances:agent", args=[instance.id])}"' in opening
    assert 'hx-trigger="every 5s"' in opening


@pytest.mark.parametrize("status", [S.PAUSED, S.DESTROYED, S.FAILED])
def test_panel_of_instance_not_running_answers_286_and_stops_polling(browser, instance, status):
    record_samples(instance, [5.0])
    Instance.objects.filter(pk=instance.pk).update(status=status)
    response = browser.get(reverse("instances:agent", args=[instance.id]), **HTMX)
    assert response.status_code == 286
    opening = response.content.decode().lstrip().split(">", 1)[0]
    assert opening.startswith('<section id="agent-panel"') and "hx-trigger" not in opening


def test_panel_of_booting_instance_keeps_polling_for_the_install(browser, instance):
    Instance.objects.filter(pk=instance.pk).update(status=S.BOOTING)
    Agent.objects.create(instance=instance, status=AgentStatus.INSTALLING)
    response = browser.get(reverse("instances:agent", args=[instance.id]), **HTMX)
    assert response.status_code == 200
    assert "installing" in response.content.decode()


# --- the sparkline itself -------------------------------------------------------------------------


def test_sparkline_maps_0_to_bottom_and_100_to_top_and_clamps():
    chart = sparkline([0.0, 100.0, 150.0], width=100, height=54)
    assert chart.path == "M0.0,52.0 L50.0,2.0 L100.0,2.0"


def test_sparkline_draws_a_lone_point_as_a_dot():
    chart = sparkline([None, 50.0, None], width=100, height=54)
    assert chart.path == "M50.0,27.0h0"
    assert chart.gaps == (-25.0, 75.0) and chart.gap_width == 50.0


# --- admin ----------------------------------------------------------------------------------------


@pytest.fixture
def admin_client(client, db):
    admin = get_user_model().objects.create_superuser("ops", password="operator secret")
    client.force_login(admin)
    return client


def test_admin_lists_agents_and_filters_by_status(admin_client, user):
    healthy = Instance.objects.create(user=user, label="healthy-box", image="i", status=S.RUNNING)
    failed = Instance.objects.create(user=user, label="failed-box", image="i", status=S.RUNNING)
    Agent.objects.create(instance=healthy, status=AgentStatus.HEALTHY, version="0.3.1", token_hash="a" * 64)
    Agent.objects.create(instance=failed, status=AgentStatus.FAILED, error="install: pip failed")
    listing = admin_client.get("/admin/agents/agent/?status__exact=failed")
    assert [agent.instance.label for agent in listing.context["cl"].result_list] == ["failed-box"]
    detail = admin_client.get(f"/admin/agents/agent/{healthy.pk}/change/")
    assert detail.status_code == 200
    assert "a" * 64 not in detail.content.decode(), "the token digest stays out of the admin"


def test_admin_lists_agent_commands_and_filters_by_status(admin_client, user):
    instance = Instance.objects.create(user=user, label="box", image="i", status=S.RUNNING)
    AgentCommand.objects.create(instance=instance, kind="snapshot", status=CommandStatus.FAILED,
                                actor="user:alice", error="disk full")
    AgentCommand.objects.create(instance=instance, kind="echo", status=CommandStatus.PENDING, actor="user:alice")
    listing = admin_client.get("/admin/agents/agentcommand/?status__exact=failed")
    assert [command.kind for command in listing.context["cl"].result_list] == ["snapshot"]
    instance_page = admin_client.get(f"/admin/instances/instance/{instance.pk}/change/").content.decode()
    assert "disk full" in instance_page, "the instance admin shows its commands inline"

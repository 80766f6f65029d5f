"""HTML pages for instances, enhanced with htmx.

Views validate, call one service or selector, and render: the whole page for a plain request, only
the fragment being replaced for an htmx one. Every action is a real form POST, so the pages work
without JavaScript too.
"""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django.views.decorators.vary import vary_on_headers
from django_htmx.http import HttpResponseStopPolling

from apps.agents.selectors import instance_agent_panel
from apps.hibernation import services as hibernation_services
from apps.instances import selectors, services
from apps.instances.models import Instance, InstanceStatus
from apps.races.selectors import instance_race_panel
from apps.snapshots.views import panel_context as snapshot_panel_context
from dumont.errors import DomainError, IllegalTransition, NotFound

from .forms import COMMON_GPU_NAMES, IdlePolicyForm, InstanceCreateForm, InstanceFilterForm
from .sparkline import sparkline

ROW_TEMPLATE = "instances/_row.html"
STATUS_TEMPLATE = "instances/_status.html"
AGENT_TEMPLATE = "instances/_agent.html"
RACE_TEMPLATE = "instances/_race.html"


def _actor(request: HttpRequest) -> str:
    return f"user:{request.user.get_username()}"


def _instance_or_404(request: HttpRequest, instance_id) -> Instance:
    try:
        return selectors.instance_get(user=request.user, instance_id=instance_id)
    except NotFound:
        raise Http404("no such instance") from None


def _wants_fragment(request: HttpRequest) -> bool:
    # htmx asks for the full page when it restores history after hx-push-url.
    return bool(request.htmx) and not request.htmx.history_restore_request


def _status_context(instance: Instance, **extra) -> dict:
    wake = instance.wakes.select_related("restore_command").first()
    return {
        "instance": instance,
        "events": selectors.instance_events(instance=instance),
        "wake": wake,
        "restore_progress": (wake.restore_command.progress or {}) if wake and wake.restoring else None,
        **extra,
    }


def _agent_context(instance: Instance) -> dict:
    panel = instance_agent_panel(instance=instance)
    return {
        "instance": instance,
        "panel": panel,
        "gpu_chart": sparkline([sample.gpu_util_max for sample in panel.samples]),
        # Also on the way to running: the agent is installed as the machine comes up.
        "agent_polling": instance.status == InstanceStatus.RUNNING or not instance.is_settled,
    }


def _polled(request: HttpRequest, template: str, context: dict) -> HttpResponse:
    """A fragment that polls itself: status 286 makes htmx swap it in and stop polling."""
    html = render_to_string(template, context, request)
    if context["instance"].is_settled:
        return HttpResponseStopPolling(html)
    return HttpResponse(html)


# --- pages ------------------------------------------------------------------------------------


@login_required
@require_GET
@vary_on_headers("HX-Request")
def instance_list(request: HttpRequest) -> HttpResponse:
    filters = InstanceFilterForm(request.GET)
    filters.is_valid()  # an unknown status is left out of cleaned_data and shown as a form error
    status = filters.cleaned_data.get("status") or None
    instances = selectors.instance_list(
        user=request.user, status=status, include_destroyed=bool(filters.cleaned_data.get("show_destroyed"))
    )
    context = {"instances": instances, "filters": filters}
    if _wants_fragment(request):
        return render(request, "instances/_listing.html", context)
    return render(request, "instances/list.html", context)


@login_required
@require_GET
def instance_row(request: HttpRequest, instance_id) -> HttpResponse:
    """One list row, polled by rows whose instance is on its way to a settled state."""
    instance = _instance_or_404(request, instance_id)
    return _polled(request, ROW_TEMPLATE, {"instance": instance})


@login_required
@require_GET
@vary_on_headers("HX-Request")
def instance_detail(request: HttpRequest, instance_id) -> HttpResponse:
    instance = _instance_or_404(request, instance_id)
    if _wants_fragment(request):
        return _polled(request, STATUS_TEMPLATE, _status_context(instance))
    return render(request, "instances/detail.html",
                  {**_status_context(instance), **_agent_context(instance), **snapshot_panel_context(instance),
                   **_race_context(instance), "policy_form": IdlePolicyForm.for_instance(instance)})


def _race_context(instance: Instance) -> dict:
    return {"instance": instance, "race_panel": instance_race_panel(instance=instance)}


@login_required
@require_GET
def instance_race(request: HttpRequest, instance_id) -> HttpResponse:
    """The race panel, polled while its race runs or cleans up; 286 stops the polling."""
    instance = _instance_or_404(request, instance_id)
    context = _race_context(instance)
    html = render_to_string(RACE_TEMPLATE, context, request)
    if context["race_panel"] and context["race_panel"].live:
        return HttpResponse(html)
    return HttpResponseStopPolling(html)


@login_required
@require_GET
def instance_agent(request: HttpRequest, instance_id) -> HttpResponse:
    """The agent panel, polled while the instance runs; 286 stops the polling."""
    instance = _instance_or_404(request, instance_id)
    context = _agent_context(instance)
    html = render_to_string(AGENT_TEMPLATE, context, request)
    if context["agent_polling"]:
        return HttpResponse(html)
    return HttpResponseStopPolling(html)


@login_required
@require_http_methods(["GET", "POST"])
def instance_create(request: HttpRequest) -> HttpResponse:
    form = InstanceCreateForm(request.POST if request.method == "POST" else None)
    if form.is_bound and form.is_valid():
        try:
            instance = services.instance_create(
                user=request.user, actor=_actor(request), **form.cleaned_data,
            )
        except DomainError as exc:
            form.add_error(None, exc.detail)
        else:
            messages.success(request, f"Requested “{instance.label}”: Dumont is renting a machine.")
            return redirect("instances:detail", instance.id)
    return render(request, "instances/create.html", {"form": form, "gpu_names": COMMON_GPU_NAMES})


# --- actions ----------------------------------------------------------------------------------


@login_required
@require_POST
def instance_pause(request: HttpRequest, instance_id) -> HttpResponse:
    return _act(request, instance_id, services.instance_pause, verb="pause", doing="Pausing")


@login_required
@require_POST
def instance_resume(request: HttpRequest, instance_id) -> HttpResponse:
    return _act(request, instance_id, services.instance_resume, verb="resume", doing="Resuming")


@login_required
@require_POST
def instance_wake(request: HttpRequest, instance_id) -> HttpResponse:
    return _act(request, instance_id, hibernation_services.instance_wake, verb="wake", doing="Waking")


@login_required
@require_POST
def instance_idle_policy(request: HttpRequest, instance_id) -> HttpResponse:
    instance = _instance_or_404(request, instance_id)
    form = IdlePolicyForm(request.POST)
    if form.is_valid():
        hibernation_services.instance_set_idle_policy(instance=instance, actor=_actor(request), **form.cleaned_data)
        messages.success(request, "Idle policy saved.")
    else:
        messages.error(request, "Idle policy not saved: " + "; ".join(
            f"{form.fields[name].label if name in form.fields else name}: {' '.join(errors)}"
            for name, errors in form.errors.items()))
    return redirect("instances:detail", instance.id)


@login_required
@require_POST
def instance_destroy(request: HttpRequest, instance_id) -> HttpResponse:
    return _act(request, instance_id, services.instance_destroy, verb="destroy", doing="Destroying")


def _act(
    request: HttpRequest,
    instance_id,
    service: Callable[..., Instance],
    *,
    verb: str,
    doing: str,
) -> HttpResponse:
    """Run one action service and answer with the fragment the form came from.

    The form says where it sits (`return_to`: "list" or "detail"): htmx gets that list row or
    detail status fragment back, a plain POST is redirected to that page with a message.
    """
    instance = _instance_or_404(request, instance_id)
    on_detail = request.POST.get("return_to") == "detail"
    try:
        instance = service(instance=instance, actor=_actor(request))
    except IllegalTransition as exc:
        refusal = f"Can't {verb} “{instance.label}”: it is {exc.extra['status']}."
        if request.htmx:
            instance.refresh_from_db()
            return _action_fragment(request, instance, on_detail, error=refusal, status=409)
        messages.error(request, refusal)
    else:
        if request.htmx:
            return _action_fragment(request, instance, on_detail)
        messages.success(request, f"{doing} “{instance.label}”.")
    if on_detail:
        return redirect("instances:detail", instance.id)
    return redirect("instances:list")


def _action_fragment(
    request: HttpRequest, instance: Instance, on_detail: bool, *, error: str = "", status: int = 200
) -> HttpResponse:
    if on_detail:
        return render(request, STATUS_TEMPLATE, _status_context(instance, error=error), status=status)
    return render(request, ROW_TEMPLATE, {"instance": instance, "error": error}, status=status)

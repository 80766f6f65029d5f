"""HTML pages for snapshots: the instance page's snapshot panel (polled while one is being
written, with its progress bar), a page listing every snapshot of the user, and the two actions.
Plain form POSTs that htmx upgrades, like the instance pages."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseStopPolling

from apps.instances.selectors import instance_get
from dumont.errors import DomainError, NotFound

from . import selectors, services
from .models import SnapshotStatus

PANEL_TEMPLATE = "snapshots/_panel.html"


def panel_context(instance) -> dict:
    """What the instance page's snapshot panel shows."""
    snapshots = selectors.instance_snapshots(instance=instance)
    under_way = next((s for s in snapshots if s.status == SnapshotStatus.PENDING), None)
    return {
        "instance": instance,
        "snapshots": snapshots,
        "under_way": under_way,
        "under_way_progress": selectors.snapshot_progress(under_way) if under_way else None,
        "snapshots_polling": under_way is not None or any(s.status == SnapshotStatus.DELETING for s in snapshots),
    }


def _instance_or_404(request, instance_id):
    try:
        return instance_get(user=request.user, instance_id=instance_id)
    except NotFound:
        raise Http404("no such instance") from None


def _panel(request, instance, *, error: str = "", status: int = 200) -> HttpResponse:
    context = {**panel_context(instance), "snapshot_error": error}
    html = render_to_string(PANEL_TEMPLATE, context, request)
    if context["snapshots_polling"] or status != 200:
        return HttpResponse(html, status=status)
    return HttpResponseStopPolling(html)


@login_required
@require_GET
def snapshot_list(request: HttpRequest) -> HttpResponse:
    snapshots = selectors.snapshot_list(user=request.user).exclude(status=SnapshotStatus.DELETING)
    return render(request, "snapshots/list.html", {"snapshots": snapshots[:200]})


@login_required
@require_GET
def instance_snapshots(request: HttpRequest, instance_id) -> HttpResponse:
    """The snapshot panel, polled while a snapshot is under way; 286 stops the polling."""
    return _panel(request, _instance_or_404(request, instance_id))


@login_required
@require_POST
def snapshot_take(request: HttpRequest, instance_id) -> HttpResponse:
    instance = _instance_or_404(request, instance_id)
    try:
        services.snapshot_request(instance=instance, actor=f"user:{request.user.get_username()}")
    except DomainError as exc:
        if request.htmx:
            return _panel(request, instance, error=f"No snapshot: {exc.detail}", status=409)
        messages.error(request, f"No snapshot: {exc.detail}")
    else:
        if request.htmx:
            return _panel(request, instance)
        messages.success(request, f"Snapshotting “{instance.label}”.")
    return redirect("instances:detail", instance.id)


@login_required
@require_POST
def snapshot_delete(request: HttpRequest, snapshot_id) -> HttpResponse:
    try:
        snapshot = selectors.snapshot_get(user=request.user, snapshot_id=snapshot_id)
    except NotFound:
        raise Http404("no such snapshot") from None
    try:
        services.snapshot_delete(snapshot=snapshot, actor=f"user:{request.user.get_username()}")
    except DomainError as exc:
        messages.error(request, f"Snapshot not deleted: {exc.detail}")
    else:
        messages.success(request, "Snapshot deleted.")
    if request.POST.get("return_to") == "instance":
        return redirect("instances:detail", snapshot.instance_id)
    return redirect("snapshots:list")

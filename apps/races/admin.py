from django.contrib import admin

from .models import Race, RaceCandidate, StrayMachine


class RaceCandidateInline(admin.TabularInline):
    model = RaceCandidate
    extra = 0
    can_delete = False
    fields = [
        "round", "slot", "label", "offer_id", "host_id", "price_per_hour", "machine_id", "outcome", "error",
        "create_requested_at", "created_at", "running_at", "ssh_ready_at", "destroy_requested_at",
        "destroyed_at", "billed_seconds", "cost",
    ]
    readonly_fields = fields
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


class _ReadOnly(admin.ModelAdmin):
    """Written by the race worker and the reconciler only."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Race)
class RaceAdmin(_ReadOnly):
    list_display = [
        "started_at", "instance", "purpose", "status", "round", "max_rounds", "time_to_ready",
        "loser_cost", "claims", "cleaned_up_at",
    ]
    list_filter = ["status", "purpose", "started_at"]
    search_fields = ["id", "instance__id", "instance__label", "result"]
    list_select_related = ["instance"]
    date_hierarchy = "started_at"
    inlines = [RaceCandidateInline]

    @admin.display(description="time to ready (s)")
    def time_to_ready(self, race):
        seconds = race.time_to_ready_s
        return f"{seconds:.1f}" if seconds is not None else "—"


@admin.register(RaceCandidate)
class RaceCandidateAdmin(_ReadOnly):
    list_display = [
        "create_requested_at", "label", "race", "round", "slot", "offer_id", "host_id", "price_per_hour",
        "machine_id", "phase", "outcome", "billed_seconds", "cost",
    ]
    list_filter = ["outcome", "round"]
    search_fields = ["label", "machine_id", "offer_id", "host_id", "race__id", "race__instance__id", "error"]
    list_select_related = ["race"]
    date_hierarchy = "create_requested_at"


@admin.register(StrayMachine)
class StrayMachineAdmin(_ReadOnly):
    list_display = ["first_seen_at", "provider", "machine_id", "label", "reason", "destroyed_at", "error"]
    list_filter = ["provider", "destroyed_at"]
    search_fields = ["machine_id", "label", "reason"]

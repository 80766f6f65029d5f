from django.contrib import admin, messages

from dumont.errors import DomainError

from . import services
from .hibernation import services as hibernation_services
from .hibernation.models import Wake
from .models import Agent, AgentCommand, Instance, InstanceEvent
from .race.models import Race, RaceCandidate, StrayMachine


class InstanceEventInline(admin.TabularInline):
    model = InstanceEvent
    extra = 0
    can_delete = False
    readonly_fields = ["created_at", "actor", "from_status", "to_status", "reason"]
    ordering = ["-created_at"]

    def has_add_permission(self, request, obj=None):
        return False


class AgentCommandInline(admin.TabularInline):
    model = AgentCommand
    extra = 0
    can_delete = False
    fields = ["kind", "status", "attempts", "error", "actor", "created_at", "finished_at"]
    readonly_fields = fields
    ordering = ["-created_at"]
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


IDLE_POLICY_FIELDS = ("auto_hibernate", "idle_gpu_threshold", "idle_window_s", "idle_signals", "keep_awake_until")


class WakeInline(admin.TabularInline):
    model = Wake
    extra = 0
    can_delete = False
    fields = ["requested_at", "source", "actor", "machine_ready_at", "restore_started_at", "running_at",
              "failed_at", "error"]
    readonly_fields = fields
    ordering = ["-requested_at"]

    def has_add_permission(self, request, obj=None):
        return False


def _bulk(service, verb: str):
    def action(modeladmin, request, queryset):
        done, refused = 0, []
        for instance in queryset:
            try:
                service(instance=instance, actor=f"admin:{request.user.get_username()}")
                done += 1
            except DomainError as exc:
                refused.append(f"{instance.label}: {exc.detail}")
        if done:
            modeladmin.message_user(request, f"{verb} requested for {done} instance(s).")
        for line in refused:
            modeladmin.message_user(request, line, level=messages.WARNING)

    action.short_description = f"{verb} selected instances"
    action.__name__ = f"action_{verb.lower()}"
    return action


@admin.register(Instance)
class InstanceAdmin(admin.ModelAdmin):
    list_display = [
        "label", "user", "status", "provider", "machine_gpu_name", "price_per_hour",
        "machine_id", "status_changed_at", "created_at",
    ]
    list_filter = ["status", "provider", "machine_gpu_name", "created_at"]
    search_fields = ["id", "label", "user__username", "machine_id", "offer_id", "ssh_host"]
    date_hierarchy = "created_at"
    list_select_related = ["user"]
    inlines = [InstanceEventInline, WakeInline, AgentCommandInline]
    actions = [
        _bulk(services.instance_pause, "Pause"),
        _bulk(hibernation_services.instance_wake, "Wake"),
        _bulk(services.instance_destroy, "Destroy"),
    ]
    # Only the idle policy is edited here, and through its service (an event records the change).
    readonly_fields = [f.name for f in Instance._meta.fields if f.name not in IDLE_POLICY_FIELDS]

    def has_add_permission(self, request):
        return False  # instances are created through the API or the pages, which rent a machine

    def save_model(self, request, obj, form, change):
        changed = {name: form.cleaned_data[name] for name in form.changed_data if name in IDLE_POLICY_FIELDS}
        if changed:
            services.instance_set_idle_policy(instance=obj, actor=f"admin:{request.user.get_username()}", **changed)


@admin.register(InstanceEvent)
class InstanceEventAdmin(admin.ModelAdmin):
    list_display = ["created_at", "instance", "actor", "from_status", "to_status", "reason"]
    list_filter = ["to_status", "from_status"]
    search_fields = ["instance__label", "instance__id", "actor", "reason"]
    list_select_related = ["instance"]
    date_hierarchy = "created_at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False  # the audit log is append-only


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    """View-only: the agent's row is written by its heartbeats and its installer."""

    list_display = ["instance", "status", "version", "last_heartbeat_at", "samples_received", "installed_at"]
    list_filter = ["status", "version"]
    search_fields = [
        "instance__id", "instance__label", "instance__user__username", "instance__machine_id", "error",
    ]
    list_select_related = ["instance"]
    exclude = ["token_hash"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # deleting the row would revoke the token behind the services' back


@admin.register(AgentCommand)
class AgentCommandAdmin(admin.ModelAdmin):
    list_display = ["created_at", "instance", "kind", "status", "attempts", "actor", "delivered_at", "finished_at"]
    list_filter = ["status", "kind", "created_at"]
    search_fields = ["id", "instance__id", "instance__label", "actor", "error"]
    list_select_related = ["instance"]
    date_hierarchy = "created_at"

    def has_add_permission(self, request):
        return False  # commands are created by the services that need them

    def has_change_permission(self, request, obj=None):
        return False


# --- races ------------------------------------------------------------------------------------


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

"""The instance's admin page: it shows and acts across the layers (events, wakes, agent commands;
pause, wake, destroy), so it lives here at the top. Each app registers its own models' admin."""

from django.contrib import admin, messages

from apps.agents.models import AgentCommand
from apps.hibernation import services as hibernation_services
from apps.hibernation.models import Wake
from apps.instances import services
from apps.instances.models import Instance, InstanceEvent
from dumont.errors import DomainError


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
            hibernation_services.instance_set_idle_policy(
                instance=obj, actor=f"admin:{request.user.get_username()}", **changed)

from django.contrib import admin, messages

from dumont.errors import DomainError

from . import services
from .models import Agent, AgentCommand, Instance, InstanceEvent


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
    inlines = [InstanceEventInline, AgentCommandInline]
    actions = [
        _bulk(services.instance_pause, "Pause"),
        _bulk(services.instance_resume, "Resume"),
        _bulk(services.instance_destroy, "Destroy"),
    ]
    readonly_fields = [f.name for f in Instance._meta.fields]

    def has_add_permission(self, request):
        return False  # instances are created through the API or the pages, which rent a machine


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

from django.contrib import admin

from .models import Agent, AgentCommand


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

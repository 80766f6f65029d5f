from django.contrib import admin, messages

from dumont.errors import DomainError

from . import services
from .models import Snapshot, StorageGrant, Workspace


@admin.register(Snapshot)
class SnapshotAdmin(admin.ModelAdmin):
    list_display = ["engine_id", "instance", "status", "trigger", "verified_at", "files", "bytes", "new_bytes",
                    "duration_s", "created_at"]
    list_filter = ["status", "trigger", "created_at"]
    search_fields = ["id", "engine_id", "instance__id", "instance__label", "instance__user__username"]
    date_hierarchy = "created_at"
    readonly_fields = [field.name for field in Snapshot._meta.fields]
    actions = ["delete_snapshots"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # deleting goes through the service: storage first, then the row

    @admin.action(description="Delete selected snapshots (from storage too)")
    def delete_snapshots(self, request, queryset):
        done = 0
        for snapshot in queryset:
            try:
                services.snapshot_delete(snapshot=snapshot, actor=f"admin:{request.user.get_username()}")
                done += 1
            except DomainError as exc:
                self.message_user(request, f"{snapshot}: {exc.detail}", level=messages.WARNING)
        if done:
            self.message_user(request, f"Deletion requested for {done} snapshot(s).")


@admin.register(Workspace)
class WorkspaceAdmin(admin.ModelAdmin):
    list_display = ["instance", "prefix", "created_at"]
    search_fields = ["instance__id", "instance__label", "prefix"]
    fields = ["instance", "prefix", "created_at"]  # the sealed key is never shown
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(StorageGrant)
class StorageGrantAdmin(admin.ModelAdmin):
    """View-only: grants are issued at install and revoked by the services, at the store first."""

    list_display = ["issued_at", "instance", "machine_id", "access_key", "expires_at", "revoked_at", "revoke_reason"]
    list_filter = ["revoked_at"]
    search_fields = ["access_key", "instance__id", "instance__label", "machine_id"]
    list_select_related = ["instance"]
    exclude = ["sealed_secret"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # deleting the row would leave its key alive at the store

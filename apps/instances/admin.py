"""The audit log in the admin; the Instance page itself is apps.web.admin (it acts across layers)."""

from django.contrib import admin

from .models import InstanceEvent


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

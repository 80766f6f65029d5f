"""The usage ledger for operators: read-only, because it is append-only.

Nobody adds, changes or deletes a row here: services write them, and a correction is a new row.
"""

from django.contrib import admin

from .models import LedgerEntry


@admin.register(LedgerEntry)
class LedgerEntryAdmin(admin.ModelAdmin):
    list_display = [
        "at", "instance", "user", "kind", "status", "billed_as", "gpu_price_per_hour",
        "disk_price_per_hour", "stored_bytes", "seconds", "amount", "note",
    ]
    list_filter = ["kind", "status", "billed_as", ("instance__user", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["instance__id", "instance__label", "instance__user__username", "note"]
    date_hierarchy = "at"
    list_select_related = ["instance", "instance__user"]
    ordering = ["-at", "-id"]

    @admin.display(ordering="instance__user__username")
    def user(self, entry: LedgerEntry):
        return entry.instance.user

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

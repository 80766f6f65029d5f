"""The usage ledger: append-only rows from which every spend and savings figure is computed.

A row is never updated or deleted (services only insert; the admin is read-only). A correction
is a new row. Three kinds:

- `state`: the instance entered `status` at `at`, with the prices in force then and how that
  state is billed (`billed_as`). The interval runs until the instance's next state row; the last
  one until now, or the end of the period asked about.
- `storage`: the instance's snapshots take `stored_bytes` in object storage from `at`, at the
  storage price in force then, until its next storage row — whatever the instance's state.
- `race_loss`: a one-off: a race candidate that lost was billed `seconds` at its
  `gpu_price_per_hour`, which came to `amount`.
"""

from __future__ import annotations

from django.db import models

from apps.instances.models import Instance


class LedgerKind(models.TextChoices):
    STATE = "state", "state entered"
    STORAGE = "storage", "snapshot storage"
    RACE_LOSS = "race_loss", "race loser billed"


class BilledAs(models.TextChoices):
    GPU = "gpu", "GPU price (machine on)"
    DISK = "disk", "stopped-disk price"
    NOTHING = "nothing", "nothing"


class LedgerEntry(models.Model):
    instance = models.ForeignKey(
        Instance, on_delete=models.PROTECT, related_name="ledger_entries",
        help_text="PROTECT: the ledger outlives nothing it accounts for.",
    )
    kind = models.CharField(max_length=20, choices=LedgerKind.choices)
    at = models.DateTimeField(help_text="When this took effect.")
    recorded_at = models.DateTimeField(auto_now_add=True, help_text="When the row was written.")

    # An InstanceStatus value; no `choices` here, so a new instance state needs no billing migration.
    status = models.CharField(max_length=20, blank=True, help_text="The state entered (state rows).")
    billed_as = models.CharField(max_length=10, choices=BilledAs.choices, blank=True,
                                 help_text="Which price this state costs per hour (state rows).")
    gpu_price_per_hour = models.DecimalField(
        max_digits=10, decimal_places=4, null=True, blank=True,
        help_text="USD/h of the rented offer (state rows), or of the losing candidate (race_loss rows).",
    )
    disk_price_per_hour = models.DecimalField(
        max_digits=18, decimal_places=12, null=True, blank=True,
        help_text="USD/h the provider charges for the disk of a stopped machine (state rows).",
    )
    stored_bytes = models.BigIntegerField(null=True, blank=True, help_text="Snapshot bytes in storage (storage rows).")
    storage_price_per_gb_month = models.DecimalField(
        max_digits=10, decimal_places=6, null=True, blank=True,
        help_text="USD per GB (10^9 bytes) per 30-day month (storage rows).",
    )
    seconds = models.DecimalField(max_digits=12, decimal_places=3, null=True, blank=True,
                                  help_text="Seconds billed (race_loss rows).")
    amount = models.DecimalField(max_digits=18, decimal_places=10, null=True, blank=True,
                                 help_text="USD charged once (race_loss rows).")
    note = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["at", "id"]
        verbose_name_plural = "ledger entries"
        indexes = [
            models.Index(fields=["instance", "at"]),
            models.Index(fields=["instance", "kind", "at"]),
        ]

    def __str__(self) -> str:
        what = self.status if self.kind == LedgerKind.STATE else self.get_kind_display()
        return f"{self.at:%Y-%m-%d %H:%M:%S} {what}"

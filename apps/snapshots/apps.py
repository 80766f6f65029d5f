from django.apps import AppConfig


class SnapshotsConfig(AppConfig):
    name = "apps.snapshots"
    label = "snapshots"

    def ready(self) -> None:
        # Imported for what importing does: register the checks, connect receivers and agent hooks.
        from . import checks, receivers  # noqa: F401

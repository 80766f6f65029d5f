from django.apps import AppConfig


class SnapshotsConfig(AppConfig):
    name = "apps.snapshots"
    label = "snapshots"

    def ready(self) -> None:
        from . import receivers  # noqa: F401  (connects them, registers the agent hooks)

from django.apps import AppConfig


class HibernationConfig(AppConfig):
    name = "apps.hibernation"
    label = "hibernation"

    def ready(self) -> None:
        from . import receivers  # noqa: F401  (connects them)

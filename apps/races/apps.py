from django.apps import AppConfig


class RacesConfig(AppConfig):
    name = "apps.races"
    label = "races"

    def ready(self) -> None:
        from . import receivers  # noqa: F401  (connects them, registers the "race" start strategy)

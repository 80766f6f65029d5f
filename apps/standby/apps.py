from django.apps import AppConfig


class StandbyConfig(AppConfig):
    name = "apps.standby"
    label = "standby"

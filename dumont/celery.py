import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dumont.settings")

app = Celery("dumont")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

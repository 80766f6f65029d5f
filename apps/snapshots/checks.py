"""System checks of snapshot storage (registered in SnapshotsConfig.ready())."""

from django.conf import settings
from django.core.checks import Tags, Warning, register


@register(Tags.security, deploy=True)
def machines_get_scoped_storage_keys(app_configs, **kwargs):
    if settings.DUMONT_SNAPSHOT_CREDENTIALS != "shared":
        return []
    return [Warning(
        "DUMONT_SNAPSHOT_CREDENTIALS=shared: every machine gets the bucket's keys and can read, overwrite and "
        "delete every workspace in it",
        hint="Set DUMONT_SNAPSHOT_CREDENTIALS=scoped with a store that serves the IAM API "
             "(DUMONT_SNAPSHOT_IAM_ENDPOINT).",
        id="dumont.W001",
    )]

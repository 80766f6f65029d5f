"""Which Provider serves a name ("vast"), built from settings once per process.

Per process, not per module: a client built before a fork (Celery prefork) would share its
pooled connections with the children.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

from .base import Provider
from .vast import DEFAULT_BASE_URL, VastProvider

ProviderFactory = Callable[[], Provider]


class UnknownProvider(LookupError):
    pass


def _vast_from_settings() -> Provider:
    if not getattr(settings, "VAST_ENABLED", True):
        raise ImproperlyConfigured("vast.ai is switched off (DUMONT_VAST_ENABLED=false)")
    api_key = getattr(settings, "VAST_API_KEY", None)
    if not api_key:
        raise ImproperlyConfigured("VAST_API_KEY (or VAST_API_KEY_FILE) is not set")
    return VastProvider(api_key, base_url=getattr(settings, "VAST_API_URL", DEFAULT_BASE_URL))


_BUILT_IN: dict[str, ProviderFactory] = {"vast": _vast_from_settings}
_registered: dict[str, ProviderFactory] = {}
_built: dict[tuple[int, str], Provider] = {}


def get_provider(name: str = "vast") -> Provider:
    key = (os.getpid(), name)
    if key not in _built:
        factory = _registered.get(name) or _BUILT_IN.get(name)
        if factory is None:
            known = ", ".join(sorted({*_BUILT_IN, *_registered}))
            raise UnknownProvider(f"no provider named {name!r} (known: {known})")
        _built[key] = factory()
    return _built[key]


def register(name: str, factory: ProviderFactory) -> None:
    """Serve `name` from `factory` from now on (another marketplace, or a test's provider)."""
    _registered[name] = factory
    _forget(name)


def unregister(name: str) -> None:
    """Undo register(); a built-in name goes back to its settings-built provider."""
    _registered.pop(name, None)
    _forget(name)


def _forget(name: str) -> None:
    for key in [key for key in _built if key[1] == name]:
        del _built[key]


@receiver(setting_changed)
def _forget_vast_on_settings_change(*, setting: str, **kwargs) -> None:
    # Tests point vast at devcloud with override_settings; a cached client would ignore that.
    if setting.startswith("VAST_"):
        _forget("vast")

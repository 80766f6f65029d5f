import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from apps.providers import registry
from apps.providers.vast import VastProvider

VAST_SETTINGS = {"VAST_ENABLED": True, "VAST_API_KEY": "k1", "VAST_API_URL": "http://127.0.0.1:1/"}


@pytest.fixture(autouse=True)
def _fresh_registry():
    registry.unregister("vast")
    yield
    registry.unregister("vast")
    registry.unregister("other")


@override_settings(**VAST_SETTINGS)
def test_vast_is_built_from_settings_once_per_process():
    provider = registry.get_provider()

    assert isinstance(provider, VastProvider)
    assert provider.http.base_url == "http://127.0.0.1:1"
    assert provider.http.session.headers["Authorization"] == "Bearer k1"
    assert registry.get_provider("vast") is provider


def test_a_forked_process_builds_its_own_client(monkeypatch):
    with override_settings(**VAST_SETTINGS):
        parent = registry.get_provider()
        monkeypatch.setattr(registry.os, "getpid", lambda: -1)

        assert registry.get_provider() is not parent


def test_changed_settings_give_a_new_client():
    with override_settings(**VAST_SETTINGS):
        before = registry.get_provider()
    with override_settings(**{**VAST_SETTINGS, "VAST_API_URL": "http://127.0.0.1:2"}):
        after = registry.get_provider()

    assert after.http.base_url == "http://127.0.0.1:2"
    assert after is not before


@pytest.mark.parametrize(
    ("changes", "message"),
    [({"VAST_API_KEY": None}, "VAST_API_KEY"), ({"VAST_ENABLED": False}, "switched off")],
)
def test_vast_without_a_key_or_switched_off_is_a_configuration_error(changes, message):
    with override_settings(**{**VAST_SETTINGS, **changes}):
        with pytest.raises(ImproperlyConfigured, match=message):
            registry.get_provider("vast")


def test_an_unknown_name_says_which_names_exist():
    with pytest.raises(registry.UnknownProvider, match=r"'nope' \(known: vast\)"):
        registry.get_provider("nope")


@override_settings(**VAST_SETTINGS)
def test_registered_providers_serve_their_name_until_unregistered():
    fake = VastProvider("k2", base_url="http://127.0.0.1:3")
    registry.register("vast", lambda: fake)
    registry.register("other", lambda: fake)

    assert registry.get_provider("vast") is fake
    assert registry.get_provider("other") is fake

    registry.unregister("vast")
    assert registry.get_provider("vast").http.base_url == "http://127.0.0.1:1"

import pytest

from apps.providers.base import MachineState
from apps.providers.vast import machine_state

S = MachineState


@pytest.mark.parametrize(
    ("actual", "intended", "status_msg", "expected"),
    [
        (None, "running", "", S.PROVISIONING),
        ("created", "running", "", S.LOADING),
        ("loading", "running", "Pulling fs layer", S.LOADING),
        ("rebooting", "running", "", S.LOADING),
        ("created", "running", "OCI runtime create failed: ...", S.FAILED),
        ("loading", "running", "failed to pull image: manifest unknown", S.FAILED),
        ("running", "running", "success, running dumont/base:1", S.RUNNING),
        ("Running", None, "", S.RUNNING),
        ("running", "stopped", "", S.STOPPING),
        ("stopped", "stopped", "", S.STOPPED),
        ("exited", "stopped", "", S.STOPPED),
        ("stopped", "running", "scheduling", S.PROVISIONING),
        ("frozen", "frozen", "", S.STOPPED),
        ("exited", "running", "container exited", S.FAILED),
        ("unknown", "running", "", S.FAILED),
        ("offline", "running", "", S.FAILED),
        ("offline", "stopped", "", S.UNKNOWN),
        ("something new", "running", "", S.UNKNOWN),
    ],
)
def test_vast_statuses_map_to_machine_states(actual, intended, status_msg, expected):
    assert machine_state(actual, intended, status_msg) == expected

"""Fixtures for the agent's tests: plain pytest, nothing from Django (the agent has none)."""

from __future__ import annotations

import pytest

from .helpers import FakeControlPlane, FakeTime


@pytest.fixture
def control_plane():
    plane = FakeControlPlane()
    plane.start()
    yield plane
    plane.stop()


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()

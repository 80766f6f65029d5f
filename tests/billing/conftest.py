from decimal import Decimal

import pytest


@pytest.fixture(autouse=True)
def prices(settings):
    """The rates the hand-computed figures use, pinned whatever the defaults become."""
    settings.DUMONT_STORAGE_PRICE_PER_GB_MONTH = Decimal("0.015")
    settings.DUMONT_STOPPED_DISK_PRICE_PER_GB_MONTH = Decimal("0.20")

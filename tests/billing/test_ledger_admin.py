"""Operators see the ledger in the admin, and cannot change it."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from apps.billing.models import LedgerEntry
from tests.billing.scenario import hibernate_and_wake

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator() -> Client:
    admin = get_user_model().objects.create_superuser("operator", password="a long admin secret")
    client = Client()
    client.force_login(admin)
    return client


def test_the_ledger_is_listed_and_filtered_by_user(operator, user, other_user):
    hibernate_and_wake(user)
    hibernate_and_wake(other_user, label="theirs")

    page = operator.get("/admin/billing/ledgerentry/", {"kind": "race_loss", "instance__user__id__exact": user.pk})

    assert page.status_code == 200
    assert "1 ledger entry" in page.content.decode()


def test_the_ledger_cannot_be_added_to_changed_or_deleted(operator, user):
    hibernate_and_wake(user)
    entry = LedgerEntry.objects.first()

    assert operator.get("/admin/billing/ledgerentry/add/").status_code == 403
    assert operator.get(f"/admin/billing/ledgerentry/{entry.pk}/change/").status_code == 200  # view only
    assert operator.post(f"/admin/billing/ledgerentry/{entry.pk}/change/", {"note": "x"}).status_code == 403
    assert operator.post(f"/admin/billing/ledgerentry/{entry.pk}/delete/", {"post": "yes"}).status_code == 403
    entry.refresh_from_db()
    assert entry.note == "" and LedgerEntry.objects.count() == 8

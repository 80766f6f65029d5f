"""Logins are throttled per account and per address, for the API and the page alike, with a
429 that says how long to wait and never tells whether the account exists."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db
PASSWORD = "correct horse battery"


@pytest.fixture
def limits(settings):
    settings.DUMONT_LOGIN_FAILURES_PER_ACCOUNT = 3
    settings.DUMONT_LOGIN_FAILURES_PER_ADDRESS = 5
    settings.DUMONT_LOGIN_FAILURE_WINDOW = 600
    return settings


@pytest.fixture
def account():
    """A user of its own and an address of its own: the counters live in Redis across tests."""
    name = f"u-{uuid.uuid4().hex[:10]}"
    get_user_model().objects.create_user(name, password=PASSWORD)
    return name, f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"


def api_login(address: str, username: str, password: str):
    return APIClient(REMOTE_ADDR=address).post("/api/v1/auth/login", {"username": username, "password": password},
                                               format="json")


def page_login(address: str, username: str, password: str):
    return Client(REMOTE_ADDR=address).post("/login/", {"username": username, "password": password})


def test_the_api_refuses_an_account_after_its_failures_even_with_the_right_password(limits, account):
    name, address = account
    for _ in range(3):
        assert api_login(address, name, "wrong").status_code == 401
    refused = api_login(address, name, PASSWORD)
    assert refused.status_code == 429
    body = refused.json()
    assert body["error"] == "throttled" and "too many failed logins; try again in" in body["detail"]
    assert 0 < int(refused.headers["Retry-After"]) <= 600


def test_an_unknown_account_is_answered_like_a_known_one(limits, account):
    _, address = account
    ghost = f"nobody-{uuid.uuid4().hex[:8]}"
    answers = [api_login(address, ghost, "wrong") for _ in range(4)]
    assert [a.status_code for a in answers] == [401, 401, 401, 429]  # as for a real account: nothing told


def test_the_page_is_counted_with_the_api_and_shows_why_with_429(limits, account):
    name, address = account
    assert page_login(address, name, "wrong").status_code == 200  # the form again, with its error
    assert api_login(address, name, "wrong").status_code == 401
    assert page_login(address, name, "wrong").status_code == 200
    refused = page_login(address, name, PASSWORD)
    assert refused.status_code == 429 and "too many failed logins; try again in" in refused.content.decode()
    assert "_auth_user_id" not in refused.wsgi_request.session  # not logged in


def test_one_address_trying_many_accounts_is_refused(limits, account):
    _, address = account
    for number in range(5):
        assert api_login(address, f"guess-{number}-{uuid.uuid4().hex[:6]}", "wrong").status_code == 401
    assert api_login(address, f"guess-{uuid.uuid4().hex[:6]}", "wrong").status_code == 429


def test_a_successful_login_clears_the_accounts_failures(limits, account):
    name, address = account
    for _ in range(2):
        api_login(address, name, "wrong")
    assert page_login(address, name, PASSWORD).status_code == 302  # logged in
    for _ in range(2):
        assert api_login(address, name, "wrong").status_code == 401  # counting from zero again
    assert api_login(address, name, PASSWORD).status_code == 200

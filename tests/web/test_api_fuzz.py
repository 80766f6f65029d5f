"""The API fuzzed from its own OpenAPI schema (schemathesis), as a logged-in user and anonymously:
no server error, and every response as the schema says (status code, content type, body,
headers). Requests go to the WSGI application in this process, inside each test's transaction."""

from __future__ import annotations

import os

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from rest_framework_simplejwt.tokens import RefreshToken
from schemathesis.specs.openapi.checks import positive_data_acceptance

from dumont.wsgi import application

# Bounded and repeatable in `make test`; DUMONT_FUZZ_EXAMPLES=500 DUMONT_FUZZ_RANDOM=1 explores further.
EXAMPLES = int(os.environ.get("DUMONT_FUZZ_EXAMPLES", "25"))
REPEATABLE = os.environ.get("DUMONT_FUZZ_RANDOM") != "1"
# Rules across fields that OpenAPI cannot state, so schema-valid input may rightly get a 400:
# an instance is created from offer_id or from a GPU spec, not both, and a race needs a GPU spec;
# a period's end comes after its start, within 366 days, and 2026-02-30 is no date.
CROSS_FIELD_RULES = {"POST /api/v1/instances", "GET /api/v1/metrics", "GET /api/v1/metrics/savings/real"}


def _excluded(case) -> list:
    return [positive_data_acceptance] if case.operation.label in CROSS_FIELD_RULES else []

schema = schemathesis.openapi.from_wsgi("/api/v1/schema/?format=json", application)
# No NUL characters in strings: Django refuses them in every text field, by design. No query
# parameters the schema does not name: like most HTTP APIs, Dumont ignores them.
schema.config.generation.update(allow_x00=False, allow_extra_parameters=False)


@pytest.fixture(autouse=True)
def requests_keep_the_test_connection(db):
    """As Django's test client does: a request's start and end must not close the database
    connection the test's transaction lives on."""
    for signal in (request_started, request_finished):
        signal.disconnect(close_old_connections)
    yield
    for signal in (request_started, request_finished):
        signal.connect(close_old_connections)


@pytest.fixture
def bearer(user) -> dict:
    return {"Authorization": f"Bearer {RefreshToken.for_user(user).access_token}"}


@schema.parametrize()
@settings(max_examples=EXAMPLES, derandomize=REPEATABLE, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_api_as_a_logged_in_user(case, bearer):
    case.call_and_validate(headers=bearer, excluded_checks=_excluded(case))


@schema.parametrize()
@settings(max_examples=EXAMPLES, derandomize=REPEATABLE, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_api_anonymously(case):
    """Without a token: 401 wherever the schema asks for one (the `ignored_auth` check), and
    answers as documented where it does not (login, refresh, the schema itself)."""
    case.call_and_validate(excluded_checks=_excluded(case))

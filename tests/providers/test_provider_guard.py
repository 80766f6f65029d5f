import pytest
from django.db import transaction

from apps.providers.base import ProviderCallNotAllowed
from apps.providers.guard import assert_provider_call_allowed, request_scope

from .stub import Reply


def test_provider_calls_are_refused_while_serving_a_request_and_allowed_after():
    with request_scope():
        with pytest.raises(ProviderCallNotAllowed, match="HTTP request"):
            assert_provider_call_allowed()
        with request_scope():
            pass
        with pytest.raises(ProviderCallNotAllowed):
            assert_provider_call_allowed()

    assert_provider_call_allowed()


def test_http_client_sends_nothing_while_serving_a_request(stub, stub_http):
    with request_scope(), pytest.raises(ProviderCallNotAllowed):
        stub_http.request("GET", "/x/", retry=True)

    assert stub.requests == []


@pytest.mark.django_db(transaction=True)
def test_provider_calls_are_refused_inside_a_transaction(stub, stub_vast):
    stub.reply("GET", "/api/v0/instances/7/", Reply(200, {"instances": None}))

    with transaction.atomic():
        with pytest.raises(ProviderCallNotAllowed, match="transaction on database 'default'"):
            stub_vast.get("7")
    assert stub.requests == []

    assert stub_vast.get("7") is None
    assert len(stub.requests) == 1

"""VastProvider against scripted replies: request shapes, and reply shapes devcloud never sends."""

from decimal import Decimal

import pytest

from apps.providers.base import (
    CreateSpec,
    MachineState,
    OfferGone,
    OfferQuery,
    ProviderAuthError,
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
)
from apps.providers.vast import VastProvider

from .stub import Reply

SPEC = CreateSpec(
    image="dumont/base:1", disk_gb=20, label="dumont-42", onstart="echo hi", env={"A": "1"}
)
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB3Xl1 dumont@control"
ASK = "/api/v0/asks/4100/"
INSTANCE = "/api/v0/instances/9001/"
INSTANCES = "/api/v1/instances/"


def _instance(**fields) -> dict:
    return {
        "id": 9001, "label": "dumont-42", "actual_status": "running", "intended_status": "running",
        **fields,
    }


def _failure(status: int, msg: str, error: str | None = None) -> Reply:
    return Reply(status, {"success": False, "msg": msg, **({"error": error} if error else {})})


# --- search ---------------------------------------------------------------------------------


def test_search_sends_filters_with_defaults_sizes_in_mb_and_cheapest_first_order(stub, stub_vast):
    stub.reply("POST", "/api/v0/bundles/", Reply(200, {"offers": []}))

    stub_vast.search_offers(
        OfferQuery(
            gpu_name="RTX_4090", min_gpu_ram_gb=24, max_price_per_hour=Decimal("0.55"),
            min_disk_gb=50, limit=7,
        )
    )

    (sent,) = stub.requests
    assert sent.json == {
        "verified": {"eq": True},
        "rentable": {"eq": True},
        "rented": {"eq": False},
        "reliability2": {"gte": 0.9},
        "direct_port_count": {"gte": 1},
        "inet_down": {"gt": 100.0},
        "num_gpus": {"eq": 1},
        "gpu_name": {"eq": "RTX 4090"},
        "gpu_ram": {"gte": 24000},
        "dph_total": {"lte": 0.55},
        "disk_space": {"gte": 50},
        "order": [["dph_total", "asc"]],
        "type": "on-demand",
        "limit": 7,
    }


def test_search_parses_loose_numbers_and_sorts_cheapest_first(stub, stub_vast):
    stub.reply("POST", "/api/v0/bundles/", Reply(200, {"offers": [
        {"id": 2, "machine_id": 20, "gpu_name": "RTX 4090", "num_gpus": "1", "gpu_ram": "24564",
         "dph_total": "0.41", "reliability2": "0.99", "inet_down": 900, "inet_up": "300.5",
         "geolocation": " Texas, US ", "disk_space": 200, "verified": "true"},
        {"id": 1, "machine_id": 10, "gpu_name": "RTX 3090", "num_gpus": 1, "gpu_ram": 24576,
         "dph_total": 0.2, "reliability2": 0.95, "inet_down": 500, "inet_up": 100,
         "geolocation": "Ontario, CA", "disk_space": 100.0, "verified": True},
        {"id": 3, "gpu_name": "no price, cannot be rented"},
    ]}))

    offers = stub_vast.search_offers(OfferQuery())

    assert [offer.id for offer in offers] == ["1", "2"]
    assert offers[0].price_per_hour == Decimal("0.2")
    second = offers[1]
    assert second.price_per_hour == Decimal("0.41")
    assert (second.num_gpus, second.gpu_ram_gb) == (1, 24.564)
    assert (second.location, second.inet_up_mbps, second.verified) == ("Texas, US", 300.5, True)


def test_search_reply_without_an_offer_list_is_an_error_not_no_offers(stub, stub_vast):
    stub.reply("POST", "/api/v0/bundles/", Reply(200, {"success": True}))

    with pytest.raises(ProviderError, match="'offers'"):
        stub_vast.search_offers(OfferQuery())


def test_bearer_auth_is_sent_by_a_provider_built_from_a_key(stub):
    stub.reply("POST", "/api/v0/bundles/", Reply(200, {"offers": []}))

    VastProvider("s3cret", base_url=stub.url + "/").search_offers(OfferQuery())

    assert stub.requests[0].headers["Authorization"] == "Bearer s3cret"


# --- create ---------------------------------------------------------------------------------


def test_create_rents_the_ask_with_the_spec_and_returns_the_instance_id(stub, stub_vast):
    stub.reply("PUT", ASK, Reply(200, {"success": True, "new_contract": 9001}))

    assert stub_vast.create(offer_id="4100", spec=SPEC) == "9001"
    assert stub.requests[0].json == {
        "image": "dumont/base:1", "disk": 20, "label": "dumont-42", "onstart": "echo hi",
        "env": {"A": "1"}, "runtype": "ssh_direc ssh_proxy", "target_state": "running",
        "cancel_unavail": True,
    }


@pytest.mark.parametrize("status", [404, 410, 400, 200])
def test_create_of_a_taken_offer_raises_offer_gone(stub, stub_vast, status):
    stub.reply("PUT", ASK, _failure(status, "Instance type no longer available.", "no_such_ask"))

    with pytest.raises(OfferGone, match="no longer available"):
        stub_vast.create(offer_id="4100", spec=SPEC)


@pytest.mark.parametrize(
    ("reply", "error_class"),
    [
        (_failure(400, "disk must be >= 8", "invalid_args"), ProviderRejected),
        (_failure(400, "bid too low", "invalid_price"), ProviderRejected),
        (_failure(401, "Invalid user key", "auth_error"), ProviderAuthError),
        (_failure(200, "Invalid user key", "auth_error"), ProviderAuthError),
        (_failure(200, "something odd"), ProviderError),
        (Reply(200, {"success": True}), ProviderError),
    ],
)
def test_create_refusals_raise_what_they_mean(stub, stub_vast, reply, error_class):
    stub.reply("PUT", ASK, reply)

    with pytest.raises(error_class) as caught:
        stub_vast.create(offer_id="4100", spec=SPEC)
    assert not isinstance(caught.value, OfferGone)


def test_create_that_fails_in_transit_is_not_retried(stub, stub_vast, sleeps):
    stub.reply("PUT", ASK, Reply(502, "Bad Gateway"))

    with pytest.raises(ProviderUnavailable):
        stub_vast.create(offer_id="4100", spec=SPEC)
    assert len(stub.requests) == 1
    assert sleeps == []


# --- get and list ---------------------------------------------------------------------------


def test_get_of_an_unknown_instance_is_none(stub, stub_vast):
    stub.reply("GET", INSTANCE, Reply(200, {"instances": None}))

    assert stub_vast.get("9001") is None


def test_get_reply_without_instances_is_an_error_not_gone(stub, stub_vast):
    stub.reply("GET", INSTANCE, Reply(200, {"success": True}))

    with pytest.raises(ProviderError):
        stub_vast.get("9001")


def test_get_reads_direct_ssh_from_string_ports_and_padded_ip(stub, stub_vast):
    stub.reply("GET", INSTANCE, Reply(200, {"instances": _instance(
        public_ipaddr=" 203.0.113.7\n",
        ports={"22/tcp": [{"HostIp": "0.0.0.0", "HostPort": "41022"}]},
        ssh_host="ssh5.vast.ai", ssh_port="30010", dph_total="0.4011", num_gpus="2",
        machine_id=5150, status_msg="success, running dumont/base:1",
    )}))

    machine = stub_vast.get("9001")

    assert (machine.id, machine.label, machine.state) == ("9001", "dumont-42", MachineState.RUNNING)
    assert (machine.ssh_host, machine.ssh_port) == ("203.0.113.7", 41022)
    assert machine.price_per_hour == Decimal("0.4011")
    assert (machine.num_gpus, machine.machine_host_id) == (2, "5150")


@pytest.mark.parametrize(
    "ports", [None, {}, {"22/tcp": []}, {"22/tcp": None}, {"8080/tcp": [{"HostPort": "1"}]}]
)
def test_get_falls_back_to_the_ssh_proxy_without_a_port_22_mapping(stub, stub_vast, ports):
    stub.reply("GET", INSTANCE, Reply(200, {"instances": _instance(
        actual_status="loading", public_ipaddr="203.0.113.7", ports=ports,
        ssh_host="ssh5.vast.ai", ssh_port="30010",
    )}))

    machine = stub_vast.get("9001")

    assert (machine.ssh_host, machine.ssh_port) == ("ssh5.vast.ai", 30010)
    assert machine.state == MachineState.LOADING


def test_get_of_a_machine_without_any_ssh_address_has_none(stub, stub_vast):
    stub.reply("GET", INSTANCE, Reply(200, {"instances": _instance(actual_status=None)}))

    machine = stub_vast.get("9001")

    assert (machine.ssh_host, machine.ssh_port) == (None, None)
    assert machine.state == MachineState.PROVISIONING


def test_list_follows_page_tokens_until_the_last_page(stub, stub_vast):
    stub.reply(
        "GET", INSTANCES,
        Reply(200, {"instances": [_instance(id=1), _instance(id=2)], "next_token": "t1"}),
        Reply(200, {"instances": [_instance(id=3)], "next_token": None}),
    )

    assert [machine.id for machine in stub_vast.list()] == ["1", "2", "3"]
    first, second = stub.requests
    assert first.query == {"limit": ["25"]}
    assert second.query == {"limit": ["25"], "after_token": ["t1"]}


@pytest.mark.parametrize(
    "reply",
    [
        Reply(410, {"success": False, "error": "gone", "msg": "use /api/v1/instances/"}),
        Reply(200, {"success": False, "msg": "retired"}),
        Reply(200, {"next_token": None}),
        Reply(200, {"instances": [{"label": "no id"}], "next_token": None}),
    ],
)
def test_list_failures_are_errors_never_no_instances(stub, stub_vast, reply):
    stub.reply("GET", INSTANCES, reply)

    with pytest.raises(ProviderError):
        list(stub_vast.list())


def test_list_stops_when_a_page_token_repeats(stub, stub_vast):
    stub.reply("GET", INSTANCES, Reply(200, {"instances": [_instance()], "next_token": "same"}))

    with pytest.raises(ProviderError, match="same page token"):
        list(stub_vast.list())
    assert len(stub.requests) == 2


def test_find_by_label_stops_paging_once_found(stub, stub_vast):
    stub.reply(
        "GET", INSTANCES,
        Reply(200, {"instances": [_instance(id=1, label="x"), _instance(id=2)], "next_token": "t"}),
    )

    assert stub_vast.find_by_label("dumont-42").id == "2"
    assert len(stub.requests) == 1


# --- start, stop, destroy, ssh keys ---------------------------------------------------------


@pytest.mark.parametrize(("action", "state"), [("start", "running"), ("stop", "stopped")])
def test_start_and_stop_put_the_wanted_state(stub, stub_vast, action, state):
    stub.reply("PUT", INSTANCE, Reply(200, {"success": True}))

    getattr(stub_vast, action)("9001")

    assert stub.requests[0].json == {"state": state}


def test_a_state_change_refused_in_a_200_raises_with_its_message(stub, stub_vast):
    stub.reply("PUT", INSTANCE, _failure(200, "Host is offline"))

    with pytest.raises(ProviderError, match="Host is offline"):
        stub_vast.start("9001")


def test_state_change_rides_out_a_rate_limit(stub, stub_vast, sleeps):
    stub.reply("PUT", INSTANCE, Reply(429, "Too Many Requests"), Reply(200, {"success": True}))

    stub_vast.stop("9001")

    assert len(stub.requests) == 2
    assert len(sleeps) == 1


def test_destroy_of_a_machine_already_gone_succeeds(stub, stub_vast):
    stub.reply("DELETE", INSTANCE, _failure(404, "no such instance", "not_found"))

    stub_vast.destroy("9001")

    assert len(stub.requests) == 1


def test_destroy_does_not_read_any_404_as_gone(stub, stub_vast):
    stub.reply("DELETE", INSTANCE, Reply(404, "<html>Not Found</html>"))

    with pytest.raises(ProviderError):
        stub_vast.destroy("9001")


@pytest.mark.parametrize(
    "present",
    [
        [{"id": 1, "public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB3Xl1 laptop"}],
        [{"id": 1, "key": "ssh-rsa AAAAB3Nza x"}, {"id": 2, "key": KEY.rsplit(" ", 1)[0]}],
    ],
)
def test_ensure_ssh_key_leaves_a_present_key_alone_whatever_its_comment(stub, stub_vast, present):
    stub.reply("GET", "/api/v0/ssh/", Reply(200, present))

    stub_vast.ensure_ssh_key(KEY)

    assert stub.received("POST", "/api/v0/ssh/") == []


def test_ensure_ssh_key_adds_a_missing_key(stub, stub_vast):
    stub.reply("GET", "/api/v0/ssh/", Reply(200, [{"id": 1, "public_key": "ssh-rsa AAAAB3Nza x"}]))
    stub.reply("POST", "/api/v0/ssh/", Reply(200, {"success": True, "key": {"id": 2}}))

    stub_vast.ensure_ssh_key(KEY + "\n")

    (added,) = stub.received("POST", "/api/v0/ssh/")
    assert added.json == {"ssh_key": KEY}


def test_ensure_ssh_key_refuses_what_is_not_a_public_key(stub_vast):
    with pytest.raises(ValueError):
        stub_vast.ensure_ssh_key("not-a-key")

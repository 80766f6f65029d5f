"""VastProvider against devcloud: the same vast.ai API, with real machines behind it."""

from __future__ import annotations

import socket
import time
import uuid

import pytest

from apps.providers.base import (
    CreateSpec,
    Machine,
    MachineState,
    OfferGone,
    OfferQuery,
    ProviderAuthError,
    ProviderUnavailable,
)
from apps.providers.http import HttpClient
from apps.providers.vast import VastProvider
from devcloud.testing import new_ssh_key, run_devcloud

S = MachineState
WAIT_S = 20.0


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    """A devcloud of this module's own: list() must see only the machines these tests made."""
    with run_devcloud(tmp_path_factory.mktemp("devcloud")) as handle:
        yield handle


@pytest.fixture
def vast(cloud, sleeps):
    def recorded_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        time.sleep(seconds)

    auth = {"Authorization": f"Bearer {cloud.api_key}"}
    provider = VastProvider(
        cloud.api_key, http=HttpClient(cloud.url, headers=auth, sleep=recorded_sleep)
    )
    yield provider
    cloud.reset_faults()
    for machine in list(provider.list()):
        provider.destroy(machine.id)


def _spec() -> CreateSpec:
    return CreateSpec(image="dumont/base:1", disk_gb=10, label=f"test-{uuid.uuid4().hex[:8]}")


def _cheapest_offer(vast: VastProvider) -> str:
    (offer,) = vast.search_offers(OfferQuery(gpu_name="RTX 4090", limit=1))
    return offer.id


def _wait_for(vast: VastProvider, machine_id: str, state: MachineState) -> Machine:
    deadline = time.monotonic() + WAIT_S
    while True:
        machine = vast.get(machine_id)
        if machine is not None and machine.state == state:
            return machine
        if time.monotonic() > deadline:
            pytest.fail(f"machine {machine_id} not {state} after {WAIT_S}s: {machine}")
        time.sleep(0.1)


def _ssh_banner(host: str, port: int) -> bytes:
    with socket.create_connection((host, port), timeout=5) as conn:
        return conn.recv(64)


def test_search_finds_usable_4090s_cheapest_first(vast):
    offers = vast.search_offers(OfferQuery(gpu_name="RTX 4090", min_gpu_ram_gb=24))

    assert offers
    assert {offer.gpu_name for offer in offers} == {"RTX 4090"}
    prices = [offer.price_per_hour for offer in offers]
    assert prices == sorted(prices)
    assert all(offer.verified and offer.reliability >= 0.9 for offer in offers)
    assert all(offer.inet_down_mbps > 100 and offer.gpu_ram_gb >= 24 for offer in offers)


def test_a_created_machine_boots_to_running_with_a_live_ssh_address(vast):
    spec = _spec()

    machine_id = vast.create(offer_id=_cheapest_offer(vast), spec=spec)

    assert vast.find_by_label(spec.label).id == machine_id
    machine = _wait_for(vast, machine_id, S.RUNNING)
    assert machine.label == spec.label
    assert _ssh_banner(machine.ssh_host, machine.ssh_port).startswith(b"SSH-2.0")


def test_a_stopped_machine_starts_again(vast):
    machine_id = vast.create(offer_id=_cheapest_offer(vast), spec=_spec())
    _wait_for(vast, machine_id, S.RUNNING)

    vast.stop(machine_id)
    _wait_for(vast, machine_id, S.STOPPED)
    vast.start(machine_id)

    machine = _wait_for(vast, machine_id, S.RUNNING)
    assert _ssh_banner(machine.ssh_host, machine.ssh_port).startswith(b"SSH-2.0")


def test_a_destroyed_machine_is_gone_and_destroying_it_again_is_fine(vast):
    machine_id = vast.create(offer_id=_cheapest_offer(vast), spec=_spec())

    vast.destroy(machine_id)
    vast.destroy(machine_id)

    assert vast.get(machine_id) is None
    assert machine_id not in {machine.id for machine in vast.list()}


def test_renting_a_vanished_offer_raises_offer_gone_and_rents_nothing(vast, cloud):
    offer_id = _cheapest_offer(vast)
    cloud.faults(vanish_offers=1)

    with pytest.raises(OfferGone):
        vast.create(offer_id=offer_id, spec=_spec())

    assert list(vast.list()) == []


def test_a_rate_limit_burst_is_absorbed_by_backoff(vast, cloud, sleeps):
    cloud.faults(rate_limit=3)

    assert vast.search_offers(OfferQuery(limit=3))
    assert len(sleeps) == 3


def test_a_lost_create_reply_is_unavailable_and_the_machine_is_found_by_label(vast, cloud):
    cloud.faults(lose_create_reply=2)  # a dropped connection, then a 502 with an HTML body
    specs = [_spec(), _spec()]

    for spec in specs:
        with pytest.raises(ProviderUnavailable):
            vast.create(offer_id=_cheapest_offer(vast), spec=spec)

    found = [vast.find_by_label(spec.label) for spec in specs]
    assert None not in found
    assert sorted(machine.id for machine in vast.list()) == sorted(machine.id for machine in found)


def test_a_container_that_cannot_start_is_failed(vast, cloud):
    cloud.faults(oci_error=1)

    machine_id = vast.create(offer_id=_cheapest_offer(vast), spec=_spec())

    machine = _wait_for(vast, machine_id, S.FAILED)
    assert "OCI runtime create failed" in machine.status_msg


def test_a_container_that_exits_after_running_is_failed(vast, cloud):
    cloud.faults(exit_after_running=1)

    machine_id = vast.create(offer_id=_cheapest_offer(vast), spec=_spec())

    _wait_for(vast, machine_id, S.FAILED)


def test_list_pages_through_more_machines_than_one_page_holds(vast, cloud):
    # Each offer rents once, and the default filters leave fewer than 27: take any offer.
    _, reply = cloud.api("POST", "/api/v0/bundles/", {"limit": 27})
    offer_ids = [str(offer["id"]) for offer in reply["offers"]]
    assert len(offer_ids) == 27

    created = {vast.create(offer_id=offer_id, spec=_spec()) for offer_id in offer_ids}

    assert {machine.id for machine in vast.list()} == created


def test_ensure_ssh_key_adds_a_key_once(vast):
    _, public_key = new_ssh_key(comment="dumont@control")
    key_type, key_body, _ = public_key.split()

    vast.ensure_ssh_key(public_key)
    vast.ensure_ssh_key(f"{key_type} {key_body} another-comment")

    listed = vast.http.request("GET", "/api/v0/ssh/", retry=True)
    assert [key["public_key"] for key in listed] == [public_key]


def test_a_wrong_api_key_is_an_auth_error(cloud):
    with pytest.raises(ProviderAuthError):
        VastProvider("wrong-key", base_url=cloud.url).search_offers(OfferQuery())

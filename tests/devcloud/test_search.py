"""Bundle search: vast's {field: {op: value}} filters, order and limit over the seeded catalog."""

import pytest

from devcloud import catalog

GPU_NAMES = {"RTX 4090", "RTX 3090", "RTX A6000", "A100 SXM4", "A100 PCIE", "H100 SXM", "L40S", "RTX 4080"}


def test_catalog_is_deterministic_per_seed_and_realistic():
    offers = catalog.generate_offers(seed=7)
    assert offers == catalog.generate_offers(seed=7)
    assert offers != catalog.generate_offers(seed=8)
    assert len(offers) == catalog.OFFER_COUNT
    assert {offer["gpu_name"] for offer in offers} == GPU_NAMES
    assert len({offer["id"] for offer in offers}) == len(offers)
    assert len({offer["machine_id"] for offer in offers}) == len(offers)
    for offer in offers:
        assert offer["num_gpus"] in (1, 2, 4, 8)
        assert 0.15 <= offer["dph_total"] / offer["num_gpus"] <= 3.01
        assert 0.85 <= offer["reliability2"] <= 0.999
        assert offer["rented"] is False
        assert ", " in offer["geolocation"]
    assert next(o for o in offers if o["gpu_name"] == "RTX 4090")["gpu_ram"] == 24564
    assert next(o for o in offers if o["gpu_name"] == "H100 SXM")["gpu_ram"] == 81920


def test_every_seed_has_good_single_gpu_offers_of_each_model():
    for seed in range(20):
        good = catalog.search(catalog.generate_offers(seed), _default_filters(num_gpus={"eq": 1}))
        assert {offer["gpu_name"] for offer in good} == GPU_NAMES
        assert sum(offer["gpu_name"] == "RTX 4090" for offer in good) >= 5


def _default_filters(**extra):
    return {
        "verified": {"eq": True},
        "rentable": {"eq": True},
        "rented": {"eq": False},
        "reliability2": {"gte": 0.9},
        "direct_port_count": {"gte": 1},
        "inet_down": {"gt": 100},
        **extra,
    }


def test_filters_by_every_operator(vast):
    offers = vast.search(
        gpu_name={"in": ["RTX 4090", "RTX 3090"]},
        num_gpus={"neq": 8},
        dph_total={"lte": 2.0, "gt": 0.1},
        geolocation={"notin": ["Tokyo, JP"]},
        verified={"eq": True},
        reliability2={"gte": 0.9, "lt": 1.0},
    )
    assert offers
    for offer in offers:
        assert offer["gpu_name"] in ("RTX 4090", "RTX 3090")
        assert offer["num_gpus"] != 8
        assert 0.1 < offer["dph_total"] <= 2.0
        assert offer["geolocation"] != "Tokyo, JP"
        assert offer["verified"] is True
        assert offer["reliability2"] >= 0.9


def test_gpu_ram_filter_is_in_megabytes(vast):
    offers = vast.search(gpu_ram={"gte": 80_000})
    assert {offer["gpu_name"] for offer in offers} == {"A100 SXM4", "H100 SXM"}


def test_order_and_limit(vast):
    cheapest = vast.search(order=[["dph_total", "asc"]], limit=5)
    assert len(cheapest) == 5
    prices = [offer["dph_total"] for offer in cheapest]
    assert prices == sorted(prices)
    everything = vast.search(order=[["dph_total", "asc"]])
    assert prices == [offer["dph_total"] for offer in everything[:5]]
    priciest = vast.search(order=[["dph_total", "desc"]], limit=1)
    assert priciest[0]["dph_total"] == max(offer["dph_total"] for offer in everything)


def test_default_order_is_score_descending(vast):
    scores = [offer["score"] for offer in vast.search()]
    assert scores == sorted(scores, reverse=True)


def test_unknown_fields_and_type_are_ignored(vast):
    everything = vast.search()
    assert vast.search(no_such_field={"eq": 1}, type="on-demand") == everything


def test_unknown_operator_is_invalid_args(vast):
    reply = vast.call("POST", "/api/v0/bundles/", json={"num_gpus": {"like": 1}})
    assert reply.status_code == 400
    assert reply.json()["error"] == "invalid_args"


def test_rented_offer_drops_out_and_returns_after_destroy(vast):
    offer = vast.free_offer(gpu_name={"eq": "H100 SXM"})
    instance_id = vast.create(offer["id"])
    free_ids = {o["id"] for o in vast.search(rented={"eq": False})}
    assert offer["id"] not in free_ids
    rented = next(o for o in vast.search() if o["id"] == offer["id"])
    assert rented["rented"] is True
    assert vast.destroy(instance_id).json() == {"success": True}
    assert offer["id"] in {o["id"] for o in vast.search(rented={"eq": False})}


@pytest.mark.parametrize("query", [{"order": "dph_total"}, {"limit": -1}])
def test_malformed_query_is_invalid_args(vast, query):
    assert vast.call("POST", "/api/v0/bundles/", json=query).status_code == 400

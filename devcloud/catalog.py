"""The offer catalog: a seeded, realistic set of vast.ai asks, and the bundle search over it.

The first offers are hand-shaped so that every seed has at least one good single-GPU offer of
each model (verified, rentable, reliable, fast, with direct ports), plus extra RTX 4090s so a
race of several machines always finds candidates. The rest are random, including some that the
usual default filters (verified, reliability2 >= 0.9, inet_down > 100, direct ports) reject.
"""

from __future__ import annotations

import operator
import random
from dataclasses import dataclass

OFFER_COUNT = 40


@dataclass(frozen=True)
class GpuModel:
    name: str
    gpu_ram_mb: int
    price_per_gpu: tuple[float, float]  # $/h range
    tflops: float  # fp16-ish, for total_flops/dlperf/score
    cuda_max_good: float


GPU_MODELS = (
    GpuModel("RTX 4090", 24564, (0.28, 0.60), 82.6, 12.4),
    GpuModel("RTX 3090", 24576, (0.15, 0.30), 35.6, 12.2),
    GpuModel("RTX 4080", 16376, (0.18, 0.35), 48.7, 12.4),
    GpuModel("RTX A6000", 49140, (0.40, 0.80), 38.7, 12.2),
    GpuModel("L40S", 46068, (0.70, 1.10), 91.6, 12.4),
    GpuModel("A100 PCIE", 40960, (0.80, 1.40), 77.9, 12.2),
    GpuModel("A100 SXM4", 81920, (1.00, 1.80), 77.9, 12.4),
    GpuModel("H100 SXM", 81920, (1.80, 3.00), 267.6, 12.6),
)

# Random offers draw from this, so cheap consumer cards are common and H100s rarer, as on vast.
_MODEL_WEIGHTS = (8, 6, 4, 3, 2, 2, 2, 2)

LOCATIONS = (
    "California, US",
    "Texas, US",
    "Oregon, US",
    "Virginia, US",
    "New York, US",
    "Quebec, CA",
    "Ontario, CA",
    "Bavaria, DE",
    "North Holland, NL",
    "Stockholm, SE",
    "Warsaw, PL",
    "Tokyo, JP",
    "New South Wales, AU",
    "Sao Paulo, BR",
)

CPU_NAMES = ("AMD EPYC 7543", "AMD EPYC 7B13", "Xeon Gold 6338", "Ryzen 9 7950X", "Xeon E5-2698 v4")


def generate_offers(seed: int, count: int = OFFER_COUNT) -> list[dict]:
    """`count` offers (at least the 12 hand-shaped ones); the same seed and count, the same offers."""
    count = max(count, len(GPU_MODELS) + 4)
    rng = random.Random(f"catalog-{seed}")
    ask_ids = _increasing_ids(rng, count, start=4_100_000)
    machine_ids = rng.sample(range(10_000, 10_000 + max(50_000, count * 10)), count)
    shapes = [(model, 1, True) for model in GPU_MODELS] + [(GPU_MODELS[0], 1, True)] * 4
    while len(shapes) < count:
        model = rng.choices(GPU_MODELS, weights=_MODEL_WEIGHTS)[0]
        shapes.append((model, rng.choice((1, 1, 1, 2, 2, 4, 8)), False))
    return [
        _offer(rng, ask_id, machine_id, model, num_gpus, good)
        for ask_id, machine_id, (model, num_gpus, good) in zip(ask_ids, machine_ids, shapes, strict=True)
    ]


def _offer(rng: random.Random, ask_id: int, machine_id: int, model: GpuModel, num_gpus: int, good: bool) -> dict:
    per_gpu = round(rng.uniform(*model.price_per_gpu), 3)
    disk_space = float(rng.choice((100, 200, 250, 500, 1000, 2000)))
    storage_cost = round(rng.uniform(0.10, 0.30), 3)  # $/GB-month
    # vast quotes dph_total with a small default disk allocation (10 GB) included.
    disk_per_hour = storage_cost * 10 / (30 * 24)
    reliability = round(rng.uniform(0.95, 0.999) if good else 0.999 - rng.random() ** 2 * 0.149, 4)
    inet_down = round(rng.uniform(300, 3000) if good else rng.uniform(40, 2500), 1)
    verified = good or rng.random() < 0.85
    dph_total = round(per_gpu * num_gpus + disk_per_hour, 4)
    total_flops = round(model.tflops * num_gpus, 1)
    dlperf = round(total_flops * rng.uniform(0.2, 0.35), 2)
    cpu_cores = num_gpus * rng.choice((8, 12, 16, 24, 32))
    return {
        "id": ask_id,
        "ask_contract_id": ask_id,
        "bundle_id": ask_id + 7,
        "machine_id": machine_id,
        "host_id": 100_000 + machine_id % 9_973,
        "gpu_name": model.name,
        "gpu_arch": "nvidia",
        "num_gpus": num_gpus,
        "gpu_ram": model.gpu_ram_mb,
        "gpu_total_ram": model.gpu_ram_mb * num_gpus,
        "cpu_name": rng.choice(CPU_NAMES),
        "cpu_cores": cpu_cores,
        "cpu_cores_effective": float(cpu_cores),
        "cpu_ram": num_gpus * rng.choice((32, 64, 128)) * 1024,
        "disk_space": disk_space,
        "disk_bw": round(rng.uniform(800, 6000), 1),
        "storage_cost": storage_cost,
        "dph_base": round(per_gpu * num_gpus, 4),
        "dph_total": dph_total,
        "min_bid": round(per_gpu * num_gpus * 0.45, 4),
        "reliability2": reliability,
        "reliability": reliability,
        "inet_down": inet_down,
        "inet_up": round(inet_down * rng.uniform(0.3, 1.0), 1),
        "inet_down_cost": 0.003,
        "inet_up_cost": 0.003,
        "geolocation": rng.choice(LOCATIONS),
        "direct_port_count": rng.choice((64, 100, 200, 1000)) if good else rng.choice((0, 20, 64, 200, 500)),
        "verified": verified,
        "verification": "verified" if verified else "unverified",
        "rentable": good or rng.random() < 0.95,
        "rented": False,
        "external": False,
        "static_ip": rng.random() < 0.3,
        "cuda_max_good": model.cuda_max_good,
        "driver_version": "550.120",
        "total_flops": total_flops,
        "dlperf": dlperf,
        "dlperf_per_dphtotal": round(dlperf / dph_total, 2),
        "score": round(dlperf / dph_total * reliability, 3),
    }


def _increasing_ids(rng: random.Random, count: int, start: int) -> list[int]:
    ids, current = [], start
    for _ in range(count):
        current += rng.randint(50, 5_000)
        ids.append(current)
    return ids


# --- search ----------------------------------------------------------------------------------


def _contains(value, target) -> bool:
    return isinstance(target, (list, tuple, set)) and value in target


_OPS = {
    "eq": operator.eq,
    "neq": operator.ne,
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
    "in": _contains,
    "notin": lambda value, target: isinstance(target, (list, tuple, set)) and value not in target,
}

# Keys of a bundle query that are not field filters.
_QUERY_KEYS = {"order", "type", "limit", "allocated_storage", "disable_bundling", "extra_ids"}


class BadQuery(ValueError):
    """The query is malformed (not a filter shape we can read)."""


def search(offers: list[dict], query: dict) -> list[dict]:
    """vast's bundle search: `{field: {op: value}}` filters (unknown fields ignored), an
    `order` of `[field, "asc"|"desc"]` pairs, and a `limit`."""
    if "q" in query and isinstance(query["q"], dict):  # some clients wrap the query
        query = query["q"]
    filters = [(name, cond) for name, cond in query.items() if name not in _QUERY_KEYS]
    matching = [offer for offer in offers if all(_matches(offer, name, cond) for name, cond in filters)]
    return _limit(_sort(matching, query.get("order")), query.get("limit"))


def _matches(offer: dict, name: str, condition: object) -> bool:
    if name not in offer:
        return True  # vast ignores fields it does not know; so do we
    if not isinstance(condition, dict):
        condition = {"eq": condition}
    for op, target in condition.items():
        compare = _OPS.get(op)
        if compare is None:
            raise BadQuery(f"unknown operator {op!r} for field {name!r}")
        try:
            if not compare(offer[name], target):
                return False
        except TypeError:  # e.g. comparing a number with a string: no match, not a crash
            return False
    return True


def _sort(offers: list[dict], order: object) -> list[dict]:
    if order is None:
        order = [["score", "desc"]]
    if not isinstance(order, list):
        raise BadQuery("order must be a list of [field, 'asc'|'desc'] pairs")
    # Stable sorts applied from the least to the most significant key.
    for item in reversed(order):
        if not isinstance(item, (list, tuple)) or not item or not isinstance(item[0], str):
            raise BadQuery(f"bad order item {item!r}")
        field = item[0]
        descending = len(item) > 1 and str(item[1]).lower() == "desc"
        if any(field in offer for offer in offers):
            offers = sorted(offers, key=lambda offer: _sort_key(offer.get(field)), reverse=descending)
    return offers


def _sort_key(value: object) -> tuple:
    # Missing values sort last in ascending order; numbers and strings never compare to each other.
    if value is None:
        return (2, 0)
    if isinstance(value, (int, float)):
        return (0, value)
    return (1, str(value))


def _limit(offers: list[dict], limit: object) -> list[dict]:
    if limit is None:
        return offers
    if isinstance(limit, bool) or not isinstance(limit, (int, float)) or limit < 0:
        raise BadQuery(f"limit must be a non-negative number, got {limit!r}")
    return offers[: int(limit)]

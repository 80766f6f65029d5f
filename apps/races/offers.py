"""Which offers a race round rents: the cheapest matching ones, never two on the same host."""

from __future__ import annotations

from collections.abc import Iterable

from django.conf import settings

from apps.instances.models import Instance
from apps.providers.base import Offer, OfferQuery


def race_offer_query(instance: Instance) -> OfferQuery:
    """The user's GPU spec and price cap; the reliability, bandwidth and port filters are the
    query's defaults (providers.md)."""
    return OfferQuery(
        gpu_name=instance.gpu_name or instance.machine_gpu_name or None,
        num_gpus=instance.num_gpus,
        min_gpu_ram_gb=instance.min_gpu_ram_gb,
        max_price_per_hour=instance.max_price_per_hour,
        min_disk_gb=instance.disk_gb,
        limit=settings.DUMONT_RACE_SEARCH_LIMIT,
    )


def choose_offers(offers: Iterable[Offer], *, count: int, exclude_hosts: Iterable[str] = ()) -> list[Offer]:
    """Up to `count` offers, cheapest first, one per host, none on a host already tried.

    Two machines on one host share its network, disk and luck; a host that failed an earlier
    round is not tried again in the same race.
    """
    taken = {host for host in exclude_hosts if host}
    chosen: list[Offer] = []
    for offer in sorted(offers, key=lambda offer: offer.price_per_hour):
        if len(chosen) == count:
            break
        if offer.machine_id and offer.machine_id in taken:
            continue
        chosen.append(offer)
        if offer.machine_id:
            taken.add(offer.machine_id)
    return chosen


def describe_spec(instance: Instance) -> str:
    spec = f"{instance.num_gpus}× {instance.gpu_name or instance.machine_gpu_name or 'any GPU'}"
    if instance.min_gpu_ram_gb:
        spec += f" with at least {instance.min_gpu_ram_gb} GB"
    if instance.max_price_per_hour is not None:
        spec += f" at most ${instance.max_price_per_hour}/h"
    return spec

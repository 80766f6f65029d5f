"""vast.ai, spoken as the vast.ai section of providers.md describes it (devcloud speaks it too).

vast.ai is loose about types (numbers arrive as strings or ints, addresses with whitespace), so
everything read from a reply goes through the small parsers at the bottom of this module.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterator
from decimal import Decimal, InvalidOperation

from .base import (
    CreateSpec,
    Machine,
    MachineState,
    Offer,
    OfferGone,
    OfferQuery,
    Provider,
    ProviderAuthError,
    ProviderError,
    ProviderRejected,
)
from .http import HttpClient, describe

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://console.vast.ai"
LIST_PAGE_SIZE = 25  # the most vast.ai returns per page

# vast.ai's own client converts GB to MB by 1000; 1024 would exclude a "24 GB" RTX 4090,
# which reports 24564 MB.
MB_PER_GB = 1000

# Error codes in vast.ai bodies that mean more than their HTTP status says.
_ERROR_CLASSES: dict[str, type[ProviderError]] = {
    "no_such_ask": OfferGone,
    "invalid_args": ProviderRejected,
    "invalid_price": ProviderRejected,
    "auth_error": ProviderAuthError,
}

# States in which the container has not come up yet; an error message here means it never will.
_STARTING_STATES = {None, "created", "loading", "rebooting"}
_ERROR_MESSAGE = re.compile(r"\b(error|failed|failure)\b", re.IGNORECASE)


class VastProvider(Provider):
    name = "vast"

    def __init__(
        self, api_key: str, base_url: str = DEFAULT_BASE_URL, http: HttpClient | None = None
    ):
        """`http`, when given, is used as is: it must already carry the base URL and the auth."""
        self.http = http or HttpClient(base_url, headers={"Authorization": f"Bearer {api_key}"})

    def search_offers(self, query: OfferQuery) -> list[Offer]:
        body = self._call(
            "POST",
            "/api/v0/bundles/",
            retry=True,  # a search changes nothing
            json={
                **offer_filters(query),
                "order": [["dph_total", "asc"]],
                "type": "on-demand",
                "limit": query.limit,
            },
        )
        offers = [offer for raw in _list_field(body, "offers") if (offer := _parse_offer(raw))]
        return sorted(offers, key=lambda offer: offer.price_per_hour)

    def create(self, *, offer_id: str, spec: CreateSpec) -> str:
        """Rent the offer; returns the new instance id.

        Never retried here. On ProviderUnavailable (5xx, timeout, lost connection) the instance
        may exist anyway: the caller must call find_by_label(spec.label) before any new create,
        or it may pay for two machines. OfferGone means take another offer; ProviderRejected
        means the spec is wrong.
        """
        body = self._call(
            "PUT",
            f"/api/v0/asks/{offer_id}/",
            retry=False,
            json={
                "image": spec.image,
                "disk": spec.disk_gb,
                "label": spec.label,
                "onstart": spec.onstart,
                "env": dict(spec.env),
                "runtype": "ssh_direc ssh_proxy",
                "target_state": "running",
                "cancel_unavail": True,
            },
        )
        instance_id = body.get("new_contract")
        if instance_id in (None, ""):
            raise ProviderError(
                f"vast.ai accepted the create but named no instance: {describe(body)}", body=body
            )
        return str(instance_id)

    def get(self, machine_id: str) -> Machine | None:
        body = self._call("GET", f"/api/v0/instances/{machine_id}/", retry=True)
        if "instances" not in body:
            raise ProviderError(f"vast.ai reply for {machine_id} has no 'instances'", body=body)
        raw = body["instances"]
        return None if raw is None else parse_machine(raw)

    def list(self) -> Iterator[Machine]:
        after_token = None
        while True:
            params = {"limit": LIST_PAGE_SIZE}
            if after_token:
                params["after_token"] = after_token
            body = self._call("GET", "/api/v1/instances/", retry=True, params=params)
            yield from (parse_machine(raw) for raw in _list_field(body, "instances"))
            next_token = body.get("next_token")
            if not next_token:
                return
            if next_token == after_token:
                raise ProviderError("vast.ai returned the same page token twice", body=body)
            after_token = next_token

    def start(self, machine_id: str) -> None:
        self._set_state(machine_id, "running")

    def stop(self, machine_id: str) -> None:
        self._set_state(machine_id, "stopped")

    def destroy(self, machine_id: str) -> None:
        try:
            self._call("DELETE", f"/api/v0/instances/{machine_id}/", retry=True)
        except ProviderError as exc:
            if not (exc.status == 404 and _error_code(exc.body) == "not_found"):
                raise

    def ensure_ssh_key(self, public_key: str) -> None:
        """Add the key to the account unless a key with the same type and body is there.

        Account keys reach only instances created afterwards.
        """
        wanted = ssh_key_identity(public_key)
        if wanted is None:
            raise ValueError("not an OpenSSH public key: expected '<type> <base64> [comment]'")
        present = self._request("GET", "/api/v0/ssh/", retry=True)
        if wanted not in {ssh_key_identity(key) for key in _account_ssh_keys(present)}:
            self._call("POST", "/api/v0/ssh/", retry=False, json={"ssh_key": public_key.strip()})

    def _set_state(self, machine_id: str, state: str) -> None:
        self._call("PUT", f"/api/v0/instances/{machine_id}/", retry=True, json={"state": state})

    def _call(self, method: str, path: str, **request) -> dict:
        """Like _request, for the replies that must be a JSON object."""
        body = self._request(method, path, **request)
        if not isinstance(body, dict):
            raise ProviderError(f"{method} {path}: not a JSON object: {describe(body)}", body=body)
        return body

    def _request(self, method: str, path: str, **request) -> object:
        """The decoded reply, with vast.ai's error codes (also in a 200's `success: false`) raised
        as the ProviderError they mean."""
        try:
            body = self.http.request(method, path, **request)
        except ProviderError as exc:
            error_class = _ERROR_CLASSES.get(_error_code(exc.body))
            if exc.retryable or error_class is None:
                raise
            raise error_class(str(exc), status=exc.status, body=exc.body) from exc
        if isinstance(body, dict) and body.get("success") is False:
            error_class = _ERROR_CLASSES.get(_error_code(body), ProviderError)
            message = f"{method} {path} -> 200 but failed: {describe(body)}"
            raise error_class(message, status=200, body=body)
        return body


def offer_filters(query: OfferQuery) -> dict[str, dict[str, object]]:
    """vast.ai search filters `{field: {op: value}}` for the query, plus the defaults that keep
    out machines we could not use: unverified, already rented, flaky, no direct port, slow."""
    filters: dict[str, dict[str, object]] = {
        "verified": {"eq": True},
        "rentable": {"eq": True},
        "rented": {"eq": False},
        "reliability2": {"gte": query.min_reliability},
        "direct_port_count": {"gte": 1},
        "inet_down": {"gt": query.min_inet_down_mbps},
        "num_gpus": {"eq": query.num_gpus},
    }
    if query.gpu_name:
        filters["gpu_name"] = {"eq": query.gpu_name.replace("_", " ")}
    if query.min_gpu_ram_gb is not None:
        filters["gpu_ram"] = {"gte": query.min_gpu_ram_gb * MB_PER_GB}
    if query.max_price_per_hour is not None:
        filters["dph_total"] = {"lte": float(query.max_price_per_hour)}
    if query.min_disk_gb is not None:
        filters["disk_space"] = {"gte": query.min_disk_gb}
    return filters


def machine_state(actual: str | None, intended: str | None, status_msg: str) -> MachineState:
    """Dumont's state for vast.ai's `actual_status`, `intended_status` and `status_msg`."""
    actual = actual.strip().lower() if actual else None
    wants_running = (intended or "running").strip().lower() == "running"
    if actual in _STARTING_STATES:
        if _ERROR_MESSAGE.search(status_msg):
            return MachineState.FAILED
        return MachineState.PROVISIONING if actual is None else MachineState.LOADING
    if actual == "running":
        return MachineState.RUNNING if wants_running else MachineState.STOPPING
    if actual in ("stopped", "frozen"):
        # Asked to start but not yet scheduled on its host; it stays so if the GPU was taken.
        return MachineState.PROVISIONING if wants_running else MachineState.STOPPED
    if actual == "exited":
        # A stop ends the container too; only an exit nobody asked for is a failure.
        return MachineState.FAILED if wants_running else MachineState.STOPPED
    if actual in ("unknown", "offline"):
        # No heartbeat: a machine we need running will not get there; a stopped one may be fine.
        return MachineState.FAILED if wants_running else MachineState.UNKNOWN
    return MachineState.UNKNOWN


def parse_machine(raw: object) -> Machine:
    if not isinstance(raw, dict) or raw.get("id") in (None, ""):
        raise ProviderError(f"vast.ai sent an instance without an id: {describe(raw)}", body=raw)
    status_msg = str(raw.get("status_msg") or "").strip()
    ssh_host, ssh_port = ssh_address(raw)
    return Machine(
        id=str(raw["id"]),
        label=str(raw.get("label") or ""),
        state=machine_state(raw.get("actual_status"), raw.get("intended_status"), status_msg),
        status_msg=status_msg,
        ssh_host=ssh_host,
        ssh_port=ssh_port,
        gpu_name=str(raw.get("gpu_name") or ""),
        num_gpus=_as_int(raw.get("num_gpus")) or 0,
        price_per_hour=_as_decimal(raw.get("dph_total")),
        machine_host_id=str(raw.get("machine_id") or ""),
    )


def ssh_address(raw: dict) -> tuple[str | None, int | None]:
    """Direct (public IP + the host port mapped to 22) when that mapping exists, else the proxy."""
    public_ip = str(raw.get("public_ipaddr") or "").strip()
    direct_port = _direct_ssh_port(raw.get("ports"))
    if public_ip and direct_port:
        return public_ip, direct_port
    proxy_host = str(raw.get("ssh_host") or "").strip()
    proxy_port = _as_int(raw.get("ssh_port"))
    if proxy_host and proxy_port:
        return proxy_host, proxy_port
    return None, None


def ssh_key_identity(key: str) -> tuple[str, str] | None:
    """(type, base64 body) of an OpenSSH public key; the comment does not identify a key."""
    parts = key.split()
    return (parts[0], parts[1]) if len(parts) >= 2 else None


def _parse_offer(raw: object) -> Offer | None:
    """The offer, or None (logged) when it lacks what renting it needs: an id and a price."""
    price = _as_decimal(raw.get("dph_total")) if isinstance(raw, dict) else None
    if price is None or raw.get("id") in (None, ""):
        logger.warning("skipping a vast.ai offer without id or price: %s", describe(raw))
        return None
    return Offer(
        id=str(raw["id"]),
        machine_id=str(raw.get("machine_id") or ""),
        gpu_name=str(raw.get("gpu_name") or ""),
        num_gpus=_as_int(raw.get("num_gpus")) or 0,
        gpu_ram_gb=(_as_float(raw.get("gpu_ram")) or 0.0) / MB_PER_GB,
        price_per_hour=price,
        reliability=_as_float(raw.get("reliability2")) or 0.0,
        inet_down_mbps=_as_float(raw.get("inet_down")) or 0.0,
        inet_up_mbps=_as_float(raw.get("inet_up")) or 0.0,
        location=str(raw.get("geolocation") or "").strip(),
        disk_space_gb=_as_float(raw.get("disk_space")) or 0.0,
        verified=_as_flag(raw.get("verified")),
    )


def _account_ssh_keys(body: object) -> list[str]:
    """Public keys from GET /api/v0/ssh/: a list of key objects."""
    if not isinstance(body, list):
        raise ProviderError(f"vast.ai sent no SSH key list: {describe(body)}", body=body)
    entries = [entry for entry in body if isinstance(entry, dict)]
    keys = [entry.get("public_key") or entry.get("key") for entry in entries]
    return [key for key in keys if isinstance(key, str)]


def _list_field(body: dict, name: str) -> list:
    """A list the reply must carry: a missing list is an error, never "there are none"."""
    value = body.get(name)
    if not isinstance(value, list):
        raise ProviderError(f"vast.ai reply has no '{name}' list: {describe(body)}", body=body)
    return value


def _error_code(body: object) -> str | None:
    return body.get("error") if isinstance(body, dict) else None


def _direct_ssh_port(ports: object) -> int | None:
    try:
        return _as_int(ports["22/tcp"][0]["HostPort"])
    except (KeyError, IndexError, TypeError):
        return None


def _as_float(value: object) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _as_int(value: object) -> int | None:
    number = _as_float(value)
    return int(number) if number is not None else None


def _as_decimal(value: object) -> Decimal | None:
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _as_flag(value: object) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)

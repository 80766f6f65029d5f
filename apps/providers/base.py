"""The provider interface: what Dumont needs from a GPU marketplace.

Small on purpose, so vast.ai, RunPod and the devcloud emulator all fit it. Providers speak in
these dataclasses; nothing here knows about Django models.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal


class ProviderError(Exception):
    """A provider call failed. `code` is short and machine-readable, `str()` is for humans."""

    code = "provider_error"
    retryable = False

    def __init__(self, message: str, *, status: int | None = None, body: object = None):
        super().__init__(message)
        self.status = status
        self.body = body


class ProviderAuthError(ProviderError):
    code = "provider_auth"


class OfferGone(ProviderError):
    """The offer was taken or withdrawn (vast `no_such_ask`); another offer may work."""

    code = "offer_gone"


class ProviderRejected(ProviderError):
    """The provider refused the request as invalid (bad arguments, price); retrying won't help."""

    code = "provider_rejected"


class ProviderRateLimited(ProviderError):
    code = "provider_rate_limited"
    retryable = True


class ProviderUnavailable(ProviderError):
    """5xx, timeouts, connection errors: transient, but the request may or may not have landed."""

    code = "provider_unavailable"
    retryable = True


class ProviderCallNotAllowed(RuntimeError):
    """A provider call was attempted inside a DB transaction or an HTTP request."""


class MachineState(enum.StrEnum):
    PROVISIONING = "provisioning"  # accepted, no container yet
    LOADING = "loading"  # image pull / container starting
    RUNNING = "running"  # provider says running; SSH may still refuse
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"  # exited, OCI error, offline: will not become ready
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class OfferQuery:
    gpu_name: str | None = None
    num_gpus: int = 1
    min_gpu_ram_gb: float | None = None
    max_price_per_hour: Decimal | None = None
    min_reliability: float = 0.9
    min_inet_down_mbps: float = 100.0
    min_disk_gb: float | None = None
    limit: int = 20


@dataclass(frozen=True)
class Offer:
    id: str
    machine_id: str
    gpu_name: str
    num_gpus: int
    gpu_ram_gb: float
    price_per_hour: Decimal
    reliability: float
    inet_down_mbps: float
    inet_up_mbps: float
    location: str
    disk_space_gb: float
    verified: bool


@dataclass(frozen=True)
class CreateSpec:
    image: str
    disk_gb: int
    label: str  # ties the machine to its Dumont row; reconcilers find leaks by it
    onstart: str = ""
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Machine:
    id: str
    label: str
    state: MachineState
    status_msg: str = ""
    ssh_host: str | None = None
    ssh_port: int | None = None
    gpu_name: str = ""
    num_gpus: int = 0
    price_per_hour: Decimal | None = None
    machine_host_id: str = ""


class Provider(ABC):
    name: str

    @abstractmethod
    def search_offers(self, query: OfferQuery) -> list[Offer]:
        """Offers matching the query, cheapest first."""

    @abstractmethod
    def create(self, *, offer_id: str, spec: CreateSpec) -> str:
        """Rent the offer; returns the provider's machine id.

        Raises OfferGone when the offer is no longer there. On ProviderUnavailable the machine
        may exist anyway: look it up with find_by_label before creating again.
        """

    @abstractmethod
    def get(self, machine_id: str) -> Machine | None:
        """The machine, or None when the provider no longer knows it (destroyed)."""

    @abstractmethod
    def list(self) -> Iterator[Machine]:
        """Every machine of the account, all pages."""

    def find_by_label(self, label: str) -> Machine | None:
        return next((m for m in self.list() if m.label == label), None)

    @abstractmethod
    def start(self, machine_id: str) -> None: ...

    @abstractmethod
    def stop(self, machine_id: str) -> None: ...

    @abstractmethod
    def destroy(self, machine_id: str) -> None:
        """Destroy the machine; a machine already gone is success."""

    @abstractmethod
    def ensure_ssh_key(self, public_key: str) -> None:
        """Make sure machines created from now on accept this public key."""

"""devcloud's own endpoints under /_devcloud/: machine internals, simulated GPUs, fault knobs.

Same account key as the vast API; the GPU of a machine can also be read with that machine's
own token (DEVCLOUD_MACHINE_TOKEN), which is what an agent running on the machine has.
Faults never apply to these endpoints.
"""

from __future__ import annotations

import math

from .cloud import Cloud, UnknownMachine
from .faults import Faults
from .http import App, BadRequest, Request, Response, error


def install(app: App, cloud: Cloud, faults: Faults) -> None:
    admin = AdminApi(cloud, faults)
    app.route("GET", r"/_devcloud/machines", admin.machines, admin=True)
    app.route("GET", r"/_devcloud/destroyed", admin.destroyed, admin=True)
    app.route("GET", r"/_devcloud/machines/(\d+)/gpu", admin.get_gpu, admin=True, alt_auth=admin.is_machine_token)
    app.route("PUT", r"/_devcloud/machines/(\d+)/gpu", admin.set_gpu, admin=True)
    app.route("GET", r"/_devcloud/faults", admin.get_faults, admin=True)
    app.route("POST", r"/_devcloud/faults", admin.update_faults, admin=True)
    app.route("DELETE", r"/_devcloud/faults", admin.reset_faults, admin=True)


class AdminApi:
    def __init__(self, cloud: Cloud, faults: Faults):
        self.cloud = cloud
        self.faults = faults

    def is_machine_token(self, request: Request, credential: str) -> bool:
        return self.cloud.machine_token_matches(int(request.params[0]), credential)

    def machines(self, request: Request) -> Response:
        return Response(200, {"machines": self.cloud.admin_machines()})

    def destroyed(self, request: Request) -> Response:
        return Response(200, {"destroyed": self.cloud.admin_destroyed()})

    def get_gpu(self, request: Request) -> Response:
        machine_id = int(request.params[0])
        try:
            return Response(200, self.cloud.gpu(machine_id))
        except UnknownMachine:
            return error(404, "not_found", f"no machine {machine_id}")

    def set_gpu(self, request: Request) -> Response:
        machine_id = int(request.params[0])
        utilization = parse_utilization(request.json_object().get("utilization"))
        try:
            return Response(200, self.cloud.set_gpu(machine_id, utilization))
        except UnknownMachine:
            return error(404, "not_found", f"no machine {machine_id}")
        except ValueError as exc:
            raise BadRequest(str(exc)) from None

    def get_faults(self, request: Request) -> Response:
        return Response(200, self.faults.describe())

    def update_faults(self, request: Request) -> Response:
        try:
            self.faults.update(request.json_object())
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        return Response(200, self.faults.describe())

    def reset_faults(self, request: Request) -> Response:
        self.faults.reset()
        return Response(200, self.faults.describe())


def parse_utilization(value: object) -> list[float]:
    """A percentage for every GPU, or a list with one percentage per GPU; each 0-100."""
    values = value if isinstance(value, list) else [value]
    if not values or not all(_is_percentage(item) for item in values):
        raise BadRequest("utilization must be a number 0-100 or a non-empty list of them")
    return [float(item) for item in values]


def _is_percentage(value: object) -> bool:
    return (
        not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value) and 0 <= value <= 100
    )

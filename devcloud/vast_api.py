"""The vast.ai endpoints, as /work/shared/providers.md describes them."""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import math
import shlex
import time

from .catalog import BadQuery
from .cloud import Cloud, OfferUnavailable, UnknownMachine
from .faults import Faults
from .http import App, BadRequest, Request, Response, error
from .machine import CreateRequest

PAGE_SIZE = 25  # vast's maximum per page
MIN_DISK_GB = 8
DEFAULT_DISK_GB = 10.0


def install(app: App, cloud: Cloud, faults: Faults) -> None:
    api = VastApi(cloud, faults)
    app.route("POST", r"/api/v0/bundles", api.search_offers)
    app.route("GET", r"/api/v0/bundles", api.search_offers)
    app.route("PUT", r"/api/v0/asks/(\d+)", api.create_instance)
    app.route("GET", r"/api/v1/instances", api.list_instances)
    app.route("GET", r"/api/v0/instances", api.retired_list)
    app.route("GET", r"/api/v0/instances/(\d+)", api.show_instance)
    app.route("PUT", r"/api/v0/instances/(\d+)", api.manage_instance)
    app.route("DELETE", r"/api/v0/instances/(\d+)", api.destroy_instance)
    app.route("POST", r"/api/v0/instances/(\d+)/ssh", api.attach_ssh_key)
    app.route("GET", r"/api/v0/ssh", api.list_ssh_keys)
    app.route("POST", r"/api/v0/ssh", api.create_ssh_key)


class VastApi:
    def __init__(self, cloud: Cloud, faults: Faults):
        self.cloud = cloud
        self.faults = faults

    def search_offers(self, request: Request) -> Response:
        if request.method == "GET" and "q" in request.query:
            query = _query_from_param(request.query["q"])  # the old GET form: ?q=<JSON>
        else:
            query = request.json_object()
        try:
            return Response(200, {"offers": self.cloud.search_offers(query)})
        except BadQuery as exc:
            raise BadRequest(str(exc)) from None

    def create_instance(self, request: Request) -> Response:
        offer_id = int(request.params[0])
        spec = parse_create_request(request.json_object())
        if self.faults.take("vanish_offers"):
            return _no_such_ask(offer_id)
        profile = self.faults.take_profile()
        if profile is not None and profile.create_delay_s:
            time.sleep(profile.create_delay_s)  # a slow marketplace: the machine exists only after
        try:
            instance_id = self.cloud.create(offer_id, spec, profile)
        except OfferUnavailable:
            return _no_such_ask(offer_id)
        lost = self.faults.take_numbered("lose_create_reply")
        if lost is not None:
            # The machine exists; the client must find it by label before creating again.
            if lost % 2 == 0:
                return Response(drop_connection=True)
            return Response(502, "<html><body><h1>502 Bad Gateway</h1></body></html>", "text/html")
        return Response(200, {"success": True, "new_contract": instance_id})

    def list_instances(self, request: Request) -> Response:
        limit = _page_limit(request.query.get("limit"))
        after_id = _decode_token(request.query["after_token"]) if request.query.get("after_token") else 0
        page, last_id, total = self.cloud.instance_page(after_id, limit)
        return Response(
            200,
            {
                "success": True,
                "instances": page,
                "instances_found": len(page),
                "total_instances": total,
                "next_token": _encode_token(last_id) if last_id is not None else None,
            },
        )

    def retired_list(self, request: Request) -> Response:
        return error(410, "gone", "use /api/v1/instances/")

    def show_instance(self, request: Request) -> Response:
        return Response(200, {"instances": self.cloud.instance(int(request.params[0]))})

    def manage_instance(self, request: Request) -> Response:
        instance_id = int(request.params[0])
        body = request.json_object()
        state, label = body.get("state"), body.get("label")
        if state not in ("running", "stopped", None) or (state is None and label is None):
            raise BadRequest("state must be 'running' or 'stopped'")
        if label is not None and not isinstance(label, str):
            raise BadRequest("label must be a string")
        try:
            if label is not None:
                self.cloud.set_label(instance_id, label)
            if state is not None:
                self.cloud.set_state(instance_id, state)
        except UnknownMachine:
            # vast answers some refusals with a 200 that says success: false.
            message = f"Instance {instance_id} not found."
            return Response(200, {"success": False, "error": "no_such_instance", "msg": message})
        return Response(200, {"success": True})

    def destroy_instance(self, request: Request) -> Response:
        instance_id = int(request.params[0])
        try:
            self.cloud.destroy(instance_id)
        except UnknownMachine:
            return error(404, "not_found", f"Instance {instance_id} not found.")
        return Response(200, {"success": True})

    def attach_ssh_key(self, request: Request) -> Response:
        instance_id = int(request.params[0])
        line = request.json_object().get("ssh_key")
        try:
            self.cloud.add_instance_key(instance_id, line)
        except UnknownMachine:
            return error(404, "not_found", f"Instance {instance_id} not found.")
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        return Response(200, {"success": True, "msg": "SSH key attached successfully"})

    def list_ssh_keys(self, request: Request) -> Response:
        return Response(200, self.cloud.account_keys())

    def create_ssh_key(self, request: Request) -> Response:
        line = request.json_object().get("ssh_key")
        if not line:
            return error(400, "no_ssh_key", "No ssh key provided")
        try:
            key = self.cloud.add_account_key(line)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        return Response(200, {"success": True, "key": key})


def parse_create_request(body: dict) -> CreateRequest:
    image = body.get("image")
    if not isinstance(image, str) or not image.strip():
        raise BadRequest("image is required")
    disk = body.get("disk", DEFAULT_DISK_GB)
    if isinstance(disk, bool) or not isinstance(disk, (int, float)) or not math.isfinite(disk):
        raise BadRequest("disk must be a number of GB")
    if disk < MIN_DISK_GB:
        raise BadRequest(f"disk must be at least {MIN_DISK_GB} GB, got {disk}")
    target_state = body.get("target_state") or "running"
    if target_state not in ("running", "stopped"):
        raise BadRequest("target_state must be 'running' or 'stopped'")
    return CreateRequest(
        image=image.strip(),
        disk_gb=float(disk),
        label=_optional_text(body, "label"),
        onstart=_optional_text(body, "onstart"),
        env=parse_env(body.get("env")),
        runtype=_optional_text(body, "runtype") or "ssh_direc ssh_proxy",
        target_state=target_state,
    )


def parse_env(value: object) -> dict[str, str]:
    """A JSON object, or the vast CLI's docker-flag string `-e K=V -e K2=V2 -p 8000:8000`
    (port flags are accepted and ignored)."""
    if value is None or value == "":
        return {}
    if isinstance(value, dict):
        if not all(isinstance(name, str) and name for name in value):
            raise BadRequest("env names must be non-empty strings")
        return {name: "" if item is None else str(item) for name, item in value.items()}
    if not isinstance(value, str):
        raise BadRequest("env must be an object or a '-e K=V' string")
    try:
        tokens = shlex.split(value)
    except ValueError as exc:
        raise BadRequest(f"env: {exc}") from None
    env = {}
    for flag, argument in itertools.pairwise(tokens):
        if flag == "-e":
            name, _, item = argument.partition("=")
            if name:
                env[name] = item
    return env


def _optional_text(body: dict, name: str) -> str:
    value = body.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadRequest(f"{name} must be a string")
    return value


def _query_from_param(text: str) -> dict:
    try:
        query = json.loads(text)
    except ValueError:
        raise BadRequest("q must be a JSON object") from None
    if not isinstance(query, dict):
        raise BadRequest("q must be a JSON object")
    return query


def _page_limit(text: str | None) -> int:
    if text is None:
        return PAGE_SIZE
    try:
        limit = int(text)
    except ValueError:
        raise BadRequest("limit must be an integer") from None
    return 5 if limit <= 0 else min(limit, PAGE_SIZE)  # vast's own rule for limit <= 0


def _encode_token(last_id: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"values": {"id": last_id}}).encode()).decode()


def _decode_token(token: str) -> int:
    try:
        last_id = json.loads(base64.urlsafe_b64decode(token.encode()))["values"]["id"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise BadRequest("invalid after_token") from None
    if isinstance(last_id, bool) or not isinstance(last_id, int):
        raise BadRequest("invalid after_token")
    return last_id


def _no_such_ask(offer_id: int) -> Response:
    return error(404, "no_such_ask", f"error 404/3603: no_such_ask Instance type by id {offer_id} is not available.")

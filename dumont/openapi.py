"""Schema entries for endpoints that are not DRF views (drf-spectacular postprocessing hook)."""

from __future__ import annotations

_ERROR = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


AGENT_STATUS = {
    "post": {
        "operationId": "agent_status",
        "tags": ["agent"],
        "description": "An agent's heartbeat: samples since the last one (many after an outage) and "
        "command progress. The reply carries commands not yet acknowledged. Wire format: agent/wire.py.",
        "security": [{"agentToken": []}],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object",
            "required": ["instance_id", "agent_version", "seq"],
            "properties": {
                "instance_id": {"type": "string", "format": "uuid"},
                "agent_version": {"type": "string"},
                "seq": {"type": "integer"},
                "samples": {"type": "array", "maxItems": 720, "items": {"type": "object"}},
                "updates": {"type": "array", "maxItems": 100, "items": {"type": "object"}},
                "protocol": {"type": "integer"},
            },
        }}}},
        "responses": {
            "200": _json({"type": "object", "properties": {
                "commands": {"type": "array", "items": {"type": "object", "properties": {
                    "id": {"type": "string", "format": "uuid"}, "kind": {"type": "string"},
                    "args": {"type": "object"}}}},
                "interval_s": {"type": "number"},
            }}, "Stored; here are the commands not yet acknowledged and the interval to use"),
            "400": _json(_ERROR, "Malformed heartbeat (the detail names the field)"),
            "401": _json(_ERROR, "Missing, unknown or revoked agent token"),
            "404": _json(_ERROR, "The token belongs to another instance"),
        },
    }
}


def add_agent_status(result, generator, request, public):
    result["paths"]["/api/v1/agent/status"] = AGENT_STATUS
    components = result.setdefault("components", {})
    components.setdefault("securitySchemes", {})["agentToken"] = {
        "type": "apiKey", "in": "header", "name": "Authorization",
        "description": "`Agent <token>`: the per-instance token handed to the machine at install",
    }
    components.setdefault("schemas", {}).setdefault("Error", {
        "type": "object", "required": ["error", "detail"],
        "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
    })
    return result

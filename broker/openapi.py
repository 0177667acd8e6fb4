"""/openapi.json, generated from the endpoint table and the msgspec wire types."""

from __future__ import annotations

import re
from typing import Any

import msgspec

from pair import __version__
from pair.api import endpoints as ep
from pair.api import models as m

REF = "#/components/schemas/{name}"


def document(*, max_token_ttl: int) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every JSON endpoint (and, as `x-websockets`, every WebSocket
    one); `max_token_ttl` is this broker's
    PAIR_BROKER_MAX_TOKEN_TTL, the largest ttl_seconds it accepts."""
    types = [t for e in ep.ALL for t in (e.request, e.response) if t is not None] + [m.ErrorBody]
    schemas, components = msgspec.json.schema_components(types, ref_template=REF)
    _fill_settings(components, {"PAIR_BROKER_MAX_TOKEN_TTL": max_token_ttl})
    by_type = dict(zip(types, schemas, strict=True))
    error = {
        "description": "An error: one sentence, what to do, and a stable code.",
        "content": {"application/json": {"schema": by_type[m.ErrorBody]}},
    }
    paths: dict[str, dict[str, Any]] = {}
    for e in ep.ALL:
        op: dict[str, Any] = {
            "summary": e.summary,
            "operationId": f"{e.method.lower()}_{re.sub(r'[^a-z0-9]+', '_', e.path.lower()).strip('_')}",
            "tags": [e.tag] if e.tag else [],
            "responses": {"default": error},
        }
        if e.response is None:
            op["responses"]["204"] = {"description": "Done."}
        else:
            op["responses"]["200"] = {
                "description": "OK.",
                "content": {"application/json": {"schema": by_type[e.response]}},
            }
        if e.request is not None:
            op["requestBody"] = {"required": True, "content": {"application/json": {"schema": by_type[e.request]}}}
        # What the broker accepts in each path parameter (anything else is 422 with its sentence).
        params = e.path_types()
        if params:
            op["parameters"] = [
                {"name": p, "in": "path", "required": True, "schema": msgspec.json.schema(kind)}
                for p, kind in params.items()
            ]
        if e.auth != "none":
            op["security"] = [{"agent" if e.auth == "agent" else "session": []}]
        if e.auth == "admin":
            op["description"] = "Needs the session of an admin; others get 403."
        paths.setdefault(e.path, {})[e.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "pair broker", "version": __version__},
        "paths": paths,
        # OpenAPI 3.1 has no WebSockets: they are listed beside `paths` (an `x-` extension, which
        # tools ignore) with their summary, tag and who may open them (session, agent: the
        # security schemes below; web: the web page's cookie session, from the broker's origin).
        "x-websockets": {
            w.path: {"summary": w.summary, "tags": [w.tag] if w.tag else [], "auth": w.auth} for w in ep.WEBSOCKETS
        },
        "components": {
            "schemas": components,
            "securitySchemes": {
                "session": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A person's session token (`pair_st_…`), from POST /api/v1/login (`pair login`).",
                },
                "agent": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A container's agent credential (`pair_ac_…`), from POST /api/v1/agent/bootstrap.",
                },
            },
        },
    }


def _fill_settings(node: Any, values: dict[str, int]) -> None:
    """Replace each `x-maximum-setting` marker (pair.api.models) with this broker's value."""
    if isinstance(node, dict):
        setting = node.pop("x-maximum-setting", None)
        if setting is not None:
            node["maximum"] = values[setting]
        for value in node.values():
            _fill_settings(value, values)
    elif isinstance(node, list):
        for value in node:
            _fill_settings(value, values)

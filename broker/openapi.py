"""/openapi.json, generated from the endpoint table and the msgspec wire types."""

from __future__ import annotations

import re
from typing import Any

import msgspec

from pair import __version__
from pair.api import endpoints as ep
from pair.api import models as m

REF = "#/components/schemas/{name}"


def document() -> dict[str, Any]:
    types = [t for e in ep.ALL for t in (e.request, e.response) if t is not None] + [m.ErrorBody]
    schemas, components = msgspec.json.schema_components(types, ref_template=REF)
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
        params = re.findall(r"{(\w+)}", e.path)
        if params:
            op["parameters"] = [
                {"name": p, "in": "path", "required": True, "schema": {"type": "string"}} for p in params
            ]
        if e.auth != "none":
            op["security"] = [{"bearer": []}]
        paths.setdefault(e.path, {})[e.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "pair broker", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A session token (`pair login`) or, for /agent/ endpoints, the agent credential.",
                }
            },
        },
    }

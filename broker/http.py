"""Binds each `pair.api.endpoints.Endpoint` to a handler: authentication, body decoding,
JSON encoding and the error shape live here once, not in every route."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.routing import Route

from broker import accounts, spaces
from broker.context import Context
from broker.errors import Problem
from broker.store import SessionRecord, SpaceRecord, UserRecord
from pair.api.endpoints import Endpoint

MAX_BODY = 64 * 1024


@dataclass
class Call:
    """One authenticated request, as a handler sees it."""

    ctx: Context
    request: Request
    body: Any
    params: dict[str, str]
    session: SessionRecord | None = None
    user: UserRecord | None = None
    space: SpaceRecord | None = None  # the calling agent's Space

    @property
    def me(self) -> UserRecord:
        assert self.user is not None
        return self.user

    @property
    def agent_space(self) -> SpaceRecord:
        assert self.space is not None
        return self.space


Handler = Callable[[Call], Awaitable[Any]]


def json_response(status: int, data: bytes, headers: dict[str, str] | None = None) -> Response:
    return Response(data, status_code=status, media_type="application/json", headers=headers)


def problem_response(problem: Problem) -> Response:
    body = msgspec.json.encode({"message": problem.message, "detail": problem.detail, "code": problem.code})
    headers = {"WWW-Authenticate": "Bearer"} if problem.status == 401 else None
    return json_response(problem.status, body, headers)


def bearer(request: HTTPConnection) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def bind(endpoint: Endpoint, handler: Handler) -> Route:
    async def asgi(request: Request) -> Response:
        ctx: Context = request.app.state.ctx
        call = Call(ctx, request, None, dict(request.path_params))
        if endpoint.auth in ("session", "admin"):
            call.session, call.user = await accounts.authenticate(ctx, bearer(request))
            if endpoint.auth == "admin" and not call.user.is_admin:
                raise Problem(403, "This needs an admin account.", "Ask an admin of this broker.", "forbidden")
        elif endpoint.auth == "agent":
            call.space = await spaces.authenticate_agent(ctx, bearer(request))
        if endpoint.request is not None:
            raw = await request.body()
            if len(raw) > MAX_BODY:
                raise Problem(413, "The request body is too large.", code="too_large")
            try:
                call.body = msgspec.json.decode(raw, type=endpoint.request)
            except msgspec.ValidationError as exc:
                raise Problem(422, "The request body is not valid.", str(exc), "invalid") from exc
            except msgspec.DecodeError as exc:
                raise Problem(400, "The request body is not JSON.", str(exc), "bad_json") from exc
        result = await handler(call)
        if endpoint.response is None:
            return Response(status_code=204)
        return json_response(200, msgspec.json.encode(result))

    return Route(endpoint.path, asgi, methods=[endpoint.method], name=endpoint.path + ":" + endpoint.method)


async def on_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    return problem_response(exc)


async def on_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return problem_response(
            Problem(
                404,
                f"There is no {request.url.path} on this broker.",
                "Check the broker URL, and that pair and the broker versions match.",
                "not_found",
            )
        )
    if exc.status_code == 405:
        return problem_response(
            Problem(405, f"{request.method} is not allowed on {request.url.path}.", code="method_not_allowed")
        )
    return problem_response(Problem(exc.status_code, str(exc.detail)))


async def on_error(request: Request, exc: Exception) -> Response:
    # Starlette re-raises after this answer, so the server logs the traceback once.
    return problem_response(
        Problem(
            500,
            "The broker hit an internal error.",
            "It is in the broker's log; try again, and tell its operator if it persists.",
            "internal",
        )
    )

"""Binds each `pair.api.endpoints.Endpoint` to a handler: authentication, body decoding,
JSON encoding and the error shape live here once, not in every route.

A bound endpoint is a plain ASGI app, not a Starlette request handler: the hot paths (agent
heartbeats, the Space list) spend their CPU on the request itself, not on building Request and
Response objects (docs/performance.md). `ExactRoutes` answers parameter-free endpoints by a
dict lookup before Starlette's router."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import msgspec
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from broker import access, accounts, agents
from broker.context import Context
from broker.errors import Problem
from broker.store import SessionRecord, SpaceRecord, StoreUnavailable, UserRecord
from pair.api import fields
from pair.api import models as m
from pair.api.endpoints import Endpoint
from pair.api.grammar import Invalid, shown
from pair.printable import printable

MAX_BODY = 64 * 1024
JSON_HEADERS = [(b"content-type", b"application/json")]

log = logging.getLogger("pair.broker")

Req = TypeVar("Req")  # an endpoint's request body type (None: it takes none)
Resp = TypeVar("Resp")  # an endpoint's response body type (None: 204)


@dataclass
class Call(Generic[Req]):
    """One authenticated request, as a handler sees it: `body` is the decoded request body, of
    the type its endpoint declares."""

    ctx: Context
    body: Req
    params: dict[str, str]
    session: SessionRecord | None = None
    user: UserRecord | None = None
    space: SpaceRecord | None = None  # the calling agent's Space
    client_address: str = ""  # the peer's IP address, as the server (or a trusted proxy header) gives it

    @property
    def me(self) -> UserRecord:
        assert self.user is not None
        return self.user

    @property
    def agent_space(self) -> SpaceRecord:
        assert self.space is not None
        return self.space


# A handler takes the endpoint's request body and returns its response body (pair.api.endpoints).
Handler = Callable[[Call[Req]], Awaitable[Resp]]


def json_response(status: int, data: bytes, headers: dict[str, str] | None = None) -> Response:
    return Response(data, status_code=status, media_type="application/json", headers=headers)


def problem_body(problem: Problem, *, admin: bool = False) -> bytes:
    """The one error body every broker answer carries (pair.api.models.ErrorBody), for the JSON
    endpoints, the relay's refusals and the web page's scripts alike; `admin`: the asker is an
    admin, who gets the hint naming `pair-broker` verbs (Problem.detail_for)."""
    detail = problem.detail_for(admin)
    return msgspec.json.encode(m.ErrorBody(message=problem.message, detail=detail, code=problem.code))


def problem_response(problem: Problem, headers: Mapping[str, str] | None = None) -> Response:
    return json_response(problem.status, problem_body(problem), {**_problem_headers(problem), **(headers or {})})


def _problem_headers(problem: Problem) -> dict[str, str]:
    if problem.status == 401:
        return {"WWW-Authenticate": "Bearer"}
    if problem.status == 503:
        return {"Retry-After": str(RETRY_AFTER)}
    return {}


RETRY_AFTER = 30  # seconds, for a 503: the database cannot be written until its operator acts


def as_problem(exc: Problem | StoreUnavailable) -> Problem:
    """The answer to a request that failed: its Problem, or 503 when the database cannot be used
    (the store has told the operator in the log, rate-limited; the client hears no more than why)."""
    if isinstance(exc, Problem):
        return exc
    return Problem(
        503,
        f"The broker cannot use its database right now: {exc.why}.",
        "Try again later; the broker's operator can see why in its log.",
        "storage_unavailable",
    )


def bearer(request: HTTPConnection) -> str:
    return _bearer(request.headers.get("authorization", ""))


def _bearer(value: str) -> str:
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _authorization(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"authorization":
            return _bearer(value.decode("latin-1"))
    return ""


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Problem(400, "The client went away before sending the whole request.", code="disconnected")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise Problem(413, "The request body is too large.", code="too_large")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _send_json(send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = [*JSON_HEADERS, (b"content-length", str(len(body)).encode())]
    if extra:
        headers += extra
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class JsonEndpoint:
    """One endpoint as an ASGI app: authenticate, decode, call the handler, encode, and answer
    every failure as `{"message", "detail", "code"}`."""

    def __init__(self, endpoint: Endpoint[Any, Any], handler: Handler[Any, Any]) -> None:
        self.endpoint = endpoint
        self.handler = handler
        self.encode = msgspec.json.Encoder().encode
        self.decode = msgspec.json.Decoder(endpoint.request).decode if endpoint.request is not None else None
        self.path_types = {k: v for k, v in endpoint.path_types().items() if v is not str}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctx: Context = scope["app"].ctx
        peer = scope.get("client")
        call: Call[Any] = Call(ctx, None, scope.get("path_params") or {}, client_address=str(peer[0]) if peer else "")
        try:
            body = await self._answer(call, scope, receive)
        except (Problem, StoreUnavailable) as exc:
            problem = as_problem(exc)
            extra = [(k.lower().encode(), v.encode()) for k, v in _problem_headers(problem).items()]
            admin = call.user is not None and call.user.is_admin  # known once authenticated
            await _send_json(send, problem.status, problem_body(problem, admin=admin), extra)
            return
        except Exception:
            log.exception("%s %s failed", self.endpoint.method, self.endpoint.path)
            await _send_json(send, 500, problem_body(INTERNAL))
            return
        if body is None:
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})
        else:
            await _send_json(send, 200, body)

    async def _answer(self, call: Call[Any], scope: Scope, receive: Receive) -> bytes | None:
        ctx = call.ctx
        auth = self.endpoint.auth
        if auth == "session" or auth == "admin":
            call.session, call.user = await accounts.authenticate(ctx, _authorization(scope))
            if auth == "admin":
                access.require_admin(call.user)
        elif auth == "agent":
            call.space = await agents.authenticate_agent(ctx, _authorization(scope))
        if self.path_types:
            try:
                fields.check_path(self.path_types, call.params)
            except Invalid as exc:
                raise Problem(422, exc.message, exc.hint, "invalid") from exc
        if self.decode is not None:
            raw = await _read_body(receive)
            try:
                call.body = self.decode(raw)
            except msgspec.ValidationError as exc:
                call.body = self._integral(raw, exc)
            except msgspec.DecodeError as exc:
                raise Problem(400, "The request body is not JSON.", str(exc), "bad_json") from exc
        result = await self.handler(call)
        return None if self.endpoint.response is None else self.encode(result)

    def _integral(self, raw: bytes, first: msgspec.ValidationError) -> Any:
        """The body again, with numbers such as 3600.0 read as the integers they are (JSON Schema
        2020-12 6.1.1: a number with no fractional part is an integer; /openapi.json says
        "integer"). Only a body the typed decoder refused comes here, so valid requests stay on
        the fast path. 422 if it still does not fit: the refused field's sentence (pair.api.fields)
        when its type declares one, else msgspec's reason."""
        plain: Any = None
        try:
            plain = _whole_numbers(msgspec.json.decode(raw))
            return msgspec.convert(plain, self.endpoint.request, strict=True)
        except (msgspec.ValidationError, msgspec.DecodeError):
            pass
        said = fields.refusal(self.endpoint.request, first, plain)
        if said is not None:
            raise Problem(422, said.message, said.hint, "invalid") from first
        raise Problem(422, "The request body is not valid.", printable(str(first))[:300], "invalid") from first


def _whole_numbers(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_whole_numbers(v) for v in value]
    if isinstance(value, dict):
        return {k: _whole_numbers(v) for k, v in value.items()}
    return value


def bind(endpoint: Endpoint[Req, Resp], handler: Handler[Req, Resp]) -> Route:
    """`endpoint` answered by `handler` as a route. The type checker holds the two to one
    contract: the handler takes the endpoint's request type and returns its response type."""
    return Route(
        endpoint.path,
        JsonEndpoint(endpoint, handler),
        methods=[endpoint.method],
        name=endpoint.path + ":" + endpoint.method,
    )


class ExactRoutes:
    """Middleware answering parameter-free JSON endpoints by one dict lookup, ahead of Starlette's
    router (which tries each route's regex in turn); everything else goes on to `app`."""

    def __init__(self, app: ASGIApp, routes: Iterable[Route]) -> None:
        self.app = app
        self.exact: dict[tuple[str, str], Route] = {}
        for route in routes:
            if "{" not in route.path and isinstance(route.app, JsonEndpoint):
                for method in route.methods or ():
                    if method != "HEAD":
                        self.exact[(method, route.path)] = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            found = self.exact.get((scope["method"], scope["path"]))
            if found is not None:
                scope["route"] = found  # as Starlette's router does: broker.metrics reads it
                await found.app(scope, receive, send)
                return
        await self.app(scope, receive, send)


INTERNAL = Problem(
    500,
    "The broker hit an internal error.",
    "It is in the broker's log; try again, and tell its operator if it persists.",
    "internal",
)


async def on_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem | StoreUnavailable)
    return problem_response(as_problem(exc))


async def on_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return problem_response(
            Problem(
                404,
                f"There is no {path_text(request.url.path)} on this broker.",
                "Check the broker URL, and that pair and the broker versions match.",
                "not_found",
            )
        )
    if exc.status_code == 405:
        allowed = ", ".join(allowed_methods(request.app.routes, request.url.path))
        return problem_response(
            Problem(
                405,
                f"{request.method} is not allowed on {path_text(request.url.path)}.",
                f"It answers {allowed}.",
                "method_not_allowed",
            ),
            {"Allow": allowed},  # RFC 9110 15.5.6: a 405 names the methods the resource has
        )
    return problem_response(Problem(exc.status_code, str(exc.detail), code="http_error"), exc.headers)


def path_text(path: str) -> str:
    """A request's path as an answer names it: as it is when it is short and printable, else
    escaped and cut (pair.api.grammar.shown), so a path parameter is never echoed unbounded."""
    return path if len(path) <= 120 and path.isprintable() else shown(path, 120)


def allowed_methods(routes: Iterable[BaseRoute], path: str) -> list[str]:
    """Every method some route answers at `path`. Starlette's own 405 names only the first
    route that matched the path, but a path often has several (GET and POST /api/v1/spaces)."""
    methods: set[str] = set()
    for route in routes:
        if isinstance(route, Route) and route.path_regex.match(path):
            methods |= route.methods or set()
        elif isinstance(route, Mount) and path.startswith(route.path + "/"):
            methods |= {"GET", "HEAD"}  # the one mount serves static files
    return sorted(methods)


async def on_error(request: Request, exc: Exception) -> Response:
    # Starlette re-raises after this answer, so the server logs the traceback once.
    return problem_response(INTERNAL)
